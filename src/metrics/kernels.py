"""The computational core of the protocols: windowed SSIM means and per-image MSE, exact and fast.

:func:`ssim_means` computes, per image and channel, the mean of an SSIM map whose local statistics come from a
separable window (7x7 uniform for ``spanet``, 11x11 Gaussian sigma 1.5 for ``y_matlab`` / ``rgb_uint8``),
evaluated only where the window fits inside the image ('valid'). It is the same arithmetic as
scikit-image's ``structural_similarity`` and Wang et al.'s ``ssim_index.m`` (checked in tests/metrics to
1e-12), organised for speed:

* Separable filtering. The 2-D window is the outer product of a 1-D one, so each statistic is filtered
  down the columns, then along the rows: ``2k`` multiply-adds per pixel instead of ``k * k``.
* Four filtered maps per channel instead of five: ``x``, ``y``, ``x*x + y*y`` and ``x*y``. SSIM only needs
  the sum of the two variances, ``filter(x*x + y*y) - mu_x^2 - mu_y^2``.
* One pass for several channels. Every channel of every image goes through the same filter calls (e.g. the
  three RGB channels and the Y channel of the two Gaussian protocols together).
* Bands of rows. The image is processed a band of output rows at a time, so that the band's maps stay in
  the CPU cache; the column pass is a matrix product of the band with a banded ``(rows, rows + k - 1)``
  matrix (one BLAS call for all maps), the row pass ``k`` fused multiply-adds on shifted views. On a GPU
  all images and channels of the batch share each band (bands of :data:`GPU_MAX_ROWS` rows).
* float64 throughout. The variance ``E[x^2] - mu^2`` cancels most of its digits on flat regions, so the
  statistics need double precision to agree with the float64 references.

Everything runs on the device of its inputs.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["gaussian_taps", "uniform_taps", "ssim_means", "mse_per_image", "CPU_BAND_BYTES", "GPU_BAND_BYTES"]

CPU_BAND_BYTES = 3 << 19
"""Size (bytes) of the maps of one band of rows on the CPU: about half of a core's L2 cache."""

GPU_BAND_BYTES = 1 << 28
"""Upper bound (bytes) of the maps of one band on a GPU."""

GPU_MAX_ROWS = 64
"""Output rows per band on a GPU (the column pass multiplies by a dense (rows, rows + k - 1) matrix)."""

CPU_MAX_ROWS = 16
"""Output rows per band on the CPU (taller bands multiply more zeros in the banded column-pass matrix)."""

CPU_CHANNEL_GROUP = 4
"""On the CPU, at most this many channels (images x channels) are filtered together, to keep bands tall."""


@lru_cache(maxsize=None)
def gaussian_taps(size: int = 11, sigma: float = 1.5) -> tuple[float, ...]:
    """1-D Gaussian window, normalised to sum 1 (its outer product is MATLAB's ``fspecial('gaussian')``)."""
    half = (size - 1) / 2
    raw = [math.exp(-((i - half) ** 2) / (2 * sigma**2)) for i in range(size)]
    total = math.fsum(raw)
    return tuple(v / total for v in raw)


@lru_cache(maxsize=None)
def uniform_taps(size: int = 7) -> tuple[float, ...]:
    """1-D uniform window (each tap ``1 / size``)."""
    return (1.0 / size,) * size


def _band_matrix(rows: int, taps: tuple[float, ...], device: torch.device) -> Tensor:
    """(rows, rows + k - 1) float64 matrix whose row i holds the taps in columns i .. i + k - 1."""
    return _band_matrix_cached(rows, taps, str(device))


@lru_cache(maxsize=64)
def _band_matrix_cached(rows: int, taps: tuple[float, ...], device: str) -> Tensor:
    k = len(taps)
    t = torch.tensor(taps, dtype=torch.float64)
    band = torch.zeros(rows, rows + k - 1, dtype=torch.float64)
    for i in range(rows):
        band[i, i : i + k] = t
    return band.to(device)


def _rows_per_band(n_channels: int, width: int, k: int, budget: int, height_out: int, max_rows: int) -> int:
    """Output rows per band: the band's 4 maps (rows + k - 1 input rows) take about ``budget`` bytes."""
    per_row = 4 * n_channels * width * 8
    rows = budget // per_row - (k - 1)
    return int(min(height_out, max_rows, max(8, rows)))


def ssim_means(
    x: Tensor, y: Tensor, taps: tuple[float, ...], c1: float, c2: float, cov_norm: float = 1.0
) -> Tensor:
    """Mean of the SSIM map over the 'valid' region, per image and channel.

    Args:
        x, y: (B, C, H, W) float64 tensors on one device, H and W at least ``len(taps)``.
        taps: the 1-D window (the 2-D window is its outer product).
        c1, c2: the SSIM constants ``(K1 L)^2`` and ``(K2 L)^2``.
        cov_norm: factor applied to the variances and the covariance (``n / (n - 1)`` for the sample
            covariance over an n-pixel window, 1 for the population covariance).
    Returns:
        (B, C) float64: for each image and channel, the mean over the (H - k + 1) x (W - k + 1) map of
        ``((2 mu_x mu_y + c1)(2 s_xy + c2)) / ((mu_x^2 + mu_y^2 + c1)(s_x^2 + s_y^2 + c2))``.
    """
    b, c, h, w = x.shape
    k = len(taps)
    h_out, w_out = h - k + 1, w - k + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"images of {h}x{w} pixels are smaller than the {k}x{k} window")
    n = b * c
    # rows outermost: (H, B*C, W) views, so that a band of rows is one contiguous block of the maps buffer
    xt, yt = x.reshape(n, h, w).transpose(0, 1), y.reshape(n, h, w).transpose(0, 1)
    on_gpu = x.device.type != "cpu"
    group = n if on_gpu else min(n, CPU_CHANNEL_GROUP)
    budget = GPU_BAND_BYTES if on_gpu else CPU_BAND_BYTES
    sums = torch.zeros(n, dtype=torch.float64, device=x.device)
    for first in range(0, n, group):
        last = min(n, first + group)
        rows = _rows_per_band(last - first, w, k, budget, h_out, GPU_MAX_ROWS if on_gpu else CPU_MAX_ROWS)
        band = _band_matrix(rows, taps, x.device)
        for r0 in range(0, h_out, rows):
            r = min(rows, h_out - r0)
            sums[first:last] += _band_ssim_sums(
                xt[r0 : r0 + r + k - 1, first:last], yt[r0 : r0 + r + k - 1, first:last],
                band[:r, : r + k - 1], taps, c1, c2, cov_norm,
            )
    return (sums / (h_out * w_out)).view(b, c)


def _band_ssim_sums(
    xs: Tensor, ys: Tensor, band: Tensor, taps: tuple[float, ...], c1: float, c2: float, cov_norm: float
) -> Tensor:
    """Sum of the SSIM map over one band: xs, ys (r + k - 1, N, W) -> (N,)."""
    n_in, n, w = xs.shape
    r, k = band.shape[0], len(taps)
    w_out = w - k + 1
    maps = torch.empty(n_in, 4, n, w, dtype=torch.float64, device=xs.device)
    maps[:, 0] = xs
    maps[:, 1] = ys
    torch.mul(xs, xs, out=maps[:, 2])
    maps[:, 2].addcmul_(ys, ys)
    torch.mul(xs, ys, out=maps[:, 3])
    # column pass: one matrix product for all maps of the band
    cols = (band @ maps.view(n_in, -1)).view(r, 4, n, w)
    # row pass: k multiply-adds on shifted views
    stats = cols[..., 0:w_out] * taps[0]
    for j in range(1, k):
        stats.add_(cols[..., j : j + w_out], alpha=taps[j])
    mu_x, mu_y, sq, xy = stats.unbind(1)
    # SSIM map, in place on the band's statistics
    mu_xy = mu_x * mu_y
    mu_sq = mu_x * mu_x
    mu_sq.addcmul_(mu_y, mu_y)  # mu_x^2 + mu_y^2
    den2 = sq.sub_(mu_sq).mul_(cov_norm).add_(c2)  # s_x^2 + s_y^2 + c2
    num2 = xy.sub_(mu_xy).mul_(2.0 * cov_norm).add_(c2)  # 2 s_xy + c2
    num = mu_xy.mul_(2.0).add_(c1).mul_(num2)
    den = mu_sq.add_(c1).mul_(den2)
    return num.div_(den).sum(dim=(0, 2))


def mse_per_image(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared difference per image: (B, ...) float64 tensors -> (B,)."""
    diff = x - y
    return diff.mul_(diff).flatten(1).mean(dim=1)
