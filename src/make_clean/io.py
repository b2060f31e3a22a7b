"""Reading rain clips (a video file or a folder of frames) and writing results, for the clean-image pipeline.

Frames are uint8 RGB arrays (H, W, 3), in clip order:

* a video file (``VIDEO_EXTENSIONS``) is decoded by imageio's FFMPEG plugin with the ffmpeg binary that
  ships in the ``imageio-ffmpeg`` wheel (output pixel format rgb24);
* a folder holds one image per frame (``src.utils.image_io.IMAGE_EXTENSIONS``), ordered by name with numbers
  compared by value ("f2" before "f10"; zero-padded names sort the same either way). Grey frames are
  repeated to 3 channels, alpha is dropped; 16-bit frames are refused.

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
from typing import Iterator, Optional, Union

import imageio.v3 as iio
import numpy as np

from src.utils.files import atomic_write
from src.utils.image_io import IMAGE_EXTENSIONS, is_image_file, read_array
from src.data.readers import natural_key

PathLike = Union[str, os.PathLike]

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp",
                    ".ts", ".mts", ".m2ts")


def is_video_file(path: PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS and Path(path).is_file()


def frame_files(folder: PathLike) -> list[Path]:
    """The image files directly inside ``folder``, in frame order (natural sort of the names)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: frame folder not found")
    files = sorted((p for p in folder.iterdir() if p.is_file() and is_image_file(p.name)),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise ValueError(f"{folder}: no frames (expected image files {', '.join(IMAGE_EXTENSIONS)})")
    return files


def is_clip(path: PathLike) -> bool:
    """A video file, or a folder with at least one image file in it."""
    path = Path(path)
    if path.is_dir():
        return any(p.is_file() and is_image_file(p.name) for p in path.iterdir())
    return is_video_file(path)


def _check_source(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: rain clip not found (expected a video file or a folder of frames)")
    if path.is_file() and not is_video_file(path):
        raise ValueError(f"{path}: not a video file (known extensions: {', '.join(VIDEO_EXTENSIONS)}) "
                         f"and not a folder of frames")


def count_frames(path: PathLike) -> int:
    """Number of frames in a clip (a video is decoded once to count them exactly)."""
    path = Path(path)
    _check_source(path)
    if path.is_dir():
        return len(frame_files(path))
    import imageio_ffmpeg

    try:
        return int(imageio_ffmpeg.count_frames_and_secs(str(path))[0])
    except Exception as exc:  # ffmpeg failures come back as RuntimeError/OSError with ffmpeg's output
        raise ValueError(f"{path}: cannot read video ({type(exc).__name__}: {str(exc).strip()[:300]})") from exc


def _as_rgb_frame(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise ValueError(f"{where}: frame is {arr.dtype}; the clean-image pipeline needs 8-bit frames")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{where}: expected an RGB frame (H, W, 3), got shape {arr.shape}")
    return arr


def iter_frames(path: PathLike, start: int = 0, count: Optional[int] = None) -> Iterator[np.ndarray]:
    """Frames ``start, start + 1, ...`` of a clip (at most ``count``), uint8 RGB (H, W, 3). Stops early at
    the end of the clip; all frames must have the size of the first (else ValueError naming the frame)."""
    path = Path(path)
    _check_source(path)
    if start < 0 or (count is not None and count < 0):
        raise ValueError(f"{path}: start={start} and frames={count} must not be negative")
    stop = None if count is None else start + count
    size = None
    if path.is_dir():
        for i, f in enumerate(frame_files(path)[start:stop], start):
            frame = _as_rgb_frame(read_array(f), str(f))
            if size is None:
                size = frame.shape
            elif frame.shape != size:
                raise ValueError(f"{f}: frame {i} is {frame.shape[:2]}, the clip's first frame is {size[:2]}")
            yield frame
        return
    if count == 0:
        return
    try:
        for i, frame in enumerate(iio.imiter(path, plugin="FFMPEG")):
            if i < start:
                continue
            yield _as_rgb_frame(np.asarray(frame), f"{path} frame {i}")
            if stop is not None and i + 1 >= stop:
                break
    except (OSError, RuntimeError, StopIteration) as exc:
        raise ValueError(f"{path}: cannot read video ({type(exc).__name__}: {str(exc).strip()[:300]})") from exc


def read_frames(path: PathLike, start: int = 0, count: Optional[int] = None) -> np.ndarray:
    """Frames of a clip in memory, uint8 (N, H, W, 3). For short clips (tests, review sheets)."""
    frames = list(iter_frames(path, start, count))
    if not frames:
        raise ValueError(f"{path}: no frames from start={start}")
    return np.stack(frames)


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
            raise ValueError(f"frame {self.n}: expected uint8 {(self.height, self.width, 3)}, "
                             f"got {frame.dtype} {frame.shape}")
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

    def __enter__(self) -> "FrameCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten cache must not leave gigabytes behind
        try:
            self.close()
        except Exception:
            pass


def cache_frames(path: PathLike, start: int = 0, count: Optional[int] = None,
                 cache_dir: Optional[PathLike] = None) -> FrameCache:
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
