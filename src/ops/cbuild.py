"""Compile a C source into a shared library at first use, cache it on disk, load it with ctypes.

A :class:`CLibrary` names its sources and the compiler flag sets to try in order (the first that compiles
wins: e.g. ``-march=native -fopenmp``, then without ``-march=native``, then without OpenMP). The compiled file
lives in ``$SPANET_CACHE_DIR`` (default ``~/.cache/spanet-suite``); its name hashes the sources, the compiler,
the flags, the platform and the CPU (model and feature flags), so a ``-march=native`` build is never loaded on
another CPU and an edited source is rebuilt. The compiler is ``$CC`` (default ``gcc``).

Several processes may build at once (e.g. DDP ranks): each compiles into its own temporary file and renames it
into place atomically. :meth:`CLibrary.load` builds and loads once per process (thread-safe) and returns None,
with one warning, when no compiler works, so callers can fall back to a pure-PyTorch path.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

logger = logging.getLogger(__name__)

CACHE_ENV = "SPANET_CACHE_DIR"
COMPILER_ENV = "CC"


def cache_dir() -> Path:
    """Where compiled libraries are kept: ``$SPANET_CACHE_DIR`` or ``~/.cache/spanet-suite``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "spanet-suite"))


def cpu_id() -> str:
    """What identifies the CPU for ``-march=native``: model and feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        keys = ("vendor_id", "cpu family", "model", "model name", "flags", "Features", "CPU part")
        wanted = [ln for ln in lines[:60] if ln.split(":")[0].strip() in keys]
        if wanted:
            return "\n".join(wanted)
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


class CLibrary:
    """A C shared library built from ``sources`` (the first is compiled; all enter the cache key).

    Args:
        name: file-name stem of the cached library.
        sources: the C file to compile, then the files it includes.
        flag_sets: compiler flags to try in order.
        common_flags: flags added to every attempt (``-shared -fPIC`` and the like).
        declare: called once with the loaded ``ctypes.CDLL`` to set argtypes / restype.
        unavailable: the start of the warning when it cannot be built (what is lost, what is used instead).
    """

    def __init__(
        self,
        name: str,
        sources: Sequence[Path],
        flag_sets: Sequence[Sequence[str]],
        common_flags: Sequence[str],
        declare: Callable[[ctypes.CDLL], None],
        unavailable: str,
    ) -> None:
        self.name = name
        self.sources = tuple(Path(s) for s in sources)
        self.flag_sets = tuple(list(f) for f in flag_sets)
        self.common_flags = list(common_flags)
        self.declare = declare
        self.unavailable = unavailable
        self._lock = threading.Lock()
        self._tried = False
        self._lib: Optional[ctypes.CDLL] = None

    def path(self, compiler: str, flags: Sequence[str]) -> Path:
        """The cache file of a build with ``compiler`` and ``flags``."""
        h = hashlib.sha256()
        for src in self.sources:
            h.update(src.read_bytes())
        h.update(" ".join([compiler, *flags, *self.common_flags, sys.platform, cpu_id()]).encode())
        return cache_dir() / f"{self.name}_{h.hexdigest()[:20]}.so"

    def build(self) -> Path:
        """Compile (unless cached) and return the library's path; RuntimeError when no flag set compiles."""
        compiler = os.environ.get(COMPILER_ENV, "gcc")
        for flags in self.flag_sets:
            if (path := self.path(compiler, flags)).exists():
                return path
        if shutil.which(compiler) is None:
            raise RuntimeError(f"C compiler {compiler!r} (env {COMPILER_ENV}) not found on PATH")
        errors = []
        for flags in self.flag_sets:
            path = self.path(compiler, flags)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
            os.close(fd)
            cmd = [compiler, *flags, *self.common_flags, str(self.sources[0]), "-o", tmp]
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                if res.returncode == 0:
                    os.replace(tmp, path)
                    logger.info("built %s: %s", self.name, path)
                    return path
                errors.append(f"{' '.join(cmd)}:\n{res.stderr.strip()[-2000:]}")
            except (OSError, subprocess.SubprocessError) as e:
                errors.append(f"{' '.join(cmd)}: {e}")
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        raise RuntimeError(f"could not compile {self.name}:\n" + "\n".join(errors))

    def load(self) -> Optional[ctypes.CDLL]:
        """The loaded library (built now if needed), or None with one warning when it cannot be built."""
        if self._tried:
            return self._lib
        with self._lock:
            if not self._tried:
                try:
                    lib = ctypes.CDLL(str(self.build()))
                    self.declare(lib)
                    self._lib = lib
                except (RuntimeError, OSError) as e:
                    msg = f"{self.unavailable}: {e}"
                    warnings.warn(msg, RuntimeWarning, stacklevel=3)
                    logger.warning(msg)
                self._tried = True
        return self._lib

    def forget(self) -> None:
        """Forget the loaded library, so that the next :meth:`load` builds and loads again (tests)."""
        with self._lock:
            self._tried, self._lib = False, None
