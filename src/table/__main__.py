"""python -m src.table SWEEP_DIR [options]: see src/table/cli.py."""

from src.table.cli import main

main()
