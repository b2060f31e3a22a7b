"""Pixel losses of today's derainers, each as its authors' training code defines it.

Functions take ``(pred, target)``, two (B, C, H, W) tensors on the [0, 1] scale, and return a scalar. The
modules wrap one of them in the suite's loss interface, ``forward(outputs, batch) -> (total, parts)``, on
``outputs["out"]`` and ``batch["clean"]``:

=====================  ==========================================================================================
:class:`L1Loss`        mean absolute error (Restormer, DRSformer: BasicSR's ``L1Loss``, reduction mean)
:class:`PSNRLoss`      NAFNet's PSNR loss: ``10 / ln 10 * mean_b log(MSE_b + 1e-8)``, the MSE per image
:class:`NegativeSSIMLoss`  PReNet's ``-SSIM``: Gaussian 11x11, sigma 1.5, zero padding, the map averaged
:func:`charbonnier`    ``mean(sqrt(d^2 + eps^2))``, eps 1e-3 (MPRNet / NeRD-Rain)
:func:`edge_loss`      Charbonnier of the Laplacian-pyramid detail (MPRNet / NeRD-Rain ``EdgeLoss``)
:func:`fft_l1`         mean modulus of the difference of the 2-D FFTs (NeRD-Rain ``fftLoss``)
=====================  ==========================================================================================

Why these are written here instead of taken from a library: kornia's ``charbonnier_loss`` is
``sqrt(d^2 + 1) - 1`` (no eps), its ``psnr_loss`` takes one MSE over the whole batch (NAFNet takes the log per
image), and kornia / torchmetrics SSIM pad by reflection, not with zeros. The Gaussian filtering itself is
kornia's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.filters import filter2d
from torch import Tensor, nn

from src.losses.spanet import gaussian_window, ssim_zero_pad

#: MPRNet's 5-tap kernel [.05, .25, .4, .25, .05] of its Laplacian edge loss (outer product, sums to 1)
_EDGE_TAPS = (0.05, 0.25, 0.4, 0.25, 0.05)


def charbonnier(pred: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """``mean(sqrt((pred - target)^2 + eps^2))`` over every element (MPRNet's / NeRD-Rain's CharbonnierLoss)."""
    diff = pred - target
    return torch.sqrt(diff * diff + eps * eps).mean()


def laplacian_detail(img: Tensor) -> Tensor:
    """``img - G(4 * upsample0(downsample2(G(img))))`` with G the 5x5 kernel, replicate padding: one level of
    a Laplacian pyramid, as MPRNet's ``EdgeLoss.laplacian_kernel`` computes it (zeros between the kept pixels)."""
    k = torch.tensor(_EDGE_TAPS, dtype=img.dtype, device=img.device)
    kernel = (k[:, None] * k[None, :])[None]
    filtered = filter2d(img, kernel, border_type="replicate")
    sparse = torch.zeros_like(filtered)
    sparse[:, :, ::2, ::2] = filtered[:, :, ::2, ::2] * 4
    return img - filter2d(sparse, kernel, border_type="replicate")


def edge_loss(pred: Tensor, target: Tensor, eps: float = 1e-3) -> Tensor:
    """Charbonnier distance of the Laplacian details of ``pred`` and ``target`` (MPRNet / NeRD-Rain EdgeLoss)."""
    return charbonnier(laplacian_detail(pred), laplacian_detail(target), eps)


def fft_l1(pred: Tensor, target: Tensor) -> Tensor:
    """``mean(|FFT2(pred) - FFT2(target)|)`` (complex modulus, unnormalised FFT over H, W; NeRD-Rain's fftLoss)."""
    return (torch.fft.fft2(pred) - torch.fft.fft2(target)).abs().mean()


def psnr_loss(pred: Tensor, target: Tensor) -> Tensor:
    """NAFNet's PSNR loss (RGB, ``toY=False``): ``10 / ln 10 * mean over images of log(MSE + 1e-8)``, i.e. minus
    the mean per-image PSNR on the [0, 1] scale (up to the 1e-8)."""
    mse = ((pred - target) ** 2).mean(dim=(1, 2, 3))
    return (10 / math.log(10)) * torch.log(mse + 1e-8).mean()


class L1Loss(nn.Module):
    """``mean |out - clean|`` (BasicSR's L1Loss with ``loss_weight`` 1, reduction mean); parts ``{"l1"}``."""

    def forward(self, outputs: dict, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        l1 = F.l1_loss(outputs["out"], batch["clean"])
        return l1, {"l1": l1}


class PSNRLoss(nn.Module):
    """NAFNet's training loss, :func:`psnr_loss` times ``loss_weight``; parts ``{"psnr": the unweighted loss}``."""

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)

    def forward(self, outputs: dict, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        loss = psnr_loss(outputs["out"], batch["clean"])
        return self.loss_weight * loss, {"psnr": loss}


class NegativeSSIMLoss(nn.Module):
    """PReNet's training loss ``-SSIM(out, clean)`` on the final output (its ``SSIM.py``: Gaussian window 11,
    sigma 1.5, zero padding, constants (0.01)^2 and (0.03)^2, the map averaged: :func:`ssim_zero_pad`).
    Parts ``{"neg_ssim"}``. The total is negative; it approaches -1 as the output approaches the clean image."""

    def __init__(self, window_size: int = 11, sigma: float = 1.5) -> None:
        super().__init__()
        self.register_buffer("window", gaussian_window(window_size, sigma, dtype=torch.float64), persistent=False)

    def forward(self, outputs: dict, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        loss = -ssim_zero_pad(outputs["out"], batch["clean"], self.window)
        return loss, {"neg_ssim": loss}
