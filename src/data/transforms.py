"""Paired training augmentations: every random choice is drawn once and applied to BOTH images.

They work on numpy arrays H x W x C (uint8, uint16 or float32, RGB) before conversion to tensors, so the
crop happens before the (more expensive) float conversion. Random numbers come from torch's generator
(the global one unless a ``torch.Generator`` is passed), which the DataLoader seeds per worker.

* :class:`RandomCrop` - a crop of a fixed size at a uniform random position; with ``pad``, an image smaller
  than the crop is first extended by mirroring at the bottom and right (BasicSR's loaders, which Restormer,
  DRSformer and NAFNet train with: OpenCV's BORDER_REFLECT, the edge pixel repeated).
* :class:`RandomResizedCrop` - the SPANet release's augmentation (its randomcrop.py, an old torchvision
  RandomResizedCrop made paired): a crop of 80-100 % of the area with aspect ratio 3/4..4/3 (drawn w, h
  swapped with probability 1/2; 10 attempts, then a centred square), resized to ``size`` x ``size``
  with bicubic interpolation.
* :class:`RandomScale` - the paper's "scaling": both images resized by one random factor (bicubic);
  follow it with a crop ("scaling and cropping").
* :class:`RandomFlip` - horizontal / vertical flips and transposition, each with probability 1/2. All three
  together draw each of the 8 rotations and reflections of the square with probability 1/8: the same
  distribution as BasicSR's ``random_augmentation`` (``randint(0, 7)`` over flips and 90-degree rotations).
* :func:`sub_crop` - the progressive schedule's crop of a stage's patch out of the largest one (BasicSR's
  progressive training loop).

:func:`build_train_transform` turns the ``train_transform`` block of a data config into one pipeline.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from src.utils.errors import ConfigValueError

Size = Union[int, Sequence[int]]
_FILTERS = {
    "bicubic": Image.BICUBIC,
    "bilinear": Image.BILINEAR,
    "nearest": Image.NEAREST,
    "lanczos": Image.LANCZOS,
    "area": Image.BOX,
}


def _uniform(low: float, high: float, g: Optional[torch.Generator]) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _randint(low: int, high: int, g: Optional[torch.Generator]) -> int:
    """Uniform integer in [low, high] (both inclusive)."""
    return int(torch.randint(low, high + 1, (), generator=g))


def _pair_size(size: Size) -> tuple[int, int]:
    """An int or [h, w] of positive integers -> (h, w); anything else is a ValueError."""
    hw = (size, size) if not isinstance(size, (list, tuple)) and not hasattr(size, "__len__") else tuple(size)
    if len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in hw):
        raise ValueError(f"size {size!r}: expected a positive integer or [height, width] of positive integers")
    return hw[0], hw[1]


def resize(arr: np.ndarray, size_hw: tuple[int, int], interpolation: str = "bicubic") -> np.ndarray:
    """Resize an H x W x C array to ``size_hw`` with Pillow; keeps the dtype (values rounded and clipped)."""
    h, w = size_hw
    if arr.shape[:2] == (h, w):
        return arr
    resample = _FILTERS[interpolation]
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
        return np.asarray(Image.fromarray(arr).resize((w, h), resample))
    # 16-bit / float images: resize each channel as a 32-bit float image
    chans = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(arr[:, :, c], dtype=np.float32), mode="F").resize((w, h), resample)
        )
        for c in range(arr.shape[2])
    ]
    out = np.stack(chans, axis=2)
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(arr.dtype)


class RandomCrop:
    """Crop both images at the same random position to ``size`` (int or (h, w))."""

    def __init__(self, size: Size, pad: bool = False) -> None:
        self.size = _pair_size(size)
        self.pad = bool(pad)

    def __call__(self, rain: np.ndarray, clean: np.ndarray, g: Optional[torch.Generator] = None):
        th, tw = self.size
        h, w = rain.shape[:2]
        if self.pad and (h < th or w < tw):
            rain, clean = (mirror_pad(a, th, tw) for a in (rain, clean))
            h, w = rain.shape[:2]
        if h < th or w < tw:
            raise ValueError(
                f"image of {h}x{w} pixels is smaller than the training crop {th}x{tw} (lower data.train_transform.crop)"
            )
        i, j = _randint(0, h - th, g), _randint(0, w - tw, g)
        return rain[i : i + th, j : j + tw], clean[i : i + th, j : j + tw]

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}" + (", pad=True)" if self.pad else ")")


def mirror_pad(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """``arr`` (H x W x C) extended to at least ``height`` x ``width`` by mirroring at the bottom and right, the
    edge pixel repeated (``numpy.pad`` mode 'symmetric' = OpenCV's BORDER_REFLECT, BasicSR's ``padding``)."""
    ph, pw = max(0, height - arr.shape[0]), max(0, width - arr.shape[1])
    return np.pad(arr, ((0, ph), (0, pw), (0, 0)), mode="symmetric") if ph or pw else arr


def sub_crop(rain: np.ndarray, clean: np.ndarray, patch: int, g: Optional[torch.Generator] = None):
    """A ``patch`` x ``patch`` crop of both images (already cropped to the schedule's largest patch), at the offset
    BasicSR's progressive loop draws: ``int((size - patch) * u)`` per axis, ``u`` uniform in [0, 1). The authors'
    loop draws one offset per batch; here each sample draws its own."""
    h, w = rain.shape[:2]
    if h < patch or w < patch:
        raise ValueError(f"image of {h}x{w} pixels is smaller than the stage's patch {patch}")
    top = int((h - patch) * float(torch.rand((), generator=g)))
    left = int((w - patch) * float(torch.rand((), generator=g)))
    return rain[top : top + patch, left : left + patch], clean[top : top + patch, left : left + patch]


class RandomResizedCrop:
    """The SPANet release's paired random-resized crop (see the module docstring)."""

    def __init__(
        self,
        size: Size = 256,
        scale: Sequence[float] = (0.8, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        interpolation: str = "bicubic",
    ) -> None:
        self.size = _pair_size(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        if interpolation not in _FILTERS:
            raise ValueError(f"interpolation={interpolation!r}: choose from {sorted(_FILTERS)}")
        self.interpolation = interpolation

    def get_params(self, height: int, width: int, g: Optional[torch.Generator] = None):
        """(top, left, h, w) of the crop; the release's algorithm."""
        area = height * width
        for _ in range(10):
            target_area = _uniform(*self.scale, g) * area
            aspect = _uniform(*self.ratio, g)
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if float(torch.rand((), generator=g)) < 0.5:
                w, h = h, w
            if w <= width and h <= height:
                return _randint(0, height - h, g), _randint(0, width - w, g), h, w
        side = min(height, width)  # fallback: centred square
        return (height - side) // 2, (width - side) // 2, side, side

    def __call__(self, rain: np.ndarray, clean: np.ndarray, g: Optional[torch.Generator] = None):
        i, j, h, w = self.get_params(*rain.shape[:2], g=g)
        return (
            resize(rain[i : i + h, j : j + w], self.size, self.interpolation),
            resize(clean[i : i + h, j : j + w], self.size, self.interpolation),
        )

    def __repr__(self) -> str:
        return f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio})"


class RandomScale:
    """Resize both images by one factor drawn uniformly from ``scale`` = (low, high)."""

    def __init__(self, scale: Sequence[float], interpolation: str = "bicubic") -> None:
        self.scale = (float(scale[0]), float(scale[1]))
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"train_transform.scale={list(scale)} must be 0 < low <= high")
        self.interpolation = interpolation

    def __call__(self, rain: np.ndarray, clean: np.ndarray, g: Optional[torch.Generator] = None):
        s = _uniform(*self.scale, g)
        h, w = rain.shape[:2]
        size = (max(1, int(round(h * s))), max(1, int(round(w * s))))
        return resize(rain, size, self.interpolation), resize(clean, size, self.interpolation)

    def __repr__(self) -> str:
        return f"RandomScale(scale={self.scale})"


class RandomFlip:
    """Horizontal flip, vertical flip and transposition (swap of H and W), each with probability 1/2."""

    def __init__(self, hflip: bool = True, vflip: bool = False, transpose: bool = False) -> None:
        self.hflip, self.vflip, self.transpose = bool(hflip), bool(vflip), bool(transpose)

    def __call__(self, rain: np.ndarray, clean: np.ndarray, g: Optional[torch.Generator] = None):
        for enabled, op in (
            (self.hflip, lambda a: a[:, ::-1]),
            (self.vflip, lambda a: a[::-1]),
            (self.transpose, lambda a: a.transpose(1, 0, 2)),
        ):
            if enabled and float(torch.rand((), generator=g)) < 0.5:
                rain, clean = op(rain), op(clean)
        return rain, clean

    def __repr__(self) -> str:
        return f"RandomFlip(hflip={self.hflip}, vflip={self.vflip}, transpose={self.transpose})"


class Compose:
    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, rain: np.ndarray, clean: np.ndarray, g: Optional[torch.Generator] = None):
        for t in self.transforms:
            rain, clean = t(rain, clean, g)
        return rain, clean

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


def check_train_patch(patch: Any) -> int:
    """``schedule.train_patch`` (a recipe's training patch side, set by the baselines' recipes: their authors
    trained on 64x64 crops) as an int; a clear error for anything but a positive int."""
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1:
        raise ConfigValueError(f"schedule.train_patch must be a positive int (pixels) or null, got {patch!r}")
    return patch


def with_train_patch(train_transform: Optional[Mapping[str, Any]], patch: Any, pad: bool = False) -> dict:
    """The ``train_transform`` block with its cropping replaced by plain random ``patch`` x ``patch`` crops:
    ``scale`` and ``resized_crop`` are dropped, ``crop`` becomes ``patch`` (``pad``: images smaller than the crop
    are mirrored to its size, :class:`RandomCrop`), flips stay as configured."""
    block = dict(train_transform or {})
    block.update(scale=None, resized_crop=None, crop=check_train_patch(patch))
    if pad:
        block["pad"] = True
    return block


FLIPS = ("hflip", "vflip", "transpose")


def check_train_flips(flips: Any) -> dict[str, bool]:
    """``schedule.train_flips`` (a recipe's flips, e.g. JORDER-E's horizontal / vertical flips and transposition)
    as ``{"hflip": bool, "vflip": bool, "transpose": bool}``; keys left out are off. A clear error for anything
    else."""
    if not isinstance(flips, Mapping):
        raise ConfigValueError(
            f"schedule.train_flips must be null or a mapping of {', '.join(FLIPS)} to true/false, got {flips!r}"
        )
    unknown = sorted(set(flips) - set(FLIPS))
    if unknown:
        raise ConfigValueError(f"schedule.train_flips: unknown key(s) {unknown}; known: {', '.join(FLIPS)}")
    for key, value in flips.items():
        if not isinstance(value, bool):
            raise ConfigValueError(f"schedule.train_flips.{key} must be true or false, got {value!r}")
    return {key: bool(flips.get(key, False)) for key in FLIPS}


def with_train_flips(train_transform: Optional[Mapping[str, Any]], flips: Any) -> dict:
    """The ``train_transform`` block with its flips replaced by a recipe's (:func:`check_train_flips`)."""
    block = dict(train_transform or {})
    block.update(check_train_flips(flips))
    return block


def build_train_transform(
    crop: Optional[Size] = None,
    resized_crop: Union[None, int, Mapping[str, Any]] = None,
    scale: Optional[Sequence[float]] = None,
    hflip: bool = False,
    vflip: bool = False,
    transpose: bool = False,
    pad: bool = False,
) -> Optional[Compose]:
    """The training pipeline from config keys, applied in the order scale -> resized_crop -> crop -> flips.

    Args:
        crop: random crop size (int or [h, w]); null for none.
        resized_crop: the release's random-resized crop: an int (output size, release defaults) or a
            mapping with ``size``, ``scale`` (area fraction range), ``ratio`` (aspect range), ``interpolation``.
        scale: [low, high] factor range of the paper's random scaling; null for none.
        hflip, vflip, transpose: random flips / transposition, each applied with probability 1/2.
        pad: mirror images smaller than ``crop`` to its size first (BasicSR; set by progressive schedules).
    Returns None when nothing is enabled.
    """
    steps: list[Any] = []
    try:
        key, value = "scale", scale
        if scale is not None:
            steps.append(RandomScale(scale))
        key, value = "resized_crop", resized_crop
        if resized_crop is not None:
            steps.append(
                RandomResizedCrop(**dict(resized_crop))
                if isinstance(resized_crop, Mapping)
                else RandomResizedCrop(resized_crop)
            )
        key, value = "crop", crop
        if crop is not None:
            steps.append(RandomCrop(crop, pad=pad))
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise ConfigValueError(f"data.train_transform.{key}={value!r}: {exc}") from None
    if hflip or vflip or transpose:
        steps.append(RandomFlip(hflip, vflip, transpose))
    return Compose(steps) if steps else None
