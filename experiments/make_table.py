"""Kept for old commands: the table is ``python -m src.table`` (src/table/); this runs it with the same options."""

from src.table.cli import main

if __name__ == "__main__":
    main()
