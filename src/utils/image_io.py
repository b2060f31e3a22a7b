"""The suite's one image reader: training, scoring and prediction decode every file through it.

It lives in ``src/utils`` because ``src.data`` (training, ``src.data.check``), ``src.metrics`` (folder scoring,
which must not import ``src.data``), ``src.make_clean`` and ``src.predict`` all read images, and they must read
a file identically: the same array, or the same error.

:func:`decode` returns the RGB array at the file's bit depth and the file's Pillow colour mode;
:func:`read_array` the array only (the training pipeline crops before converting); :func:`read_image` /
:func:`to_float` the values on the [0, 1] scale (float32 for networks, float64 for scoring).

* Colour: RGB, channels last, H x W x 3. One table, :func:`mode_note`, says how each colour mode becomes RGB:
  grayscale (L, 1, I;16, I, LA) is repeated to 3 channels; an alpha channel is dropped (not composited);
  palette / CMYK / YCbCr / ... images are converted by Pillow. Floating-point images are refused.
* Bit depth: 8-bit images come back as ``uint8`` (0..255), 16-bit PNGs as ``uint16`` (0..65535). Pillow
  decodes everything except 16-bit PNGs with colour or alpha, which it would truncate to 8 bits; those are
  read with pypng at full precision. :func:`to_float` divides by 255 or 65535 respectively.
* Formats: :data:`IMAGE_EXTENSIONS` (PNG, JPEG, BMP, TIFF, WebP); the first frame of multi-frame files; EXIF
  orientation is not applied (the pixels as stored, as every evaluation script reads them).
* Errors: :class:`ImageReadError` (an ``OSError`` and a ``ValueError``) for anything that keeps a file from
  decoding completely (truncated, corrupt, not an image, unsupported mode, or a header claiming more pixels
  than Pillow's decompression-bomb limit, ``PIL.Image.MAX_IMAGE_PIXELS`` x 2, about 179 megapixels: the
  message names the claimed size), and its subclass :class:`ImageNotFoundError` (also a ``FileNotFoundError``)
  for a missing file. Every message starts with ``"<path>: cannot read image"``. Images between Pillow's
  warning and error limits (90 to 179 megapixels) decode, with Pillow's ``DecompressionBombWarning``.
* :func:`probe`: the size from the header and the same errors, without decoding the pixels (cheap enough for
  thousands of files): a PNG or JPEG must end with its end marker, which a truncated file lacks.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from typing import Iterator, NamedTuple, Optional, Union

import numpy as np
from PIL import Image

PathLike = Union[str, os.PathLike]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GREY16_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_GREY_MODES = ("1", "L", "LA", "La", "I", *_GREY16_MODES)
_ALPHA_MODES = ("LA", "La", "RGBA", "RGBa", "PA")
_TRUNCATED_16BIT_MODES = ("RGB", "RGBA", "LA")  # Pillow's modes for 16-bit PNGs it keeps only 8 bits of


class ImageReadError(OSError, ValueError):
    """An image file cannot be read: truncated, corrupt, not an image, or an unsupported kind of image.

    Both an ``OSError`` (what file readers raise) and a ``ValueError`` (what scoring raises for bad input)."""


class ImageNotFoundError(FileNotFoundError, ImageReadError):
    """The image file does not exist."""


class Decoded(NamedTuple):
    """A decoded image: ``array`` (H, W, 3) uint8 / uint16 RGB and the file's Pillow colour ``mode``."""

    array: np.ndarray
    mode: str

    @property
    def grey(self) -> bool:
        """True when the file held one grey channel (repeated to 3 here)."""
        return self.mode in _GREY_MODES

    @property
    def note(self) -> Optional[str]:
        """How the file's colour mode became RGB (:func:`mode_note`); None for RGB files."""
        return mode_note(self.mode)


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def mode_note(mode: str) -> Optional[str]:
    """How a Pillow colour mode is converted to RGB by :func:`decode`, in words; None for RGB."""
    if mode == "RGB":
        return None
    if mode in _GREY_MODES:
        return f"grayscale ({mode}) -> replicated to 3 RGB channels" + (
            "; alpha dropped" if mode in _ALPHA_MODES else ""
        )
    if mode in _ALPHA_MODES:
        return f"{mode} -> alpha channel dropped (not composited)"
    if mode == "F":
        return "F -> refused (floating-point images are not supported)"
    return f"{mode} -> converted to RGB"


def decode(path: PathLike) -> Decoded:
    """Decode an image file to an RGB array (H, W, 3), ``uint8`` or ``uint16`` (16-bit PNG), and its mode."""
    path = os.fspath(path)
    with _errors(path), Image.open(path) as im:
        if im.format == "PNG" and im.mode in _TRUNCATED_16BIT_MODES and _png_bit_depth(path) == 16:
            return Decoded(_read_png16_rgb(path), im.mode)
        im.load()  # decode everything now: a truncated file fails here, not in a worker later
        return Decoded(_pil_to_rgb(im, path), im.mode)


def probe(path: PathLike) -> tuple[int, int]:
    """(width, height) of an image file from its header, raising what :func:`decode` would for a file that is
    missing, not an image, too large (decompression bomb) or truncated, without decoding the pixels: PNG and
    JPEG files are checked for their end marker (IEND, EOI); a file without one (cut short, or with bytes after
    the marker) and files of other formats are decoded to decide."""
    path = os.fspath(path)
    with _errors(path), Image.open(path) as im:
        if not _ends_with_marker(path, im.format):
            im.load()
        return im.size


def read_array(path: PathLike) -> np.ndarray:
    """Decode an image file to an RGB array (H, W, 3), ``uint8`` or ``uint16`` (16-bit PNG)."""
    return decode(path).array


def to_float(arr: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """uint8 / uint16 array -> ``dtype`` (float32 or float64) in [0, 1], dividing by 255 or 65535 in that
    precision; float input is returned as ``dtype`` unchanged."""
    if arr.dtype == np.uint8:
        return arr.astype(dtype) / dtype(255.0)
    if arr.dtype == np.uint16:
        return arr.astype(dtype) / dtype(65535.0)
    return arr.astype(dtype, copy=False)


def read_image(path: PathLike) -> np.ndarray:
    """Decode an image file to float32 RGB (H, W, 3) in [0, 1]."""
    return to_float(read_array(path))


def grey_levels(arr: np.ndarray) -> float:
    """Mean pixel value of an image array on the 8-bit scale (0..255), whatever its dtype."""
    scale = {np.dtype(np.uint8): 1.0, np.dtype(np.uint16): 255.0 / 65535.0}.get(arr.dtype, 255.0)
    return float(arr.mean(dtype=np.float64)) * scale


# --- helpers --------------------------------------------------------------------------------------------
@contextmanager
def _errors(path: str) -> Iterator[None]:
    """Turn whatever Pillow / pypng raise into the reader's two errors, naming the path."""
    try:
        yield
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageNotFoundError(f"{path}: cannot read image (file not found)") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(
            f"{path}: cannot read image (it claims {_claimed_size(path, exc)}, more than "
            f"{2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels: refused as a possible "
            "decompression bomb; PIL.Image.MAX_IMAGE_PIXELS sets the limit)"
        ) from None
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, zlib.error, ... on bad data
        raise ImageReadError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc


def _pil_to_rgb(im: Image.Image, path: str) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im)
    if mode in ("L", "LA", "La"):
        grey = np.asarray(im.getchannel(0))
    elif mode in _GREY16_MODES:
        grey = np.asarray(im).astype(np.uint16)
    elif mode == "I":  # Pillow opens some 16-bit grey PNGs / TIFFs as 32-bit integer images
        grey = np.asarray(im)
        if grey.size and (grey.min() < 0 or grey.max() > 65535):
            raise ImageReadError(f"{path}: cannot read image (32-bit integer image with values outside 0..65535)")
        grey = grey.astype(np.uint16)
    elif mode == "F":
        raise ImageReadError(
            f"{path}: cannot read image (floating-point images are not supported; expected 8- or 16-bit)"
        )
    else:  # 1 (bilevel), RGBA (alpha dropped, not composited), P, PA, CMYK, YCbCr, ...
        return np.asarray(im.convert("RGB"))
    return np.repeat(grey[:, :, None], 3, axis=2)


def _png_header(path: str) -> tuple[int, int, int]:
    """(width, height, bit depth) from the PNG header (IHDR is always the first chunk)."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise ImageReadError(f"{path}: cannot read image (not a valid PNG header)")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"), head[24]


def _png_bit_depth(path: str) -> int:
    return _png_header(path)[2]


def _claimed_size(path: str, exc: Exception) -> str:
    """The size an over-large image claims: W x H from a PNG header, else the pixel count in Pillow's message."""
    try:
        w, h, _ = _png_header(path)
        return f"{w}x{h} pixels ({w * h / 1e6:.0f} megapixels)"
    except (OSError, ImageReadError):
        found = re.search(r"\((\d+) pixels\)", str(exc))
        return f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "a size beyond the limit"


_END_MARKERS = {"PNG": b"\x00\x00\x00\x00IEND\xaeB`\x82", "JPEG": b"\xff\xd9"}


def _ends_with_marker(path: str, fmt: Optional[str]) -> bool:
    marker = _END_MARKERS.get(fmt or "")
    if marker is None:
        return False
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - len(marker)))
        return f.read() == marker


def _read_png16_rgb(path: str) -> np.ndarray:
    """A 16-bit PNG with colour and/or alpha, at full precision (pypng: pure Python, only needed here)."""
    import png

    width, height, rows, info = png.Reader(filename=path).asDirect()
    planes = info["planes"]
    arr = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)
    if planes <= 2:  # grey (+ alpha)
        return np.ascontiguousarray(np.repeat(arr[:, :, :1], 3, axis=2))
    return np.ascontiguousarray(arr[:, :, :3])
