"""NeRDRainLoss against a transcription of the loss in the authors' train.py (cschenxiang/NeRD-Rain), float64.

Their targets come from ``kornia.geometry.transform.build_pyramid(target_, 3)`` with kornia 0.7.0 (their
requirements.txt), transcribed here too: 5x5 binomial kernel / 256 on a reflect-padded image, then bilinear
resizing (align_corners False) to ``(int(h / 2), int(w / 2))``; so a change of kornia's pyramid shows here."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from src.losses.nerd_rain import NeRDRainLoss
from tests.losses.test_pixel import _authors_laplacian


def _pyrdown_kornia_0_7(img):
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=img.dtype)
    kernel = (k[:, None] * k[None, :] / 256).expand(img.shape[1], 1, 5, 5)
    blurred = F.conv2d(F.pad(img, (2, 2, 2, 2), mode="reflect"), kernel, groups=img.shape[1])
    h, w = img.shape[-2:]
    return F.interpolate(blurred, size=(int(h / 2), int(w // 2)), mode="bilinear", align_corners=False)


def _authors_loss(restored, target_):
    """train.py, the loss lines: CharbonnierLoss (eps 1e-3), EdgeLoss, fftLoss, nn.L1Loss."""
    target = [target_, _pyrdown_kornia_0_7(target_)]
    target.append(_pyrdown_kornia_0_7(target[1]))

    def char(x, y):
        d = x - y
        return torch.mean(torch.sqrt(d * d + 1e-3 * 1e-3))

    def edge(x, y):
        return char(_authors_laplacian(x), _authors_laplacian(y))

    def fft(x, y):
        return torch.mean(abs(torch.fft.fft2(x) - torch.fft.fft2(y)))

    loss_fft = fft(restored[0], target[0]) + fft(restored[1], target[1]) + fft(restored[2], target[2])
    loss_char = char(restored[0], target[0]) + char(restored[1], target[1]) + char(restored[2], target[2])
    loss_edge = edge(restored[0], target[0]) + edge(restored[1], target[1]) + edge(restored[2], target[2])
    loss_l1 = F.l1_loss(restored[3], target[1]) + F.l1_loss(restored[5], target[2])
    return loss_char + 0.01 * loss_fft + 0.05 * loss_edge + 0.1 * loss_l1, (loss_char, loss_fft, loss_edge, loss_l1)


def _restored(h=44, w=38, seed=0):
    """A random output list in the authors' order: full, 1/2, 1/4, INR 1/2, (mid input), INR 1/4, (small input)."""
    g = torch.Generator().manual_seed(seed)
    sizes = [
        (h, w),
        (h // 2, w // 2),
        (h // 4, w // 4),
        (h // 2, w // 2),
        (h // 2, w // 2),
        (h // 4, w // 4),
        (h // 4, w // 4),
    ]
    return [torch.rand(2, 3, *s, generator=g, dtype=torch.float64) for s in sizes]


def test_equals_the_authors_train_py_loss():
    restored = _restored()
    clean = torch.rand(2, 3, 44, 38, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    outputs = {"out": restored[0], "scales": restored[:3], "inr": [restored[3], restored[5]]}
    total, parts = NeRDRainLoss()(outputs, {"clean": clean})
    ref_total, ref_parts = _authors_loss(restored, clean)
    torch.testing.assert_close(total, ref_total, rtol=0, atol=1e-12)
    for name, ref in zip(("char", "fft", "edge", "l1_inr"), ref_parts):
        torch.testing.assert_close(parts[name], ref, rtol=0, atol=1e-12)


def test_weights_are_arguments():
    restored = _restored(32, 32, seed=2)
    clean = torch.rand(1, 3, 32, 32, dtype=torch.float64).expand(2, 3, 32, 32)
    outputs = {"out": restored[0], "scales": restored[:3], "inr": [restored[3], restored[5]]}
    total, parts = NeRDRainLoss(char_weight=2, fft_weight=0, edge_weight=0.5, inr_weight=1)(outputs, {"clean": clean})
    torch.testing.assert_close(total, 2 * parts["char"] + 0.5 * parts["edge"] + parts["l1_inr"], rtol=0, atol=1e-12)


def test_windowed_outputs_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="needs the network's 'scales' and 'inr' outputs"):
        NeRDRainLoss()({"out": torch.zeros(1, 3, 8, 8)}, {"clean": torch.zeros(1, 3, 8, 8)})
