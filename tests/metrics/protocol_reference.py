"""Independent reference implementations and test images for the protocol tests (numpy / scipy / skimage).

Nothing here imports src.metrics: each protocol is re-derived from its definition in
docs/protocols.md.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.signal import convolve2d
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def image_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """(pred, gt) float64 HxWx3 pairs of 37x53 pixels (odd, non-square); preds leave [0, 1] in places."""
    rng = np.random.default_rng(0)
    astro = data.astronaut()[100:137, 200:253].astype(np.float64) / 255.0
    coffee = data.coffee()[150:187, 300:353].astype(np.float64) / 255.0
    noisy = astro + rng.normal(0.0, 0.05, astro.shape)
    i, j = np.mgrid[:37, :53]
    streaks = ((2 * i + j) % 9 == 0)[:, :, None] * 0.35  # bright diagonal rain streaks
    rainy = coffee + streaks + rng.normal(0.0, 0.01, coffee.shape)
    return [(noisy, astro), (rainy, coffee)]


def to_tensor(*images: np.ndarray) -> torch.Tensor:
    """HxWx3 arrays -> (B, 3, H, W) float64 tensor."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def quantise(x: np.ndarray) -> np.ndarray:
    """8-bit levels: floor(clip(x, 0, 1) * 255 + 0.5) as float64."""
    return np.floor(np.clip(x, 0.0, 1.0) * 255.0 + 0.5)


def y_matlab(levels: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr Y of 8-bit RGB levels, rounded as MATLAB (half away from zero; values are positive)."""
    r, g, b = levels[..., 0], levels[..., 1], levels[..., 2]
    return np.floor(16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0 + 0.5)


def psnr(x: np.ndarray, y: np.ndarray, peak: float) -> float:
    return float(10.0 * np.log10(peak**2 / np.mean((x - y) ** 2)))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """MATLAB fspecial('gaussian', size, sigma)."""
    ax = np.arange(size) - (size - 1) / 2
    w = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma**2))
    return w / w.sum()


def ssim_valid_gaussian(x: np.ndarray, y: np.ndarray, L: float = 255.0) -> float:
    """Wang et al.'s ssim_index.m on one channel: Gaussian 11x11 sigma 1.5, 'valid' filtering, K1 .01, K2 .03."""
    w = gaussian_window()
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2

    def filt(z: np.ndarray) -> np.ndarray:
        return convolve2d(z, w, mode="valid")

    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(ssim_map.mean())


def reference_scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, dict[str, float]]:
    """All three protocols for one HxWx3 pair, computed independently of src.metrics."""
    p = np.clip(pred, 0.0, 1.0)
    qp, qg = quantise(pred), quantise(gt)
    yp, yg = y_matlab(qp), y_matlab(qg)
    return {
        "spanet": {
            "psnr": float(peak_signal_noise_ratio(gt, p, data_range=1)),
            "ssim": float(structural_similarity(p, gt, win_size=7, channel_axis=-1, data_range=2)),
        },
        "y_matlab": {"psnr": psnr(yp, yg, 255.0), "ssim": ssim_valid_gaussian(yp, yg)},
        "rgb_uint8": {
            "psnr": psnr(qp, qg, 255.0),
            "ssim": float(np.mean([ssim_valid_gaussian(qp[..., c], qg[..., c]) for c in range(3)])),
        },
    }
