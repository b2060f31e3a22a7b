"""Reading rain clips (a video file or a folder of frames), beside the image reader (:mod:`src.utils.image_io`).

Frames are uint8 RGB arrays (H, W, 3), in clip order:

* a video file (:data:`VIDEO_EXTENSIONS`) is decoded by imageio's FFMPEG plugin with the ffmpeg binary that
  ships in the ``imageio-ffmpeg`` wheel (output pixel format rgb24);
* a folder holds one image per frame (``src.utils.image_io.IMAGE_EXTENSIONS``), ordered by name with numbers
  compared by value ("f2" before "f10"; zero-padded names sort the same either way). Grey frames are
  repeated to 3 channels, alpha is dropped; 16-bit frames are refused.

The clean-image pipeline (:mod:`src.make_clean`) and prediction (:mod:`src.inference.video`) both list and
recognise clips through this module: one list of video types, one frame order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import imageio.v3 as iio
import numpy as np

from src.utils.files import PathLike, natural_key
from src.utils.image_io import IMAGE_EXTENSIONS, is_image_file, read_array

VIDEO_EXTENSIONS = (
    ".mp4",
    ".m4v",
    ".mov",
    ".avi",
    ".mkv",
    ".webm",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
    ".3gp",
    ".ts",
    ".mts",
    ".m2ts",
)


def is_video_file(path: PathLike) -> bool:
    """An existing file whose extension is one of :data:`VIDEO_EXTENSIONS` (any case)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS and Path(path).is_file()


def frame_files(folder: PathLike) -> list[Path]:
    """The image files directly inside ``folder``, in frame order (natural sort of the names)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: frame folder not found")
    files = sorted(
        (p for p in folder.iterdir() if p.is_file() and is_image_file(p.name)), key=lambda p: natural_key(p.name)
    )
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
        raise ValueError(
            f"{path}: not a video file (known extensions: {', '.join(VIDEO_EXTENSIONS)}) and not a folder of frames"
        )


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
