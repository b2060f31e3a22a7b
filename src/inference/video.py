"""Video in and out for prediction, through imageio's ffmpeg plugin (imageio-ffmpeg ships the ffmpeg binary).

* :func:`video_info` / :func:`iter_video` read a video file's frame rate, size and frame count, and its frames
  one by one (uint8 RGB). Audio is not read.
* :func:`declared_frames`: the number of frames the container lists for its video track (the sample table of
  the MP4 / MOV family: .mp4 .m4v .mov .3gp), to tell a clip that is cut short; None for containers that
  declare no count (Matroska, WebM, AVI, fragmented MP4, ...).
* Which files are videos, and a folder of frames in clip order: :mod:`src.utils.video_io` (shared with
  :mod:`src.make_clean`).
* :class:`VideoWriter` writes uint8 RGB frames at a given frame rate, keeping the exact frame size: H.264 in
  yuv420p needs even sizes, so odd-sized clips are written in yuv444p (also H.264) instead of being resized.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Optional

import imageio.v3 as iio
import numpy as np


class VideoReadError(OSError):
    """A video file exists but cannot be decoded."""


def video_info(path: Path) -> dict:
    """``{"fps": float, "size": (W, H), "frames": int or None, "declared": int or None}`` of a video file:
    ``frames`` for progress bars (the declared count, else duration x fps), ``declared`` from the container
    (:func:`declared_frames`)."""
    try:
        meta = iio.immeta(path, plugin="FFMPEG")
    except Exception as exc:  # imageio raises OSError / RuntimeError / ValueError on bad files
        raise VideoReadError(f"{path}: cannot read the video ({type(exc).__name__}: {exc})") from exc
    fps = float(meta.get("fps") or 0)
    if not fps > 0:
        raise VideoReadError(f"{path}: the video reports no frame rate")
    n = meta.get("nframes")
    declared = declared_frames(path)
    frames = declared or (int(n) if isinstance(n, (int, float)) and math.isfinite(n) else None)
    if frames is None and meta.get("duration"):
        frames = int(round(float(meta["duration"]) * fps))  # an estimate, for the progress bar only
    return {"fps": fps, "size": tuple(meta.get("size") or ()), "frames": frames, "declared": declared}


def _boxes(data: bytes, start: int = 0, end: Optional[int] = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the ISO base media boxes in ``data[start:end]``."""
    end = len(data) if end is None else end
    while start + 8 <= end:
        size, kind, head = int.from_bytes(data[start : start + 4], "big"), data[start + 4 : start + 8], 8
        if size == 1 and start + 16 <= end:
            size, head = int.from_bytes(data[start + 8 : start + 16], "big"), 16
        elif size == 0:
            size = end - start
        if size < head:
            return
        yield kind, start + head, min(start + size, end)
        start += size


def _child(data: bytes, span: Optional[tuple[int, int]], *kinds: bytes) -> Optional[tuple[int, int]]:
    """The payload span of the first box of type ``kinds[0]`` inside ``span``, then ``kinds[1]`` in it, ..."""
    for kind in kinds:
        if span is None:
            return None
        span = next(((a, b) for k, a, b in _boxes(data, *span) if k == kind), None)
    return span


def _moov(path: Path) -> Optional[bytes]:
    """The payload of the file's top-level ``moov`` box, reading only the box headers before it."""
    with open(path, "rb") as f:
        size_of_file = f.seek(0, 2)
        pos = 0
        while pos + 8 <= size_of_file:
            f.seek(pos)
            head = f.read(16)
            size, kind, skip = int.from_bytes(head[:4], "big"), head[4:8], 8
            if size == 1:
                size, skip = int.from_bytes(head[8:16], "big"), 16
            elif size == 0:
                size = size_of_file - pos
            if size < skip or not kind.isalnum() and kind not in (b"free", b"skip", b"wide"):
                return None  # not an ISO base media file
            if kind == b"moov":
                f.seek(pos + skip)
                return f.read(size - skip)
            pos += size
    return None


def declared_frames(path: Path) -> Optional[int]:
    """Frames of the first video track as the container's sample table lists them (MP4 / MOV family); None for
    other containers and where the table lists none (fragmented MP4)."""
    try:
        moov = _moov(Path(path))
    except OSError:
        return None
    if not moov:
        return None
    for kind, a, b in _boxes(moov):
        hdlr = _child(moov, (a, b), b"mdia", b"hdlr") if kind == b"trak" else None
        if hdlr is None or moov[hdlr[0] + 8 : hdlr[0] + 12] != b"vide":  # handler type: video
            continue
        table = _child(moov, (a, b), b"mdia", b"minf", b"stbl")
        sizes = _child(moov, table, b"stsz") or _child(moov, table, b"stz2")
        count = int.from_bytes(moov[sizes[0] + 8 : sizes[0] + 12], "big") if sizes else 0
        return count or None
    return None


def iter_video(path: Path) -> Iterator[np.ndarray]:
    """The frames of a video file, uint8 H x W x 3 RGB, one at a time."""
    try:
        for frame in iio.imiter(path, plugin="FFMPEG"):
            yield np.ascontiguousarray(frame[..., :3])
    except (OSError, RuntimeError, ValueError) as exc:
        raise VideoReadError(f"{path}: video decoding failed ({type(exc).__name__}: {exc})") from exc


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
                self.path,
                format="FFMPEG",
                mode="I",
                fps=self.fps,
                codec=self.codec,
                quality=self.quality,
                pixelformat=pix,
                macro_block_size=1,  # 1: never resize to a multiple of 16
            )
            self._size = (h, w)
        elif (h, w) != self._size:
            raise ValueError(
                f"{self.path}: frame {self.frames} is {h}x{w}, earlier frames were {self._size[0]}x{self._size[1]}"
            )
        self._writer.append_data(frame)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
