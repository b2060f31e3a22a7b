"""The pixel losses of today's derainers against direct transcriptions of their authors' formulas (float64)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from src.losses.pixel import (
    L1Loss,
    NegativeSSIMLoss,
    PSNRLoss,
    charbonnier,
    edge_loss,
    fft_l1,
    laplacian_detail,
    psnr_loss,
)


def _pair(shape=(2, 3, 17, 22)):
    g = torch.Generator().manual_seed(0)
    return torch.rand(shape, generator=g, dtype=torch.float64), torch.rand(shape, generator=g, dtype=torch.float64)


def _authors_laplacian(img):
    """MPRNet's EdgeLoss.laplacian_kernel: 5x5 kernel by F.conv2d on a replicate-padded image."""
    k = torch.tensor([[0.05, 0.25, 0.4, 0.25, 0.05]], dtype=img.dtype)
    kernel = (k.t() @ k).unsqueeze(0).repeat(img.shape[1], 1, 1, 1)

    def gauss(x):
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel, groups=img.shape[1])

    filtered = gauss(img)
    sparse = torch.zeros_like(filtered)
    sparse[:, :, ::2, ::2] = filtered[:, :, ::2, ::2] * 4
    return img - gauss(sparse)


def test_charbonnier_edge_fft_match_the_authors_formulas():
    x, y = _pair()
    d = x - y
    assert torch.allclose(charbonnier(x, y), torch.sqrt(d * d + 1e-6).mean(), rtol=0, atol=1e-14)
    assert torch.allclose(laplacian_detail(x), _authors_laplacian(x), rtol=0, atol=1e-14)
    ref_edge = torch.sqrt((_authors_laplacian(x) - _authors_laplacian(y)) ** 2 + 1e-6).mean()
    assert torch.allclose(edge_loss(x, y), ref_edge, rtol=0, atol=1e-14)
    # FFT of a single impulse is 1 everywhere: |FFT(delta) - FFT(0)| = 1
    impulse = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    impulse[0, 0, 3, 5] = 1
    assert torch.allclose(fft_l1(impulse, torch.zeros_like(impulse)), torch.tensor(1.0, dtype=torch.float64))
    assert fft_l1(x, x) == 0


def test_psnr_loss_is_minus_mean_per_image_psnr():
    x, y = _pair()
    per_image_psnr = [10 * math.log10(1 / float(((x[i] - y[i]) ** 2).mean())) for i in range(2)]
    assert abs(float(psnr_loss(x, y)) + sum(per_image_psnr) / 2) < 1e-6  # the 1e-8 inside the log
    total, parts = PSNRLoss(loss_weight=0.5)({"out": x}, {"clean": y})
    assert torch.allclose(total, 0.5 * parts["psnr"])


def test_negative_ssim_and_l1_modules():
    x, y = _pair((1, 3, 24, 24))
    total, parts = NegativeSSIMLoss()({"out": y}, {"clean": y})
    assert abs(float(total) + 1) < 1e-12 and set(parts) == {"neg_ssim"}
    assert float(NegativeSSIMLoss()({"out": x}, {"clean": y})[0]) > -0.5  # unrelated noise images
    total, parts = L1Loss()({"out": x}, {"clean": y})
    assert torch.allclose(total, (x - y).abs().mean()) and set(parts) == {"l1"}
