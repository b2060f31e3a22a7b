import numpy as np
import pytest
import torch

from src.data.synthetic import (
    LEVELS,
    RainParams,
    SyntheticRainDataModule,
    SyntheticRainDataset,
    _line_kernel,
    composite,
    make_rain_video,
    render_rain_layer,
)


def test_same_seed_same_samples_and_different_seed_differs():
    a = SyntheticRainDataset(["astronaut", "rocket"], seed=3, length=6, patch_size=24)
    b = SyntheticRainDataset(["astronaut", "rocket"], seed=3, length=6, patch_size=24)
    c = SyntheticRainDataset(["astronaut", "rocket"], seed=4, length=6, patch_size=24)
    for i in range(6):
        sa, sb, sc = a[i], b[i], c[i]
        assert torch.equal(sa["rain"], sb["rain"]) and torch.equal(sa["clean"], sb["clean"])
        assert sa["label"] == sb["label"] and sa["name"] == sb["name"]
        assert not torch.equal(sa["rain"], sc["rain"])
    # order of access does not matter (a pure function of (seed, index))
    assert torch.equal(a[5]["rain"], SyntheticRainDataset(["astronaut", "rocket"], 3, 6, 24)[5]["rain"])


def test_sample_format_and_rain_brightens():
    ds = SyntheticRainDataset(["astronaut"], seed=0, length=8, patch_size=32)
    for i in range(8):
        s = ds[i]
        assert s["rain"].shape == s["clean"].shape == (3, 32, 32)
        assert s["rain"].dtype == torch.float32 and 0 <= s["rain"].min() and s["rain"].max() <= 1
        assert int(s["label"]) in (0, 1, 2)
        assert (s["rain"] - s["clean"]).mean() >= 0  # no haze: rain only adds light


def test_eval_split_is_full_images_once_per_level():
    ds = SyntheticRainDataset(["chelsea", "coffee"], seed=1, long_side=50)
    assert len(ds) == 2 * len(LEVELS)
    names = [ds[i]["name"] for i in range(len(ds))]
    assert names == [f"{p}_{lv}" for p in ("chelsea", "coffee") for lv in LEVELS]
    assert ds[0]["rain"].shape == (3, 33, 50)  # chelsea is 300x451 -> long side 50
    assert [int(ds[i]["label"]) for i in range(3)] == [0, 1, 2]


def test_composite_formulas():
    clean = np.full((2, 2, 3), 0.5, np.float32)
    layer = np.array([[0.0, 0.2], [0.4, 0.8]], np.float32)
    add = RainParams(0.01, 5, 1, 0.0, 0.0, 1.0, "add")
    screen = RainParams(0.01, 5, 1, 0.0, 0.0, 1.0, "screen")
    np.testing.assert_allclose(composite(clean, layer, add)[..., 0], np.minimum(0.5 + layer, 1))
    np.testing.assert_allclose(composite(clean, layer, screen)[..., 0], 1 - 0.5 * (1 - layer), rtol=1e-6)


def test_streak_kernel_is_a_line_at_the_angle():
    k = _line_kernel(9, 0.0)
    assert k.shape == (9, 9) and k.max() == 1.0
    assert np.array_equal(np.nonzero(k)[1], np.full(9, 4))  # vertical line through the centre column
    k45 = _line_kernel(9, 45.0)
    ys, xs = np.nonzero(k45 > 0.5)
    assert np.corrcoef(ys, xs)[0, 1] > 0.9  # lower end to the right (rows grow downwards)


def test_heavier_levels_have_more_rain_on_average():
    rng = np.random.default_rng(0)
    cover = {
        lv: np.mean([(render_rain_layer((64, 64), RainParams.sample(rng, lv), rng) > 0.05).mean() for _ in range(20)])
        for lv in (0, 1, 2)
    }
    assert cover[0] > cover[1] > cover[2]


def test_video_is_static_background_plus_changing_rain():
    bg = (np.random.default_rng(0).random((24, 32, 3)) * 200).astype(np.uint8)
    v = make_rain_video(bg, 12, seed=1, density="sparse", noise_sigma=0.0, flicker=0.0)
    assert v.shape == (12, 24, 32, 3) and v.dtype == np.uint8
    assert np.array_equal(v, make_rain_video(bg, 12, seed=1, density="sparse", noise_sigma=0.0, flicker=0.0))
    assert not np.array_equal(v[0], v[1])
    # rain only brightens without noise/flicker/haze, so the per-pixel minimum over time is ~the background
    assert np.mean(np.abs(v.min(0).astype(int) - bg)) < 2
    with pytest.raises(ValueError, match="density"):
        make_rain_video(bg, 2, density="storm")


def test_datamodule_rejects_overlapping_photos_and_bad_batch():
    with pytest.raises(ValueError, match="overlap"):
        SyntheticRainDataModule(train_photos=["chelsea"], test_photos=["chelsea"])
    with pytest.raises(KeyError, match="unknown synthetic photo"):
        SyntheticRainDataset(["no_such_photo"], 0, 4, 16)
