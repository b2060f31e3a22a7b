"""Claiming outputs: two runs never write the same outputs at the same time.

:class:`OutputClaim` creates a claim file with ``O_CREAT | O_EXCL`` (``<folder>/.claim`` for an output folder,
``.<name>.claim`` beside an output file). Of two processes claiming the same outputs at once exactly one
succeeds; the other gets :class:`OutputInUseError` (a refusal: one ``error:`` line, exit status 2) naming the
holder, and writes nothing. The claim is deleted when the run ends.

The file records the holder's host, pid and process start time. A claim whose holder has ended (a run killed
with SIGKILL leaves its file behind) is stale: it is no claim, and the next run takes it over with a log line.
A claim made on another host cannot be checked from here and is respected; the message says which file to
delete once that run is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Optional, Union

from src.utils.errors import OutputExistsError

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


class OutputInUseError(OutputExistsError):
    """Another running process has claimed the same outputs."""


def _start_ticks(pid: int) -> Optional[str]:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22) and 'Z' for a zombie; None
    where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (command) "
    return "Z" if fields[0] in ("Z", "X") else fields[19]


def holder_alive(holder: dict) -> bool:
    """Whether the process recorded in a claim still runs (True when that cannot be checked: another host)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = int(holder.get("pid", 0))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    ticks = _start_ticks(pid)
    if ticks == "Z":
        return False
    return ticks is None or holder.get("start") in (None, ticks)  # another start time: the pid was reused


class OutputClaim:
    """``with OutputClaim(path, what):`` -- hold ``path`` (the claim file) exclusively while writing ``what``."""

    def __init__(self, path: PathLike, what: str) -> None:
        self.path, self.what = Path(path), what
        self._mine: Optional[bytes] = None

    @classmethod
    def for_folder(cls, folder: PathLike) -> OutputClaim:
        return cls(Path(folder) / ".claim", f"output folder {folder}")

    @classmethod
    def for_file(cls, file: PathLike) -> OutputClaim:
        file = Path(file)
        return cls(file.with_name(f".{file.name}.claim"), f"output file {file}")

    def acquire(self) -> OutputClaim:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start": _start_ticks(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        data = json.dumps(me).encode()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._refuse_or_take_over()
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self._mine = data
            return self
        raise OutputInUseError(f"{self.what} is claimed by another process ({self.path}); try again")

    def _refuse_or_take_over(self) -> None:
        try:
            seen = self.path.read_bytes()
        except FileNotFoundError:
            return
        try:
            holder = json.loads(seen)
        except ValueError:  # being written this very moment, or damaged
            holder = {}
        if not holder or holder_alive(holder):
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
                if holder
                else "another process"
            )
            raise OutputInUseError(
                f"{self.what} is being written by {who}: two runs must not write the same "
                f"outputs; wait for it to end, or choose another output (if that run is gone, "
                f"delete {self.path})"
            )
        log.warning(
            "%s: taking over the stale claim of pid %s on %s (that process has ended)",
            self.what,
            holder.get("pid"),
            holder.get("host"),
        )
        aside = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:  # another process took it over first
            return
        if aside.read_bytes() != seen:  # a live claim was made in between: put it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        os.unlink(aside)

    def release(self) -> None:
        if self._mine is not None:
            with contextlib.suppress(OSError):
                if self.path.read_bytes() == self._mine:
                    self.path.unlink()
            self._mine = None

    def __enter__(self) -> OutputClaim:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
