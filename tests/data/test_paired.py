"""Decoding (src/utils/image_io.py), paired transforms, PairedDataset, the orientation guard and data=paired."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from src.data.paired import PairedDataset, check_orientation, load_pair
from src.data.paired_module import PairedDataModule
from src.data.readers import Pair, read_layout
from src.data.transforms import RandomCrop, RandomFlip, RandomResizedCrop, RandomScale, build_train_transform
from src.utils.image_io import ImageReadError, read_array, read_image
from tests.data.conftest import clean_image, write

NO_AUG = {"crop": None}


# --- decoding ---------------------------------------------------------------------------------------------
def test_png_8bit_exact(tmp_path):
    arr = clean_image(1)
    path = write(tmp_path / "a.png", arr)
    out = read_image(path)
    assert out.dtype == np.float32 and out.shape == (24, 32, 3)
    np.testing.assert_array_equal(out, arr.astype(np.float32) / 255)


def test_png_16bit_rgb_full_precision(tmp_path):
    arr = (np.arange(24 * 32 * 3, dtype=np.uint32).reshape(24, 32, 3) * 29 % 65536).astype(np.uint16)
    path = write(tmp_path / "a16.png", arr)
    raw = read_array(path)
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, arr)  # Pillow alone would keep only the high byte
    np.testing.assert_allclose(read_image(path), arr / 65535.0, rtol=0, atol=1e-7)


def test_png_16bit_grey_and_8bit_grey_to_three_channels(tmp_path):
    g16 = (np.arange(24 * 32).reshape(24, 32) * 83 % 65536).astype(np.uint16)
    out = read_image(write(tmp_path / "g16.png", g16))
    assert out.shape == (24, 32, 3)
    for c in range(3):
        np.testing.assert_allclose(out[:, :, c], g16 / 65535.0, atol=1e-7)
    g8 = clean_image(2)[:, :, 0]
    out = read_image(write(tmp_path / "g8.png", g8))
    np.testing.assert_array_equal(out, np.repeat(g8[:, :, None], 3, 2) / np.float32(255))


def test_rgba_drops_alpha(tmp_path):
    rgba = np.concatenate([clean_image(3), np.full((24, 32, 1), 7, np.uint8)], axis=2)
    out = read_array(write(tmp_path / "a.png", rgba))
    np.testing.assert_array_equal(out, rgba[:, :, :3])


def test_truncated_and_missing_files_name_the_path(tmp_path):
    path = write(tmp_path / "t.png", clean_image(4))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"t\.png: cannot read image"):
        read_array(path)
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match=r"junk\.jpg"):
        read_array(tmp_path / "junk.jpg")
    with pytest.raises(FileNotFoundError, match=r"gone\.png: cannot read image \(file not found\)"):
        read_array(tmp_path / "gone.png")


# --- transforms -------------------------------------------------------------------------------------------
def _pair(h=40, w=56):
    clean = np.random.default_rng(0).integers(60, 150, (h, w, 3), dtype=np.uint8)
    return clean + np.uint8(10), clean  # no overflow: rain = clean + 10 everywhere


def test_random_crop_same_window():
    rain, clean = _pair()
    g = torch.Generator().manual_seed(3)
    r, c = RandomCrop((16, 24))(rain, clean, g)
    assert r.shape == c.shape == (16, 24, 3)
    np.testing.assert_array_equal(r.astype(int) - c, 10)
    # locate the window in the clean image: it must be a real sub-image
    hits = [
        (i, j)
        for i in range(40 - 16 + 1)
        for j in range(56 - 24 + 1)
        if np.array_equal(clean[i : i + 16, j : j + 24], c)
    ]
    assert len(hits) == 1
    with pytest.raises(ValueError, match="smaller than the training crop 64x64"):
        RandomCrop(64)(rain, clean, g)


def test_random_resized_crop_matches_pil_and_release_ranges():
    rain, clean = _pair(300, 280)
    t = RandomResizedCrop(256)
    for seed in range(20):
        i, j, h, w = t.get_params(300, 280, torch.Generator().manual_seed(seed))
        assert 0.8 * 300 * 280 * 0.98 <= h * w <= 300 * 280 * 1.0 + 600  # area 80-100 % (rounding)
        assert 0.75 * 0.97 <= w / h <= 4 / 3 * 1.03 or 0.75 * 0.97 <= h / w <= 4 / 3 * 1.03
        assert 0 <= i <= 300 - h and 0 <= j <= 280 - w
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    i, j, h, w = t.get_params(300, 280, g1)
    r, c = t(rain, clean, g2)
    expect = np.asarray(Image.fromarray(clean).crop((j, i, j + w, i + h)).resize((256, 256), Image.BICUBIC))
    np.testing.assert_array_equal(c, expect)
    assert r.shape == (256, 256, 3)
    assert np.abs(r.astype(int) - c - 10).max() <= 1  # same parameters for both (bicubic is linear)


def test_resized_crop_fallback_is_centre_square():
    t = RandomResizedCrop(8, scale=(0.99, 1.0), ratio=(3.0, 3.0))  # never fits a 10x10 image
    assert t.get_params(10, 12, torch.Generator().manual_seed(0)) == (0, 1, 10, 10)


def test_random_scale_and_16bit_resize():
    rain, clean = _pair(20, 30)
    r, c = RandomScale((1.5, 1.5))(rain, clean)
    assert r.shape == c.shape == (30, 45, 3)
    u16 = clean.astype(np.uint16) * 257
    r16, c16 = RandomScale((1.5, 1.5))(u16, u16)
    assert r16.dtype == np.uint16 and r16.shape == (30, 45, 3)
    np.testing.assert_allclose(r16 / 65535.0, c / 255.0, atol=2 / 255)  # same image, two bit depths


def test_flips_apply_to_both():
    rain, clean = _pair(8, 10)
    seen = set()
    for seed in range(16):
        r, c = RandomFlip(True, True, True)(rain, clean, torch.Generator().manual_seed(seed))
        np.testing.assert_array_equal(r.astype(int) - c, 10)
        variants = {"id": clean, "h": clean[:, ::-1], "v": clean[::-1], "hv": clean[::-1, ::-1]}
        for name, base in variants.items():
            for tr in (False, True):
                cand = base.transpose(1, 0, 2) if tr else base
                if cand.shape == c.shape and np.array_equal(cand, c):
                    seen.add(name + ("t" if tr else ""))
    assert len(seen) >= 6  # all combinations occur


def test_build_train_transform_order():
    t = build_train_transform(crop=16, resized_crop={"size": 32}, scale=[1, 2], hflip=True)
    assert [type(s).__name__ for s in t.transforms] == ["RandomScale", "RandomResizedCrop", "RandomCrop", "RandomFlip"]
    assert build_train_transform() is None


# --- dataset ----------------------------------------------------------------------------------------------
def test_dataset_sample_dict_and_known_pixels(layouts_tree):
    pairs = read_layout(str(layouts_tree.root / "rain100/test"), "rain100").pairs
    ds = PairedDataset(pairs)
    s = ds[1]
    assert s["name"] == "rain-002" and s["label"].dtype == torch.int64 and int(s["label"]) == -1
    assert s["rain"].dtype == torch.float32 and s["rain"].shape == (3, 24, 32)
    rain_arr = layouts_tree.images[pairs[1].rain]
    clean_arr = layouts_tree.images[pairs[1].clean]
    torch.testing.assert_close(s["rain"], torch.from_numpy(rain_arr).permute(2, 0, 1).float() / 255)
    torch.testing.assert_close(s["clean"], torch.from_numpy(clean_arr).permute(2, 0, 1).float() / 255)
    crop = PairedDataset(pairs, build_train_transform(crop=8))
    s = crop[0]
    assert s["rain"].shape == s["clean"].shape == (3, 8, 8)


def test_dataset_size_mismatch_names_both(tmp_path):
    a = write(tmp_path / "r.png", clean_image(1))
    b = write(tmp_path / "c.png", clean_image(1, 20, 32))
    with pytest.raises(ValueError, match=r"size mismatch: .*r\.png is 32x24 .* .*c\.png is 32x20"):
        PairedDataset([Pair(str(a), str(b), "x")])[0]


def test_crop_larger_than_image_names_the_file(layouts_tree):
    pairs = read_layout(str(layouts_tree.root / "rain100/test"), "rain100").pairs
    with pytest.raises(ValueError, match=r"rain-001\.png: image of 24x32 pixels is smaller"):
        PairedDataset(pairs, build_train_transform(crop=64))[0]


def test_side_by_side_rain800_halves(layouts_tree):
    pairs = read_layout(str(layouts_tree.root / "rain800/train"), "side_by_side", order="clean_rain").pairs
    both = np.array(Image.open(pairs[0].rain).convert("RGB"))  # independent decode of the JPEG
    rain, clean = load_pair(pairs[0])
    np.testing.assert_array_equal(clean, both[:, :32])  # LEFT = clean for Rain800
    np.testing.assert_array_equal(rain, both[:, 32:])


def test_orientation_guard(layouts_tree):
    pairs = read_layout(str(layouts_tree.root / "rain100/test"), "rain100").pairs
    expected = np.mean([layouts_tree.images[p.rain].mean() - layouts_tree.images[p.clean].mean() for p in pairs])
    assert check_orientation(pairs, 16) == pytest.approx(expected, abs=1e-9) and expected > 0
    with pytest.raises(ValueError, match=r"look swapped: set data.swap=true .*check_orientation=false"):
        check_orientation([p.swapped() for p in pairs], 16, "test")


# --- the generic module -----------------------------------------------------------------------------------
def test_paired_module_single_folder_and_swap(layouts_tree):
    root = str(layouts_tree.root / "rain1400/train")
    dm = PairedDataModule(root, "rain1400", train_transform=NO_AUG, batch_size=2)
    dm.setup("fit")
    assert len(dm.train_set) == len(dm.test_set) == len(dm.val_set) == 6
    assert set(dm.splits()) == {"pairs"}
    dm = PairedDataModule(root, "rain1400", train_transform=NO_AUG, swap=True)
    with pytest.raises(ValueError, match="look swapped: set data.swap=true"):
        dm.setup("fit")
    dm = PairedDataModule(root, "rain1400", train_transform=NO_AUG, swap=True, check_orientation=False)
    dm.setup("fit")
    s = dm.test_set[0]
    assert float((s["clean"] - s["rain"]).mean()) > 0  # swapped on purpose


def test_paired_module_side_by_side_order_hint_and_holdout(layouts_tree):
    root = str(layouts_tree.root)
    with pytest.raises(ValueError, match="look swapped: set data.order=clean_rain"):
        PairedDataModule(root, "side_by_side", train_dir="rain800/train", order="rain_clean").setup("fit")
    dm = PairedDataModule(root, "rain1400", train_dir="rain1400/train", val_holdout=1, train_transform=NO_AUG)
    dm.setup("fit")
    assert len(dm.train_set) == 3 and len(dm.val_set) == 3 and dm.test_set is None
    assert {dm.val_set.pair(i).name for i in range(3)} == {"2_1", "2_2", "2_3"}


def test_paired_module_config_errors(layouts_tree, tmp_path):
    with pytest.raises(ValueError, match="data.root is not set: pass data.root=DIR"):
        PairedDataModule("???", "rain100")
    with pytest.raises(FileNotFoundError, match="data.root: folder not found"):
        PairedDataModule(str(tmp_path / "nope"), "rain100")
    with pytest.raises(ValueError, match="data.layout='x'"):
        PairedDataModule(str(tmp_path), "x")
    with pytest.raises(FileNotFoundError, match="rain100 data folder: folder not found: .*missing"):
        PairedDataModule(str(layouts_tree.root), "rain100", train_dir="missing").setup("fit")


NAMED = {
    "rain100h": ("rain100", "RainTrainH", "Rain100H"),
    "rain100l": ("rain100", "RainTrainL", "Rain100L"),
    "rain200h": ("rain200", "rain_data_train_Heavy", "rain_data_test_Heavy"),
    "rain200l": ("rain200", "rain_data_train_Light", "rain_data_test_Light"),
    "rain1400": ("rain1400", "training", "testing"),
    "rain800": ("side_by_side", "training", "test_syn"),
    "test100": ("same_names", None, "."),
    "rain100h_repack": ("same_names", "train", "test"),
}


def test_named_configs_compose(layouts_tree):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from src.utils.config import require_set

    conf = str(Path(__file__).resolve().parents[2] / "conf")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=conf, version_base="1.3"):
            cfgs = {
                name: compose(config_name="check", overrides=[f"data={name}", f"data.root={layouts_tree.root}"])
                for name in NAMED
            }
            rain100 = compose(
                config_name="check",
                overrides=[
                    "data=rain100h",
                    f"data.root={layouts_tree.root}/rain100",
                    "data.train_dir=train",
                    "data.test_dir=test",
                    "data.train_transform.crop=16",
                ],
            )
    finally:
        GlobalHydra.instance().clear()
    for name, (layout, train_dir, test_dir) in NAMED.items():
        require_set(cfgs[name], "data")
        dm = instantiate(cfgs[name].data)
        assert (type(dm), dm.layout, dm.dirs["train"], dm.dirs["test"]) == (
            PairedDataModule,
            layout,
            train_dir,
            test_dir,
        )
    assert instantiate(cfgs["rain800"].data).order == "clean_rain"
    dm = instantiate(rain100.data)
    with pytest.warns(UserWarning, match="skipped 1 pairs whose files are missing .*rain-3.png"):
        dm.setup("fit")
    assert (len(dm.train_set), len(dm.test_set)) == (2, 2) and dm.train_set[0]["rain"].shape == (3, 16, 16)
