"""Video in and out for prediction, through imageio's ffmpeg plugin (imageio-ffmpeg ships the ffmpeg binary).

* :func:`open_video` reads a video file frame by frame (uint8 RGB) with its frame rate, size and, where the
  container says, its frame count. Audio is not read.
* :func:`frames_folder` lists a folder of frames (image files) in natural order (``frame2`` before
  ``frame10``) as one clip.
* :class:`VideoWriter` writes uint8 RGB frames at a given frame rate, keeping the exact frame size: H.264 in
  yuv420p needs even sizes, so odd-sized clips are written in yuv444p (also H.264) instead of being resized.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Optional

import imageio.v3 as iio
import numpy as np

from src.make_clean.io import VIDEO_EXTENSIONS, frame_files  # one list of video types, one frame order


def is_video_file(name: str) -> bool:
    return name.lower().endswith(VIDEO_EXTENSIONS)


class VideoReadError(OSError):
    """A video file exists but cannot be decoded."""


def video_info(path: Path) -> dict:
    """``{"fps": float, "size": (W, H), "frames": int or None}`` of a video file."""
    try:
        meta = iio.immeta(path, plugin="FFMPEG")
    except Exception as exc:  # imageio raises OSError / RuntimeError / ValueError on bad files
        raise VideoReadError(f"{path}: cannot read the video ({type(exc).__name__}: {exc})") from exc
    fps = float(meta.get("fps") or 0)
    if not fps > 0:
        raise VideoReadError(f"{path}: the video reports no frame rate")
    n = meta.get("nframes")
    frames = int(n) if isinstance(n, (int, float)) and math.isfinite(n) else None
    if frames is None and meta.get("duration"):
        frames = int(round(float(meta["duration"]) * fps))  # an estimate, for the progress bar only
    return {"fps": fps, "size": tuple(meta.get("size") or ()), "frames": frames}


def iter_video(path: Path) -> Iterator[np.ndarray]:
    """The frames of a video file, uint8 H x W x 3 RGB, one at a time."""
    try:
        for frame in iio.imiter(path, plugin="FFMPEG"):
            yield np.ascontiguousarray(frame[..., :3])
    except (OSError, RuntimeError, ValueError) as exc:
        raise VideoReadError(f"{path}: video decoding failed ({type(exc).__name__}: {exc})") from exc


def frames_folder(folder: Path) -> list[Path]:
    """The image files of ``folder`` in natural order (``frame2`` before ``frame10``), as frames of one clip."""
    return frame_files(folder)


class VideoWriter:
    """Write uint8 RGB frames to ``path`` at ``fps`` with ffmpeg (H.264); the first frame fixes the size."""

    def __init__(self, path: Path, fps: float, codec: str = "libx264", quality: Optional[float] = 8) -> None:
        self.path, self.fps, self.codec, self.quality = Path(path), float(fps), codec, quality
        self._writer = None
        self._size: Optional[tuple[int, int]] = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"{self.path}: frames must be uint8 H x W x 3, got {frame.dtype} {frame.shape}")
        h, w = frame.shape[:2]
        if self._writer is None:
            import imageio.v2 as iio2

            pix = "yuv420p" if h % 2 == 0 and w % 2 == 0 else "yuv444p"
            self._writer = iio2.get_writer(
                self.path, format="FFMPEG", mode="I", fps=self.fps, codec=self.codec, quality=self.quality,
                pixelformat=pix, macro_block_size=1,  # 1: never resize to a multiple of 16
            )
            self._size = (h, w)
        elif (h, w) != self._size:
            raise ValueError(f"{self.path}: frame {self.frames} is {h}x{w}, earlier frames were "
                             f"{self._size[0]}x{self._size[1]}")
        self._writer.append_data(frame)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
