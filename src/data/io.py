"""Image decoding for the file-based data sets.

Every reader in ``src.data`` goes through :func:`read_array` (native bit depth, for the training pipeline,
which crops before converting) or :func:`read_image` (float32 in [0, 1]).

* Colour: RGB, channels last, H x W x 3. Grayscale images are repeated to 3 channels; an alpha channel is
  dropped (not composited); palette / CMYK / 1-bit images are converted to RGB.
* Bit depth: 8-bit images come back as ``uint8`` (0..255), 16-bit PNGs as ``uint16`` (0..65535).
  :func:`to_float` divides by 255 or 65535 respectively. Pillow decodes everything except 16-bit colour
  PNGs, which it would truncate to 8 bits; those are read with pypng at full precision.
* Errors: a missing file raises :class:`FileNotFoundError`, anything else that keeps a file from decoding
  completely (truncated, corrupt, not an image, unsupported mode) raises :class:`ImageReadError`; both
  messages start with the path.
"""

from __future__ import annotations

import os
from typing import Union

import numpy as np
from PIL import Image

PathLike = Union[str, os.PathLike]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GREY16_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


class ImageReadError(OSError):
    """An image file exists but cannot be decoded (truncated, corrupt, unsupported)."""


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def read_array(path: PathLike) -> np.ndarray:
    """Decode an image file to an RGB array (H, W, 3), ``uint8`` or ``uint16`` (16-bit PNG)."""
    path = os.fspath(path)
    try:
        with Image.open(path) as im:
            if im.format == "PNG" and im.mode in ("RGB", "RGBA") and _png_bit_depth(path) == 16:
                return _read_png16_rgb(path)
            im.load()  # decode everything now: a truncated file fails here, not in a worker later
            return _pil_to_rgb(im, path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file not found") from None
    except ImageReadError:
        raise
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, zlib.error, ... on bad data
        raise ImageReadError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc


def to_float(arr: np.ndarray) -> np.ndarray:
    """uint8 / uint16 array -> float32 in [0, 1] (float input is returned as float32 unchanged)."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / np.float32(65535.0)
    return arr.astype(np.float32, copy=False)


def read_image(path: PathLike) -> np.ndarray:
    """Decode an image file to float32 RGB (H, W, 3) in [0, 1]."""
    return to_float(read_array(path))


def grey_levels(arr: np.ndarray) -> float:
    """Mean pixel value of an image array on the 8-bit scale (0..255), whatever its dtype."""
    scale = {np.dtype(np.uint8): 1.0, np.dtype(np.uint16): 255.0 / 65535.0}.get(arr.dtype, 255.0)
    return float(arr.mean(dtype=np.float64)) * scale


# --- helpers --------------------------------------------------------------------------------------------
def _pil_to_rgb(im: Image.Image, path: str) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im)
    if mode in ("L", "LA"):
        grey = np.asarray(im.getchannel(0))
    elif mode in _GREY16_MODES:
        grey = np.asarray(im).astype(np.uint16)
    elif mode == "I":  # Pillow opens some 16-bit grey PNGs / TIFFs as 32-bit integer images
        grey = np.asarray(im)
        if grey.size and (grey.min() < 0 or grey.max() > 65535):
            raise ImageReadError(f"{path}: 32-bit integer image with values outside 0..65535")
        grey = grey.astype(np.uint16)
    elif mode == "F":
        raise ImageReadError(f"{path}: floating-point images are not supported (expected 8- or 16-bit)")
    else:  # RGBA (alpha dropped, not composited), P, PA, 1, CMYK, YCbCr, ...
        return np.asarray(im.convert("RGB"))
    return np.repeat(grey[:, :, None], 3, axis=2)


def _png_bit_depth(path: str) -> int:
    """Bit depth from the PNG header (IHDR is always the first chunk)."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise ImageReadError(f"{path}: not a valid PNG header")
    return head[24]


def _read_png16_rgb(path: str) -> np.ndarray:
    import png  # pypng: pure Python, only needed for 16-bit colour PNGs

    width, height, rows, info = png.Reader(filename=path).asDirect()
    planes = info["planes"]
    arr = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)
    return np.ascontiguousarray(arr[:, :, :3])
