"""Caching rain clips and writing results, for the clean-image pipeline.

Clips are read by :mod:`src.utils.video_io` (a video file or a folder of frames, uint8 RGB frames in clip order).

:class:`FrameCache` keeps the frames of one run in a raw uint8 file on disk and hands them back in bands of
rows, so that the two passes of :func:`src.make_clean.algorithm.clean_image` over a 300-frame 1080p clip
(1.9 GB of pixels) hold one band in memory at a time. It reads with plain positioned reads into fresh
arrays rather than through ``np.memmap``, whose touched pages would count towards the process's memory.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional

import imageio.v3 as iio
import numpy as np

from src.utils.files import PathLike, atomic_write
from src.utils.video_io import count_frames, iter_frames


class FrameCache:
    """uint8 RGB frames (N, H, W, 3) stored in a raw file, read back by bands of rows.

    Implements :class:`src.make_clean.algorithm.FrameSource`. ``append`` frames, then ``read_rows(r0, r1)``.
    The file lives in ``cache_dir`` (default: the system temporary folder) and is deleted by :meth:`close`
    (or on leaving a ``with`` block).
    """

    def __init__(self, height: int, width: int, cache_dir: Optional[PathLike] = None) -> None:
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="frames-", suffix=".u8", dir=cache_dir)
        self.path = Path(name)
        self._file = os.fdopen(fd, "w+b")
        self.height, self.width, self.n = int(height), int(width), 0

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.height, self.width, 3)

    def append(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"frame {self.n}: expected uint8 {(self.height, self.width, 3)}, got {frame.dtype} {frame.shape}"
            )
        self._file.seek(self.n * self.height * self.width * 3)
        self._file.write(np.ascontiguousarray(frame).tobytes())
        self.n += 1

    def read_rows(self, r0: int, r1: int) -> np.ndarray:
        """Rows r0:r1 of every frame: uint8 (N, r1 - r0, W, 3), a fresh array."""
        if not 0 <= r0 < r1 <= self.height:
            raise IndexError(f"{self.path}: rows {r0}:{r1} outside 0:{self.height}")
        out = np.empty((self.n, r1 - r0, self.width, 3), np.uint8)
        for t in range(self.n):
            self._read_into(out[t], (t * self.height + r0) * self.width * 3)
        return out

    def frame(self, t: int) -> np.ndarray:
        """Frame t, uint8 (H, W, 3), a fresh array."""
        if not 0 <= t < self.n:
            raise IndexError(f"{self.path}: frame {t} outside 0:{self.n}")
        out = np.empty((self.height, self.width, 3), np.uint8)
        self._read_into(out, t * self.height * self.width * 3)
        return out

    def _read_into(self, out: np.ndarray, offset: int) -> None:
        self._file.seek(offset)
        view = memoryview(out).cast("B")
        got = self._file.readinto(view)
        if got != len(view):
            raise OSError(f"{self.path}: short read at byte {offset} ({got} of {len(view)} bytes)")

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> FrameCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten cache must not leave gigabytes behind
        try:
            self.close()
        except Exception:
            pass


def cache_frames(
    path: PathLike, start: int = 0, count: Optional[int] = None, cache_dir: Optional[PathLike] = None
) -> FrameCache:
    """Frames ``start .. start + count - 1`` of a clip (fewer if the clip ends first) in a :class:`FrameCache`.
    Raises ValueError when the clip has no frame at ``start``."""
    cache: Optional[FrameCache] = None
    try:
        for frame in iter_frames(path, start, count):
            if cache is None:
                cache = FrameCache(frame.shape[0], frame.shape[1], cache_dir)
            cache.append(frame)
    except BaseException:
        if cache is not None:
            cache.close()
        raise
    if cache is None:
        raise ValueError(f"{path}: no frames from start={start} (the clip has {count_frames(path)} frames)")
    return cache


def write_image(path: PathLike, image: np.ndarray) -> None:
    """Write a uint8 RGB image (PNG for .png names), creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.ascontiguousarray(image))


def write_json(path: PathLike, record: dict) -> None:
    """Write ``record`` as indented JSON atomically (:func:`src.utils.files.atomic_write`)."""
    atomic_write(path, json.dumps(record, indent=2) + "\n")
