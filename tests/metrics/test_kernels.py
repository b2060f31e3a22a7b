"""The fast kernels (src/metrics/kernels.py): banded SSIM against kornia / scikit-image on shapes that exercise
the bands and channel groups, score_all == the single-protocol functions, the input-score cache, GPU = CPU."""

from __future__ import annotations

import kornia
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

import src.metrics.kernels as kernels
from src.metrics import ProtocolMetrics, ScoreCache
from src.metrics.kernels import gaussian_taps, sse_per_channel, ssim_means, uniform_taps
from src.metrics.protocols import PROTOCOL_FUNCTIONS, PROTOCOLS, rgb_to_y_matlab, score_all, to_uint8_levels

C255 = ((0.01 * 255) ** 2, (0.03 * 255) ** 2)


def _levels(shape, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, shape, generator=g).double()
    noise = torch.randint(-12, 13, shape, generator=g).double()
    return x, (x + noise).clamp(0, 255)


@pytest.mark.parametrize("shape", [(1, 1, 11, 11), (2, 3, 29, 17), (3, 4, 61, 40), (1, 5, 12, 80)])
def test_gaussian_ssim_equals_kornia(shape, monkeypatch):
    """Window-sized images (one output pixel), odd sizes, several bands (16 rows max) and channel groups."""
    monkeypatch.setattr(kernels, "CPU_ROWS", (3, 8))  # several bands on these small images
    x, y = _levels(shape, seed=sum(shape))
    got, sse = ssim_means(x, y, gaussian_taps(11, 1.5), *C255)
    want = kornia.metrics.ssim(x, y, 11, max_val=255.0, eps=0.0, padding="valid").mean(dim=(2, 3))
    assert got.shape == sse.shape == shape[:2]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert torch.equal(sse, (x - y).pow(2).sum(dim=(2, 3)))  # every pixel, border rows included (exact integers)


def test_uniform_sample_covariance_ssim_equals_skimage(monkeypatch):
    monkeypatch.setattr(kernels, "CPU_ROWS", (3, 8))
    rng = np.random.default_rng(3)
    x = rng.random((45, 38, 3))
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)
    t = lambda a: torch.from_numpy(a.transpose(2, 0, 1).copy())[None]  # noqa: E731
    got, _ = ssim_means(t(x), t(y), uniform_taps(7), (0.01 * 2) ** 2, (0.03 * 2) ** 2, cov_norm=49 / 48)
    for c in range(3):
        want = structural_similarity(x[..., c], y[..., c], win_size=7, data_range=2)
        assert got[0, c].item() == pytest.approx(want, abs=1e-12)


def test_sse_in_chunks_of_rows():
    x, y = _levels((2, 3, 37, 9), seed=5)
    assert torch.equal(sse_per_channel(x, y, rows=8), (x - y).pow(2).sum(dim=(2, 3)))


def test_uint8_and_uint16_images_score_as_their_float64_values():
    """Decoded files can be scored directly: integers divided by 255 / 65535 in float64 (as image_io.to_float)."""
    g = torch.Generator().manual_seed(6)
    p8 = torch.randint(0, 256, (2, 3, 20, 23), generator=g).to(torch.uint8)
    t16 = torch.randint(0, 65536, (2, 3, 20, 23), generator=g).to(torch.int32).to(torch.uint16)
    got = score_all(p8, t16)
    want = score_all(p8.double() / 255.0, t16.to(torch.int32).double() / 65535.0)
    for p in PROTOCOLS:
        for m in ("psnr", "ssim"):
            assert torch.equal(got[p][m], want[p][m]), (p, m)
    with pytest.raises(TypeError, match="floating-point images"):
        score_all(p8.to(torch.int64), p8.to(torch.int64))


def test_window_larger_than_image_is_refused():
    x = torch.zeros(1, 1, 10, 30, dtype=torch.float64)
    with pytest.raises(ValueError, match="smaller than the 11x11 window"):
        ssim_means(x, x, gaussian_taps(11, 1.5), *C255)


def test_gaussian_taps_are_fspecial():
    taps = torch.tensor(gaussian_taps(11, 1.5), dtype=torch.float64)
    ax = torch.arange(11, dtype=torch.float64) - 5
    w = torch.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / 4.5)
    torch.testing.assert_close(torch.outer(taps, taps), w / w.sum(), rtol=0, atol=1e-17)


def test_score_all_equals_the_single_protocol_functions():
    """Shared intermediates change nothing: a batch of 3 (float32, unclipped prediction)."""
    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 3, 40, 33, generator=g)
    pred = target + 0.08 * torch.randn(3, 3, 40, 33, generator=g)
    pred_before = pred.clone()
    scores = score_all(pred, target)
    assert torch.equal(pred, pred_before)  # inputs are never modified
    for protocol, (psnr_fn, ssim_fn) in PROTOCOL_FUNCTIONS.items():
        torch.testing.assert_close(scores[protocol]["psnr"], psnr_fn(pred, target), rtol=0, atol=1e-12)
        torch.testing.assert_close(scores[protocol]["ssim"], ssim_fn(pred, target), rtol=0, atol=1e-14)
    assert torch.equal(pred, pred_before)


def test_y_matlab_exact_on_every_colour_tie():
    """The float64 evaluation of Y equals exact integer arithmetic on a grid of colours, ties included."""
    r, g, b = torch.meshgrid(torch.arange(0, 256, 3), torch.arange(0, 256, 5), torch.arange(0, 256, 1), indexing="ij")
    rgb = torch.stack([r.flatten(), g.flatten(), b.flatten()]).to(torch.int64)
    exact = (16 * 255_000 + 65_481 * rgb[0] + 128_553 * rgb[1] + 24_966 * rgb[2] + 127_500) // 255_000
    got = rgb_to_y_matlab(rgb.double().reshape(1, 3, 1, -1)).flatten()
    assert torch.equal(got, exact.double())
    assert torch.equal(
        to_uint8_levels(torch.tensor([0.5 / 255, 2.5 / 255])), torch.tensor([1.0, 3.0], dtype=torch.float64)
    )


def test_score_cache_scores_once_and_notices_changes():
    g = torch.Generator().manual_seed(1)
    rain = torch.rand(2, 3, 24, 20, generator=g)
    clean = torch.rand(2, 3, 24, 20, generator=g)
    cache = ScoreCache()
    first = cache(rain, clean, ["a", "b"])
    assert (cache.misses, cache.hits, len(cache)) == (2, 0, 2)
    direct = score_all(rain, clean)
    for p in PROTOCOLS:
        for m in ("psnr", "ssim"):
            torch.testing.assert_close(first[f"{m}_{p}"], direct[p][m], rtol=0, atol=0)
    again = cache(rain, clean, ["a", "b"])
    assert (cache.misses, cache.hits) == (2, 2)
    assert all(torch.equal(again[k], first[k]) for k in first)
    changed = rain.clone()
    changed[1, 0, 5, 5] += 0.25  # same name "b", another image: scored again
    third = cache(changed, clean, ["a", "b"])
    assert (cache.misses, cache.hits) == (3, 3)
    # "b" was scored alone this time, in a batch of one: other tensor shapes, so the kernels (matrix product,
    # vectorised sums) may round differently than in the batch of two, by CPU; the scores agree to 1e-12
    torch.testing.assert_close(third["psnr_spanet"], score_all(changed, clean)["spanet"]["psnr"], rtol=0, atol=1e-12)
    cache(rain, clean, None)  # unnamed: never cached
    assert (cache.misses, len(cache)) == (5, 2)


def test_update_scores_equals_update():
    g = torch.Generator().manual_seed(2)
    pred, target = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    direct, cached = ProtocolMetrics(), ProtocolMetrics()
    direct.update(pred, target, ["x", "y"])
    cached.update_scores(ScoreCache()(pred, target, ["x", "y"]), ["x", "y"])
    assert cached.update_called  # counted as an update (Lightning modules check it)
    assert direct.report() == cached.report()
    with pytest.raises(ValueError, match="not both"):
        cached.update(pred, target, ["x", "y"], scores=ScoreCache()(pred, target, ["x", "y"]))
    with pytest.raises(ValueError, match="no scores for"):
        cached.update_scores({"psnr_spanet": torch.zeros(2)}, ["x", "y"])


@pytest.mark.gpu
def test_gpu_scores_equal_cpu_scores():
    g = torch.Generator().manual_seed(4)
    target = torch.rand(3, 3, 150, 97, generator=g)
    pred = target + 0.05 * torch.randn(3, 3, 150, 97, generator=g)
    cpu = score_all(pred, target)
    gpu = score_all(pred.cuda(), target.cuda())
    for p in PROTOCOLS:
        for m in ("psnr", "ssim"):
            assert gpu[p][m].device.type == "cuda"
            torch.testing.assert_close(gpu[p][m].cpu(), cpu[p][m], rtol=0, atol=1e-10)
