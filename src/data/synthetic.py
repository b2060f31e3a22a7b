"""Built-in synthetic rain: rain/clean pairs and rain videos from photos bundled inside scikit-image.

Nothing is downloaded: the clean images are the natural photos that ship inside scikit-image's wheel
(``skimage.data``). Rain is rendered procedurally (numpy/scipy only):

1. streak seeds: Bernoulli(density) impulses with random brightness,
2. widened by a grey dilation (streak width),
3. smeared along the fall direction by an anti-aliased line kernel of peak 1 (streak length, angle),
4. softened by a Gaussian blur, scaled to a random peak brightness,
5. composited onto the clean image additively (``clean + R``) or by screen blending
   (``1 - (1 - clean)(1 - R)``), optionally with haze (``x (1 - h) + h A``).

Density levels follow DID-MDN's label convention: 0 heavy, 1 medium, 2 light. Every pair is a pure
function of ``(seed, index)``, so data are identical across runs, workers and processes.

Colour space: RGB, float32 in [0, 1], arrays H x W x 3 (numpy); datasets return the sample dict of
``src/data/base.py`` (C x H x W tensors).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Optional, Sequence

import numpy as np
import torch
from scipy import ndimage, signal
from skimage import data as skdata
from skimage.draw import line_aa
from skimage.transform import resize
from torch.utils.data import Dataset

from src.data.base import DerainDataModule, size_key
from src.data.transforms import check_train_flips, check_train_patch
from src.utils.errors import ConfigValueError

LEVELS = ("heavy", "medium", "light")  # index = DID-MDN density label

# Photos inside scikit-image's wheel (no network fetch). Grey ones are replicated to 3 channels.
PHOTOS = {
    "astronaut": lambda: skdata.astronaut(),
    "rocket": lambda: skdata.rocket(),
    "camera": lambda: skdata.camera(),
    "coins": lambda: skdata.coins(),
    "grass": lambda: skdata.grass(),
    "gravel": lambda: skdata.gravel(),
    "brick": lambda: skdata.brick(),
    "moon": lambda: skdata.moon(),
    "hubble_deep_field": lambda: skdata.hubble_deep_field(),
    "coffee": lambda: skdata.coffee(),
    "chelsea": lambda: skdata.chelsea(),
    "motorcycle": lambda: skdata.stereo_motorcycle()[0],
}


@cache
def load_photo(name: str) -> np.ndarray:
    """A bundled photo as float32 RGB H x W x 3 in [0, 1] (read-only, cached)."""
    if name not in PHOTOS:
        raise KeyError(f"unknown synthetic photo {name!r}; choose from {sorted(PHOTOS)}")
    img = np.asarray(PHOTOS[name]())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3].astype(np.float32) / 255.0
    img.setflags(write=False)
    return img


@dataclass(frozen=True)
class RainParams:
    """Parameters of one rain layer. density = fraction of pixels that seed a streak."""

    density: float
    length: int
    width: int
    angle: float  # degrees from vertical; positive: the lower end lies to the right (wind to the right)
    blur: float  # Gaussian sigma in pixels
    brightness: float  # peak added intensity in [0, 1]
    blend: str  # "add" | "screen"
    haze: float = 0.0  # 0 = none; fraction of atmospheric light mixed in

    @staticmethod
    def sample(rng: np.random.Generator, level: int, haze_prob: float = 0.0) -> RainParams:
        """Random parameters for density level 0 heavy, 1 medium, 2 light."""
        lo, hi = {0: (0.010, 0.020), 1: (0.004, 0.010), 2: (0.001, 0.004)}[level]
        b_lo, b_hi = {0: (0.35, 0.7), 1: (0.3, 0.6), 2: (0.25, 0.5)}[level]
        return RainParams(
            density=float(rng.uniform(lo, hi)),
            length=int(rng.integers(7, 20)),
            width=int(rng.choice([1, 1, 2])),
            angle=float(rng.uniform(-30, 30)),
            blur=float(rng.uniform(0.3, 1.0)),
            brightness=float(rng.uniform(b_lo, b_hi)),
            blend=str(rng.choice(["add", "screen"])),
            haze=float(rng.uniform(0.05, 0.25)) if rng.random() < haze_prob else 0.0,
        )


def _line_kernel(length: int, angle: float) -> np.ndarray:
    """Anti-aliased line of ``length`` pixels (peak 1), tilted ``angle`` degrees from vertical."""
    size = length if length % 2 else length + 1
    c = size // 2
    t = np.deg2rad(angle)
    dx, dy = (length - 1) / 2 * np.sin(t), (length - 1) / 2 * np.cos(t)
    k = np.zeros((size, size), np.float32)
    rr, cc, val = line_aa(int(round(c - dy)), int(round(c - dx)), int(round(c + dy)), int(round(c + dx)))
    k[rr, cc] = np.maximum(k[rr, cc], val)
    return k


def render_rain_layer(shape: tuple[int, int], p: RainParams, rng: np.random.Generator) -> np.ndarray:
    """One streak layer, float32 H x W in [0, 1]."""
    h, w = shape
    seeds = (rng.random((h, w)) < p.density) * rng.uniform(0.6, 1.0, (h, w))
    if p.width > 1:
        seeds = ndimage.grey_dilation(seeds, size=(p.width, p.width))
    streaks = signal.oaconvolve(seeds, _line_kernel(p.length, p.angle), mode="same")
    if p.blur > 0:
        streaks = ndimage.gaussian_filter(streaks, p.blur)
    # a lone streak keeps its seed brightness; overlapping streaks saturate at 1
    return (np.clip(streaks, 0, 1) * p.brightness).astype(np.float32)


def composite(clean: np.ndarray, layer: np.ndarray, p: RainParams, atmosphere: float = 0.9) -> np.ndarray:
    """Rainy image from a clean H x W x 3 image and a rain layer H x W (both [0, 1])."""
    r = layer[..., None]
    out = clean + r if p.blend == "add" else 1.0 - (1.0 - clean) * (1.0 - r)
    if p.haze > 0:
        out = out * (1.0 - p.haze) + p.haze * atmosphere
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def make_rain_pair(
    clean: np.ndarray, level: int, rng: np.random.Generator, haze_prob: float = 0.0
) -> tuple[np.ndarray, RainParams]:
    """(rainy image, parameters) for a clean float image at density ``level``."""
    p = RainParams.sample(rng, level, haze_prob)
    return composite(clean, render_rain_layer(clean.shape[:2], p, rng), p), p


def make_rain_video(
    background: np.ndarray,
    n_frames: int,
    seed: int = 0,
    density: str = "normal",
    haze: float = 0.0,
    noise_sigma: float = 2.0,
    flicker: float = 0.02,
) -> np.ndarray:
    """A rain video over one static background, like the paper's Table 1 set-up.

    ``background``: uint8 H x W x 3. ``density``: "sparse" | "normal" | "dense" (light/medium/heavy streaks).
    Each frame gets a fresh streak layer (falling rain moves farther than a streak's length between
    frames at video rates, so consecutive layers are independent) with its own angle jitter around a
    per-video wind angle, a global brightness flicker ``1 + flicker * N(0, 1)`` and Gaussian sensor noise of
    ``noise_sigma`` grey levels. ``haze`` in [0, 1) mixes in atmospheric light. Returns uint8 (N, H, W, 3).
    """
    levels = {"dense": 0, "normal": 1, "sparse": 2}
    if density not in levels:
        raise ValueError(f"density={density!r}: expected one of {sorted(levels)}")
    if background.dtype != np.uint8 or background.ndim != 3 or background.shape[2] != 3:
        raise ValueError(f"background must be uint8 H x W x 3, got {background.dtype} {background.shape}")
    rng = np.random.default_rng(seed)
    wind = float(rng.uniform(-20, 20))
    clean = background.astype(np.float32) / 255.0
    frames = np.empty((n_frames,) + background.shape, np.uint8)
    for t in range(n_frames):
        p = RainParams.sample(rng, levels[density])
        p = RainParams(**{**p.__dict__, "angle": wind + float(rng.normal(0, 3)), "haze": haze})
        frame = composite(clean, render_rain_layer(clean.shape[:2], p, rng), p)
        frame = frame * (1.0 + flicker * rng.normal()) + rng.normal(0, noise_sigma / 255.0, frame.shape)
        frames[t] = np.clip(np.round(frame * 255.0), 0, 255).astype(np.uint8)
    return frames


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


class SyntheticRainDataset(Dataset):
    """Pairs rendered on the fly; sample ``i`` is a pure function of ``(seed, i)``.

    ``patch_size`` given: random crops (training). ``patch_size`` None: each photo at its full size (or
    resized so its long side is ``long_side``) once per density level (validation/test).
    """

    def __init__(
        self,
        photos: Sequence[str],
        seed: int,
        length: Optional[int] = None,
        patch_size: Optional[int] = None,
        long_side: Optional[int] = None,
        haze_prob: float = 0.0,
        flips: Optional[dict] = None,
    ) -> None:
        if not photos:
            raise ValueError("SyntheticRainDataset needs at least one photo name")
        for name in photos:
            load_photo(name)  # fail early on unknown names
        self.photos = list(photos)
        self.seed = int(seed)
        self.patch_size = patch_size
        self.long_side = long_side
        self.haze_prob = haze_prob
        self.flips = {"hflip": True, "vflip": False, "transpose": False} if flips is None else check_train_flips(flips)
        self.length = int(length) if patch_size else len(self.photos) * len(LEVELS)
        if patch_size and not length:
            raise ValueError("training synthetic data needs `length` (samples per epoch)")

    def __len__(self) -> int:
        return self.length

    def _clean(self, idx: int, rng: np.random.Generator, patch: Optional[int] = None) -> tuple[np.ndarray, str, int]:
        if self.patch_size:
            name = self.photos[int(rng.integers(len(self.photos)))]
            img = load_photo(name)
            ps = patch or self.patch_size
            h, w = img.shape[:2]
            if h < ps or w < ps:
                raise ValueError(f"photo {name!r} ({h}x{w}) is smaller than data.patch_size={ps}")
            y, x = int(rng.integers(h - ps + 1)), int(rng.integers(w - ps + 1))
            patch = img[y : y + ps, x : x + ps]
            # horizontal flip with probability 1/2 (always drawn, so the stream of random numbers does not
            # depend on the flips); a recipe's vertical flip / transposition each draw one more number
            if rng.random() < 0.5 and self.flips["hflip"]:
                patch = patch[:, ::-1]
            if self.flips["vflip"] and rng.random() < 0.5:
                patch = patch[::-1]
            if self.flips["transpose"] and rng.random() < 0.5:
                patch = patch.transpose(1, 0, 2)
            return np.ascontiguousarray(patch), f"{self.seed}_{idx}", int(rng.integers(len(LEVELS)))
        name, level = self.photos[idx // len(LEVELS)], idx % len(LEVELS)
        img = load_photo(name)
        if self.long_side and max(img.shape[:2]) != self.long_side:
            s = self.long_side / max(img.shape[:2])
            size = (max(1, round(img.shape[0] * s)), max(1, round(img.shape[1] * s)))
            img = resize(img, size, anti_aliasing=True).astype(np.float32)
        return img, f"{name}_{LEVELS[level]}", level

    def __getitem__(self, key) -> dict:
        """``key``: an index, or a progressive schedule's ``(index, None, patch)``: the patch replaces
        ``patch_size`` (same photo, position and rain draws, cropped to that size)."""
        idx, _, patch = (*key, None)[:3] if isinstance(key, tuple) else (key, None, None)
        if not 0 <= idx < self.length:
            raise IndexError(idx)
        rng = np.random.default_rng([self.seed, idx])
        clean, name, level = self._clean(idx, rng, patch)
        rain, _ = make_rain_pair(clean, level, rng, self.haze_prob)
        return {
            "rain": _to_tensor(rain),
            "clean": _to_tensor(clean.astype(np.float32)),
            "name": name,
            "label": torch.tensor(level, dtype=torch.int64),
        }


class SyntheticRainDataModule(DerainDataModule):
    """``data=synthetic``: the built-in default. Train photos and held-out val/test photos never overlap."""

    def __init__(
        self,
        train_photos: Sequence[str] = (
            "astronaut",
            "rocket",
            "camera",
            "coins",
            "grass",
            "gravel",
            "brick",
            "moon",
            "hubble_deep_field",
        ),
        val_photos: Sequence[str] = ("coffee",),
        test_photos: Sequence[str] = ("chelsea", "motorcycle"),
        train_length: int = 2000,
        patch_size: int = 64,
        eval_long_side: Optional[int] = 128,
        haze_prob: float = 0.0,
        seed: int = 0,
        eval_seed: int = 42,
        train_patch: Optional[int] = None,
        train_flips: Optional[dict] = None,
        **loader_kwargs,
    ) -> None:
        """``train_patch`` (``schedule.train_patch``, set by the baselines' recipes) replaces ``patch_size``
        (``progressive`` stages replace it per training step, :mod:`src.data.progressive`); ``train_flips``
        (``schedule.train_flips``) replaces the default random horizontal flip of training patches."""
        super().__init__(seed=seed, **loader_kwargs)
        if self.stages is not None:  # progressive: each key carries its stage's patch
            self.train_patch = train_patch  # refused with the stages when training (check_schedule_keys)
        patch_size = size_key(patch_size, "data.patch_size") if train_patch is None else check_train_patch(train_patch)
        size_key(train_length, "data.train_length")
        size_key(eval_long_side, "data.eval_long_side", allow_none=True)
        if isinstance(haze_prob, bool) or not isinstance(haze_prob, (int, float)) or not 0.0 <= haze_prob <= 1.0:
            raise ConfigValueError(f"data.haze_prob={haze_prob!r}: expected a probability in [0, 1]")
        flips = None if train_flips is None else check_train_flips(train_flips)
        overlap = set(train_photos) & (set(val_photos) | set(test_photos))
        if overlap:
            raise ValueError(f"data.train_photos and the val/test photos overlap: {sorted(overlap)}")
        self.kw = dict(
            train_photos=list(train_photos),
            val_photos=list(val_photos),
            test_photos=list(test_photos),
            train_length=train_length,
            patch_size=patch_size,
            eval_long_side=eval_long_side,
            haze_prob=haze_prob,
            seed=seed,
            eval_seed=eval_seed,
            flips=flips,
        )

    def build(self):
        k = self.kw
        train = SyntheticRainDataset(
            k["train_photos"], k["seed"], k["train_length"], k["patch_size"], haze_prob=k["haze_prob"], flips=k["flips"]
        )
        # val/test rain depends on eval_seed only, so runs with different training seeds score the same images
        val = SyntheticRainDataset(
            k["val_photos"], k["eval_seed"] + 1, long_side=k["eval_long_side"], haze_prob=k["haze_prob"]
        )
        test = SyntheticRainDataset(
            k["test_photos"], k["eval_seed"] + 2, long_side=k["eval_long_side"], haze_prob=k["haze_prob"]
        )
        return train, val, test
