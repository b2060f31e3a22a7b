"""Golden tests: each protocol against independent numpy/scipy/scikit-image implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from src.metrics.protocols import (
    PROTOCOL_FUNCTIONS,
    PROTOCOLS,
    PSNR_CAP_DB,
    psnr_rgb_uint8,
    psnr_spanet,
    rgb_to_y_matlab,
    score_all,
    ssim_spanet,
    ssim_y_matlab,
    to_uint8_levels,
)
from tests.metrics.protocol_reference import image_pairs, reference_scores, to_tensor

# The reference values of tests/metrics/protocol_reference.py on image_pairs(), printed once with 6 decimals,
# so that a change in scikit-image / scipy / numpy would show up too.
PINNED = [
    {
        "spanet": {"psnr": 26.125193, "ssim": 0.797539},
        "y_matlab": {"psnr": 31.024595, "ssim": 0.807714},
        "rgb_uint8": {"psnr": 26.121334, "ssim": 0.652070},
    },
    {
        "spanet": {"psnr": 20.316574, "ssim": 0.464578},
        "y_matlab": {"psnr": 22.267726, "ssim": 0.190459},
        "rgb_uint8": {"psnr": 20.314047, "ssim": 0.279257},
    },
]


@pytest.fixture(scope="module")
def pairs():
    return image_pairs()


@pytest.mark.parametrize("index", [0, 1])
def test_each_protocol_matches_independent_reference(pairs, index):
    pred, gt = pairs[index]
    assert pred.min() < 0 or pred.max() > 1  # the clipping of the prediction is exercised
    expected = reference_scores(pred, gt)
    got = score_all(to_tensor(pred), to_tensor(gt))
    for protocol in PROTOCOLS:
        for measure in ("psnr", "ssim"):
            value = got[protocol][measure]
            assert value.shape == (1,) and value.dtype == torch.float64
            assert value.item() == pytest.approx(expected[protocol][measure], abs=1e-9), (protocol, measure)
            assert value.item() == pytest.approx(PINNED[index][protocol][measure], abs=6e-7), (protocol, measure)


def test_batch_gives_per_image_scores(pairs):
    """A batch of 2 returns the two single-image scores (no pooling over the batch), in float32 input too."""
    preds = to_tensor(*(p for p, _ in pairs))
    gts = to_tensor(*(g for _, g in pairs))
    for protocol, (psnr_fn, ssim_fn) in PROTOCOL_FUNCTIONS.items():
        for fn, measure in ((psnr_fn, "psnr"), (ssim_fn, "ssim")):
            batch = fn(preds, gts)
            assert batch.shape == (2,)
            expected = [PINNED[i][protocol][measure] for i in range(2)]
            assert batch.tolist() == pytest.approx(expected, abs=6e-7)
            # float32 input (what a network gives) agrees to float32 rounding of the pixels
            assert fn(preds.float(), gts.float()).tolist() == pytest.approx(expected, abs=1e-4)


def test_spanet_ssim_crops_three_pixel_border_and_uses_sample_covariance():
    """Larger crop, compared with skimage; and the two conventions that inflate SSIM are really there."""
    from skimage.metrics import structural_similarity

    gt = data.astronaut()[:40, :64].astype(np.float64) / 255
    pred = np.clip(gt + np.random.default_rng(1).normal(0, 0.1, gt.shape), 0, 1)
    got = ssim_spanet(to_tensor(pred), to_tensor(gt)).item()
    assert got == pytest.approx(structural_similarity(pred, gt, win_size=7, channel_axis=-1, data_range=2), abs=1e-12)
    population = structural_similarity(pred, gt, win_size=7, channel_axis=-1, data_range=2, use_sample_covariance=False)
    assert abs(got - population) > 1e-4
    assert got > structural_similarity(pred, gt, win_size=7, channel_axis=-1, data_range=1) + 1e-3


def test_rgb_to_y_matlab_known_values():
    # MATLAB: rgb2ycbcr(uint8([0 0 0; 255 255 255; 255 0 0; 0 255 0; 0 0 255])) -> Y = 16 235 81 145 41
    rgb = torch.tensor([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=torch.float64)
    y = rgb_to_y_matlab(rgb.T.reshape(1, 3, 1, 5))
    assert y.shape == (1, 1, 1, 5)
    assert y.flatten().tolist() == [16, 235, 81, 145, 41]
    # an exact tie: 16 + (128.553 * 204 + 24.966 * 68) / 255 = 125.5 -> MATLAB round -> 126
    tie = torch.tensor([0.0, 204.0, 68.0], dtype=torch.float64).reshape(1, 3, 1, 1)
    assert rgb_to_y_matlab(tie).item() == 126


def test_to_uint8_levels_rounds_half_up_and_clips():
    x = torch.tensor([-0.2, 0.0, 0.5 / 255, 126.5 / 255, 126.4 / 255, 1.0, 1.3], dtype=torch.float64)
    assert to_uint8_levels(x).tolist() == [0, 0, 1, 127, 126, 255, 255]  # 126.5 -> 127 (not to even 126)


def test_identical_images_cap_psnr_and_give_ssim_one(pairs):
    gt = to_tensor(pairs[0][1])
    scores = score_all(gt, gt.clone())
    for protocol in PROTOCOLS:
        assert scores[protocol]["psnr"].item() == PSNR_CAP_DB
        assert scores[protocol]["ssim"].item() == pytest.approx(1.0, abs=1e-12)


def test_psnr_of_known_error():
    """Constant error 0.1 on [0, 1]: 20 dB under spanet; in 8 bit 0.5 -> 128 and 0.6 -> 153: 20 log10(255 / 25)."""
    gt = torch.full((1, 3, 16, 16), 0.5, dtype=torch.float64)
    assert psnr_spanet(gt + 0.1, gt).item() == pytest.approx(20.0, abs=1e-9)
    assert psnr_rgb_uint8(gt + 0.1, gt).item() == pytest.approx(20 * np.log10(255 / 25), abs=1e-9)


def test_bad_input_raises():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        psnr_spanet(x[:, :1], x[:, :1])
    with pytest.raises(ValueError, match="shapes differ"):
        psnr_spanet(x, x[..., :8])
    with pytest.raises(ValueError, match="smaller than the 11x11"):
        ssim_y_matlab(x[..., :10, :], x[..., :10, :])
    with pytest.raises(ValueError, match="smaller than the 7x7"):
        ssim_spanet(x[..., :6], x[..., :6])
