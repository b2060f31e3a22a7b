"""Tiny data trees in the real layouts (docs/datasets.md), built from known arrays.

Every image is 24x32 (H x W) unless said otherwise; a rainy image is its clean image plus bright streaks,
so rainy is brighter on average. ``Tree.images`` maps each written path to the exact array written
(for PNGs; JPEG files are compared against their own decode).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import png  # pypng, to write 16-bit PNGs
import pytest
from PIL import Image

H, W = 24, 32


def clean_image(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(30, 180, size=(h, w, 3), dtype=np.uint8)


def add_rain(clean: np.ndarray, seed: int, amount: int = 60) -> np.ndarray:
    """Vertical bright streaks on every 4th column (rain brightens pixels)."""
    rain = clean.astype(np.int32)
    cols = (np.arange(clean.shape[1]) + seed) % 4 == 0
    rain[:, cols] += amount
    return np.clip(rain, 0, 255).astype(np.uint8)


def write(path: Path, arr: np.ndarray, quality: int = 95) -> Path:
    """PNG (8/16-bit, RGB or grey) or JPEG by extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png" and arr.dtype == np.uint16:
        planes = 1 if arr.ndim == 2 else arr.shape[2]
        png.Writer(arr.shape[1], arr.shape[0], bitdepth=16, greyscale=planes == 1, alpha=planes == 4).write(
            open(path, "wb"), arr.reshape(arr.shape[0], -1).tolist()
        )
    elif path.suffix == ".png":
        Image.fromarray(arr).save(path)
    else:
        Image.fromarray(arr).save(path, quality=quality)
    return path


@dataclass
class Tree:
    root: Path
    images: dict = field(default_factory=dict)  # path str -> array written
    info: dict = field(default_factory=dict)

    def put(self, rel: str, arr: np.ndarray) -> str:
        path = str(write(self.root / rel, arr))
        self.images[path] = arr
        return path


# --- SPA-Data -------------------------------------------------------------------------------------------
SPA_SCENES = ("000", "001", "002", "010")  # 10 sorts after 2 numerically (and as text)
SPA_FRAMES = (1, 2)
SPA_POS = ((0, 0), (0, 1))


def build_spa(root: Path, prefix: str = "/") -> Tree:
    """SPA-Data look-alike: 4 scenes x 2 frames x 2 positions = 16 listed pairs that exist, plus 3 lines of
    a broken scene 274 (its files are misnamed) and a blank line; test set of 3 (one 32x24), 2 Internet photos."""
    t = Tree(root)
    lines = []
    seed = 0
    for scene in SPA_SCENES:
        for x, y in SPA_POS:
            seed += 1
            clean = clean_image(seed)
            t.put(f"real_world_gt/{scene}/{scene}_{x}_{y}.png", clean)
            for f in SPA_FRAMES:
                rain_rel = f"real_world/{scene}/{scene}-{f}/{scene}-{f}_{x}_{y}.png"
                t.put(rain_rel, add_rain(clean, seed + f))
                lines.append(f"{prefix}{rain_rel} {prefix}real_world_gt/{scene}/{scene}_{x}_{y}.png")
    # scene 274: the files exist under other names than the list says
    t.put("real_world/274/274_1/274_1_0_0.png", add_rain(clean_image(99), 1))
    t.put("real_world_gt/274/274_0_0.png", clean_image(99))
    for f in (1, 2, 3):
        lines.append(f"{prefix}real_world/274/274-{f}/274-{f}_0_0.png {prefix}real_world_gt/274/274_0_0.png")
    lines.insert(5, "")
    (root / "real_world.txt").write_text("\n".join(lines) + "\n")
    t.info["train_pairs"] = len(SPA_SCENES) * len(SPA_FRAMES) * len(SPA_POS)
    t.info["broken"] = 3
    # test: rain/NNN.png + gt/NNNgt.png; one non-square the other way round
    for i, (h, w) in enumerate([(H, W), (W, H), (H, W)]):
        clean = clean_image(200 + i, h, w)
        t.put(f"real_test_1000/gt/{i:03d}gt.png", clean)
        t.put(f"real_test_1000/rain/{i:03d}.png", add_rain(clean, i))
    t.put("Real_Internet/10.jpg", clean_image(300))
    t.put("Real_Internet/2.png", clean_image(301))
    return t


@pytest.fixture
def spa_tree(tmp_path) -> Tree:
    return build_spa(tmp_path / "SPA-Data")


# --- DID-MDN --------------------------------------------------------------------------------------------
DID_CLASSES = {"Rain_Heavy": (0, 90), "Rain_Medium": (1, 60), "Rain_Light": (2, 30)}  # label, streak amount


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.concatenate([left, right], axis=1)


def build_didmdn(root: Path, n_train: int = 3, n_test: int = 12, test_base: int = 1) -> Tree:
    """DID-MDN look-alike: 3 classes x n_train side-by-side JPEGs (0-based), n_test test JPEGs numbered from
    ``test_base``; left half rainy, right half clean."""
    t = Tree(root)
    for cls, (label, amount) in DID_CLASSES.items():
        for i in range(n_train):
            clean = clean_image(1000 * label + i)
            t.put(f"DID-MDN-training/{cls}/train2018new/{i}.jpg", side_by_side(add_rain(clean, i, amount), clean))
    for k in range(n_test):
        clean = clean_image(5000 + k)
        t.put(f"DID-MDN-test/{k + test_base}.jpg", side_by_side(add_rain(clean, k), clean))
    return t


@pytest.fixture
def didmdn_tree(tmp_path) -> Tree:
    return build_didmdn(tmp_path / "DID-MDN")


# --- generic layouts ------------------------------------------------------------------------------------
def build_layouts(root: Path) -> Tree:
    """One folder per layout of data=paired:

    rain100/train  rain-1..3 + norain-1..3 (not padded; norain-3 missing), rain100/test rain-001..002 (padded)
    rain200/train  rain/X2/norain-{1,2}x2.png + norain/norain-{1,2}.png
    same/train     small/rain/{a,b}.png + small/norain/{a,b}.png
    rain1400/train rainy_image/{1,2}_{1,2,3}.jpg + ground_truth/{1,2}.jpg
    rain800/train  {1,2}.jpg side by side, LEFT clean, RIGHT rainy
    """
    t = Tree(root)
    for i in (1, 2, 3):
        clean = clean_image(i)
        t.put(f"rain100/train/rain-{i}.png", add_rain(clean, i))
        if i != 3:
            t.put(f"rain100/train/norain-{i}.png", clean)
        t.put(f"rain100/train/rainstreak-{i}.png", clean)  # JORDER's extra files: not pairs
    for i in (1, 2):
        clean = clean_image(10 + i)
        t.put(f"rain100/test/rain-{i:03d}.png", add_rain(clean, i))
        t.put(f"rain100/test/norain-{i:03d}.png", clean)
        clean = clean_image(20 + i)
        t.put(f"rain200/train/rain/X2/norain-{i}x2.png", add_rain(clean, i))
        t.put(f"rain200/train/norain/norain-{i}.png", clean)
        clean = clean_image(40 + i)
        t.put(f"rain1400/train/ground_truth/{i}.jpg", clean)
        for j in (1, 2, 3):
            t.put(f"rain1400/train/rainy_image/{i}_{j}.jpg", add_rain(clean, j))
        clean = clean_image(50 + i)
        t.put(f"rain800/train/{i}.jpg", side_by_side(clean, add_rain(clean, i)))
    for name in ("a", "b"):
        clean = clean_image(ord(name))
        t.put(f"same/train/small/rain/{name}.png", add_rain(clean, 1))
        t.put(f"same/train/small/norain/{name}.png", clean)
    return t


@pytest.fixture
def layouts_tree(tmp_path) -> Tree:
    return build_layouts(tmp_path / "layouts")


@pytest.fixture
def no_stat(monkeypatch):
    """Count per-file existence checks (os.path.exists / isfile / os.stat) made while reading."""
    calls = []
    for mod, name in ((os.path, "exists"), (os.path, "isfile"), (os, "stat")):
        real = getattr(mod, name)

        def counting(*a, _real=real, **k):
            calls.append(a[0] if a else None)
            return _real(*a, **k)

        monkeypatch.setattr(mod, name, counting)
    return calls
