"""Where prediction writes, checked before any network runs (a refused run writes nothing).

* :func:`check_output_dir`: the output folder may not be an input folder (or the ground-truth folder) nor lie
  inside one, and may not be the folder that holds an input file.
* :func:`check_outputs`: no planned output may be an input file (ever), and none may exist already unless
  ``overwrite=true``. No output may be a symbolic link, nor lie in a subfolder of the output folder that is
  one, even with ``overwrite=true``: writing through a link would replace a file outside the output folder
  (the output folder itself may be a link: it is the folder you named).

All are refusals (:class:`~src.utils.errors.ConfigValueError`, :class:`~src.utils.errors.OutputExistsError`):
one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from src.utils.errors import ConfigValueError, OutputExistsError
from src.utils.files import is_inside


def check_output_dir(output: Path, folders: Iterable[Path], files: Iterable[Path] = ()) -> None:
    """Refuse an output folder equal to, or inside, any input folder, or equal to the folder of an input file."""
    for f in files:
        if os.path.realpath(output) == os.path.realpath(Path(f).parent):
            raise ConfigValueError(
                f"output={output} is the folder of the input {f}: outputs would mix with the "
                "inputs; choose another output folder"
            )
    for folder in folders:
        if is_inside(output, folder):
            raise ConfigValueError(
                f"output={output} is {'the' if is_inside(folder, output) else 'inside the'} "
                f"input folder {folder}: outputs would mix with (or replace) the inputs; choose "
                "another output folder"
            )


def _links(planned: Sequence[Path], out_dir: Path) -> list[str]:
    """Planned outputs that are symbolic links, or lie in a subfolder of ``out_dir`` that is one."""
    found = {}
    for p in planned:
        for q in [p, *p.parents]:
            if q == out_dir or out_dir not in q.parents:
                break
            if q.is_symlink():
                found[q] = f"{q} -> {os.readlink(q)}"
    return list(found.values())


def check_outputs(planned: Sequence[Path], out_dir: Path, inputs: Iterable[Path], overwrite: bool) -> None:
    """No planned output may be an input or a symbolic link; existing outputs are refused unless ``overwrite``."""
    real_inputs = {os.path.realpath(p) for p in inputs}
    hit = [p for p in planned if os.path.realpath(p) in real_inputs]
    if hit:
        raise ConfigValueError(f"output={out_dir}: {hit[0]} would replace an input file; choose another output folder")
    dupes = sorted({str(p) for p in planned if list(planned).count(p) > 1})
    if dupes:
        raise ConfigValueError(f"output={out_dir}: two outputs would be written to the same file: {dupes[:3]}")
    links = _links(planned, Path(out_dir))
    if links:
        raise ConfigValueError(
            f"output={out_dir}: {len(links)} output path(s) are symbolic links, which would "
            f"write outside the output folder (also with overwrite=true): {'; '.join(links[:5])}. "
            "Remove the links or choose another output folder"
        )
    existing = [p for p in planned if p.exists()]
    if existing and not overwrite:
        listed = "\n  ".join(str(p) for p in existing[:10])
        more = f"\n  ... and {len(existing) - 10} more" if len(existing) > 10 else ""
        raise OutputExistsError(
            f"{len(existing)} output file(s) exist already (pass overwrite=true to replace them):\n  {listed}{more}"
        )
