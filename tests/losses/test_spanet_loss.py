"""SPANet loss: zero-padded SSIM against a scipy computation, the rain mask on hand-made pixels, the total."""

from __future__ import annotations

import kornia
import numpy as np
import pytest
import torch
from scipy.ndimage import correlate

from src.losses.spanet import SPANetLoss, rain_mask, ssim_zero_pad


def ssim_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of (B, C, H, W) arrays: 11x11 Gaussian (sigma 1.5), zero padding, data range 1."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    win = np.outer(g, g) / np.outer(g, g).sum()

    def blur(x):
        return np.stack([[correlate(ch, win, mode="constant", cval=0.0) for ch in img] for img in x])

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


@pytest.fixture(scope="module")
def pair():
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, 17, 23, generator=gen, dtype=torch.float64)
    # prediction partly outside [0, 1]: the loss works on the unclamped output
    pred = clean + 0.3 * torch.randn(2, 3, 17, 23, generator=gen, dtype=torch.float64)
    return pred, clean


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-6)])
def test_ssim_matches_scipy_with_zero_padding(pair, dtype, tol):
    pred, clean = pair
    expected = ssim_numpy(pred.numpy(), clean.numpy())
    got = ssim_zero_pad(pred.to(dtype), clean.to(dtype)).item()
    assert abs(got - expected) < tol
    assert abs(ssim_zero_pad(clean, clean).item() - 1.0) < 1e-12


def test_library_ssim_pads_differently(pair):
    """Why the loss does not use kornia: its 'same' padding reflects, which changes the border values."""
    pred, clean = pair
    lib = kornia.metrics.ssim(pred, clean, 11).mean().item()
    assert abs(lib - ssim_numpy(pred.numpy(), clean.numpy())) > 1e-3


def to_float(pixels_8bit) -> torch.Tensor:
    """(H, W, 3) 8-bit values -> (1, 3, H, W) float in [0, 1]."""
    return torch.tensor(pixels_8bit, dtype=torch.float32).permute(2, 0, 1)[None] / 255


def test_rain_mask_on_hand_made_pixels():
    clean = [[[100, 100, 100], [100, 100, 100], [100, 100, 100], [100, 100, 100], [100, 100, 100]]]
    rain = [
        [
            [100, 100, 100],  # unchanged
            [100, 101, 100],  # brighter by 1 in green
            [90, 100, 100],  # darker rain pixel (counts with |diff|, not with the positive rule)
            [120, 100, 100],  # brighter by 20
            [100, 100, 105],
        ]
    ]  # brighter by 5
    r, c = to_float(rain), to_float(clean)
    assert rain_mask(r, c).flatten().tolist() == [0, 1, 1, 1, 1]
    assert rain_mask(r, c, rule="positive").flatten().tolist() == [0, 1, 0, 1, 1]
    assert rain_mask(r, c, threshold=10).flatten().tolist() == [0, 0, 0, 1, 0]
    assert rain_mask(r, c, threshold=5, rule="positive").flatten().tolist() == [0, 0, 0, 1, 0]
    # a float difference that rounds to the same 8-bit value is no rain
    assert rain_mask(c + 0.4 / 255, c).sum() == 0
    assert rain_mask(r, c).shape == (1, 1, 1, 5)


def test_default_rain_mask_equals_the_release_rule():
    """The release: M = clip(sum_c uint8(O - B), 0, 1) with uint8 wrap-around."""
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (2, 9, 7, 3), dtype=np.uint8)
    rain = clean.copy()
    changed = rng.random((2, 9, 7, 3)) < 0.15
    rain[changed] = rng.integers(0, 256, changed.sum(), dtype=np.uint8)
    release = np.stack([np.clip((o - b).sum(axis=2), 0, 1) for o, b in zip(rain, clean)])
    ours = rain_mask(
        torch.from_numpy(rain).permute(0, 3, 1, 2) / 255, torch.from_numpy(clean).permute(0, 3, 1, 2) / 255
    )
    assert 0 < release.sum() < release.size
    np.testing.assert_array_equal(ours[:, 0].numpy(), release)


def test_loss_total_and_parts(pair):
    pred, clean = pair
    gen = torch.Generator().manual_seed(1)
    rain = (clean + 0.2 * (torch.rand(clean.shape, generator=gen, dtype=torch.float64) > 0.7)).clamp(0, 1)
    att = torch.rand(2, 1, 17, 23, generator=gen, dtype=torch.float64)
    batch = {"rain": rain, "clean": clean}
    outputs = {"out": pred, "att": [att, torch.zeros_like(att)]}

    l1 = (pred - clean).abs().mean().item()
    ssim_term = 1 - ssim_numpy(pred.numpy(), clean.numpy())
    mask = ((rain * 255).round() != (clean * 255).round()).any(1, keepdim=True).double()
    att_term = ((att - mask) ** 2).mean().item()

    total, parts = SPANetLoss()(outputs, batch)
    assert set(parts) == {"l1", "ssim", "att"}
    assert parts["l1"].item() == pytest.approx(l1, abs=1e-12)
    assert parts["ssim"].item() == pytest.approx(ssim_term, abs=1e-10)
    assert parts["att"].item() == pytest.approx(att_term, abs=1e-12)
    assert total.item() == pytest.approx(l1 + ssim_term + att_term, abs=1e-10)

    total, parts = SPANetLoss(ssim_weight=0.5, att_weight=2.0)(outputs, batch)
    assert total.item() == pytest.approx(l1 + 0.5 * ssim_term + 2 * att_term, abs=1e-10)

    total, parts = SPANetLoss(attention_loss=False)(outputs, batch)
    assert set(parts) == {"l1", "ssim"}
    assert total.item() == pytest.approx(l1 + ssim_term, abs=1e-10)


def test_loss_gradients_and_errors(pair):
    pred, clean = pair
    pred = pred.clone().requires_grad_(True)
    att = torch.full((2, 1, 17, 23), 0.5, dtype=torch.float64, requires_grad=True)
    total, _ = SPANetLoss()({"out": pred, "att": [att]}, {"rain": clean, "clean": clean})
    total.backward()
    assert pred.grad.abs().sum() > 0
    # rain == clean -> M = 0 -> d MSE / d att = 2 * att / N
    torch.testing.assert_close(att.grad, torch.full_like(att, 2 * 0.5 / att.numel()))

    with pytest.raises(ValueError, match="attention_loss"):
        SPANetLoss()({"out": pred, "att": []}, {"rain": clean, "clean": clean})
    with pytest.raises(ValueError, match="mask_rule"):
        SPANetLoss(mask_rule="negative")
    with pytest.raises(ValueError, match="mask_threshold"):
        SPANetLoss(mask_threshold=-1)
