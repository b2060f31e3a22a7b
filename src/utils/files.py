"""Writing the user's files safely: atomic replacement, and refusing to replace outputs nobody asked to replace.

* :func:`atomic_write` writes a temporary file in the destination's own folder (so the final rename never
  crosses a filesystem), flushes it to disk, and ``os.replace``-s it over the destination. A process killed at
  any moment leaves either the old file or the new one, never a truncated mix; a write that raises leaves the
  old file and removes the temporary one. (A SIGKILL can leave the hidden temporary ``.<name>.<random>.tmp``
  behind; it is never read by the suite and can be deleted.)
* :func:`write_json` writes a JSON document that way (to one or several paths).
* :func:`natural_key` sorts names with their numbers compared by value (``rain-2`` before ``rain-10``).
* :func:`refuse_existing` is the one guard of every entry point that writes results (``overwrite=true`` lifts it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

from src.utils.errors import OutputExistsError

PathLike = Union[str, os.PathLike]
log = logging.getLogger(__name__)


def natural_key(text: str) -> list:
    """Sort key that orders embedded numbers numerically ("rain-2" < "rain-10")."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Union[bytes, str, Callable[[object], None]]) -> Path:
    """Replace ``path`` atomically by ``write`` (bytes, text, or a function that writes to a binary file object).

    The new file gets the permissions a plain ``open(path, "w")`` would give it (0666 minus the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(write):
                write(f)
            else:
                f.write(write.encode("utf-8") if isinstance(write, str) else write)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (not possible on every platform)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def write_json(data: dict, *paths: Optional[PathLike]) -> None:
    """Write ``data`` as JSON to each path, atomically (a reader never sees half a file); ``None`` paths are skipped."""
    for p in paths:
        if not p:
            continue
        atomic_write(p, json.dumps(data, indent=2, sort_keys=False))
        log.info("wrote %s", p)


def refuse_existing(paths: Iterable[PathLike], what: str = "output", key: str = "overwrite") -> None:
    """Raise :class:`OutputExistsError` (a ``FileExistsError``) naming the first of ``paths`` that exists (pass
    ``key=true`` to replace it)."""
    existing = [Path(p) for p in paths if Path(p).exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise OutputExistsError(
            f"{existing[0]}{more}: the {what} already exists; refusing to replace it. "
            f"Choose another path or pass {key}=true to replace it"
        )


def is_inside(path: PathLike, folder: PathLike) -> bool:
    """True when ``path`` is ``folder`` or lies somewhere below it (symbolic links resolved)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents
