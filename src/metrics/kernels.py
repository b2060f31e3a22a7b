"""The computational core of the protocols: windowed SSIM means and squared errors, exact and fast.

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
* No full-size intermediate image. The protocol's channels (clipped values, 8-bit levels, Y) are made band
  by band from the inputs (a :data:`Channels` function), and the squared errors for the PSNR are summed
  from the same band buffers: only band-sized buffers are allocated, which stay in cache and are recycled
  by the allocator (a fresh multi-megabyte buffer costs page faults that take longer than the arithmetic).
* float64 throughout. The variance ``E[x^2] - mu^2`` cancels most of its digits on flat regions, so the
  statistics need double precision to agree with the float64 references.

Everything runs on the device of its inputs.
"""

from __future__ import annotations

import math
from functools import cache, lru_cache
from typing import Callable, Optional

import torch
from torch import Tensor

__all__ = ["Channels", "copy_channels", "gaussian_taps", "uniform_taps", "ssim_means", "sse_per_channel"]

GPU_BAND_BYTES = 1 << 28
"""Upper bound (bytes) of the maps of one band on a GPU."""

GPU_MAX_ROWS = 64
"""Output rows per band on a GPU (the column pass multiplies by a dense (rows, rows + k - 1) matrix)."""

CPU_BAND_VALUES = 1 << 15
"""On the CPU, a band holds about this many output values per map: enough work per operation to hide its
overhead, small enough to stay in the cache (16 rows of 4 channels of a 512-pixel-wide image)."""

CPU_ROWS = (16, 32)
"""Least and most output rows per band on the CPU (taller bands multiply more zeros in the column pass)."""

CPU_CHANNEL_GROUP = 4
"""On the CPU, images are filtered together only while their channels number at most this many."""


@cache
def gaussian_taps(size: int = 11, sigma: float = 1.5) -> tuple[float, ...]:
    """1-D Gaussian window, normalised to sum 1 (its outer product is MATLAB's ``fspecial('gaussian')``)."""
    half = (size - 1) / 2
    raw = [math.exp(-((i - half) ** 2) / (2 * sigma**2)) for i in range(size)]
    total = math.fsum(raw)
    return tuple(v / total for v in raw)


@cache
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


def _rows_per_band(n_channels: int, width: int, k: int, height_out: int, on_gpu: bool) -> int:
    """Output rows per band (see :data:`CPU_BAND_VALUES`, :data:`GPU_BAND_BYTES`)."""
    if on_gpu:
        rows = min(GPU_MAX_ROWS, max(8, GPU_BAND_BYTES // (4 * n_channels * width * 8) - (k - 1)))
    else:
        rows = min(CPU_ROWS[1], max(CPU_ROWS[0], CPU_BAND_VALUES // (n_channels * width)))
    return int(min(height_out, rows))


Channels = Callable[[Tensor, Tensor, Tensor, Tensor], None]
"""``channels(rows_x, rows_y, out_x, out_y)``: write the protocol's channels of a band of image rows.

``rows_x``, ``rows_y``: (n, B, C_in, W) views of the inputs (any float dtype); ``out_x``, ``out_y``: (n, B, C, W)
float64 views to fill (e.g. the clipped RGB values, the 8-bit levels, their Y)."""


def copy_channels(rows_x: Tensor, rows_y: Tensor, out_x: Tensor, out_y: Tensor) -> None:
    """The identity :data:`Channels`: the inputs' own channels, as float64."""
    out_x.copy_(rows_x)
    out_y.copy_(rows_y)


def ssim_means(
    x: Tensor,
    y: Tensor,
    taps: tuple[float, ...],
    c1: float,
    c2: float,
    cov_norm: float = 1.0,
    channels: Channels = copy_channels,
    n_channels: Optional[int] = None,
) -> tuple[Tensor, Tensor]:
    """Mean of the SSIM map over the 'valid' region, and the sum of squared differences, per image and channel.

    Args:
        x, y: (B, C_in, H, W) tensors on one device, H and W at least ``len(taps)``; never modified.
        taps: the 1-D window (the 2-D window is its outer product).
        c1, c2: the SSIM constants ``(K1 L)^2`` and ``(K2 L)^2``.
        cov_norm: factor applied to the variances and the covariance (``n / (n - 1)`` for the sample
            covariance over an n-pixel window, 1 for the population covariance).
        channels: how the compared channels are made from the inputs' rows (:data:`Channels`), band by
            band, so that no full-size intermediate image is ever allocated; default: the inputs as float64.
        n_channels: how many channels ``channels`` makes (default C_in).
    Returns:
        ``(ssim, sse)``, both (B, C) float64: for each image and channel, the mean over the
        (H - k + 1) x (W - k + 1) map of
        ``((2 mu_x mu_y + c1)(2 s_xy + c2)) / ((mu_x^2 + mu_y^2 + c1)(s_x^2 + s_y^2 + c2))``, and the sum over
        ALL H x W pixels of ``(x_c - y_c)^2`` (for the PSNR).
    """
    b, c_in, h, w = x.shape
    c = c_in if n_channels is None else n_channels
    k = len(taps)
    h_out, w_out = h - k + 1, w - k + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"images of {h}x{w} pixels are smaller than the {k}x{k} window")
    # rows outermost: (H, B, C_in, W) views, so that a band of rows maps to one block of the band's buffer
    xt, yt = x.detach().permute(2, 0, 1, 3), y.detach().permute(2, 0, 1, 3)
    on_gpu = x.device.type != "cpu"
    images = b if on_gpu else max(1, min(b, CPU_CHANNEL_GROUP // c))
    ssim = torch.zeros(b, c, dtype=torch.float64, device=x.device)
    sse = torch.zeros(b, c, dtype=torch.float64, device=x.device)
    for first in range(0, b, images):
        last = min(b, first + images)
        rows = _rows_per_band((last - first) * c, w, k, h_out, on_gpu)
        band = _band_matrix(rows, taps, x.device)
        for r0 in range(0, h_out, rows):
            r = min(rows, h_out - r0)
            own = r if r0 + r < h_out else r + k - 1  # rows this band counts in the squared error
            band_ssim, band_sse = _band_sums(
                xt[r0 : r0 + r + k - 1, first:last],
                yt[r0 : r0 + r + k - 1, first:last],
                band[:r, : r + k - 1],
                taps,
                c1,
                c2,
                cov_norm,
                channels,
                c,
                own,
            )
            ssim[first:last] += band_ssim
            sse[first:last] += band_sse
    return ssim / (h_out * w_out), sse


def sse_per_channel(
    x: Tensor, y: Tensor, channels: Channels = copy_channels, n_channels: Optional[int] = None, rows: int = 64
) -> Tensor:
    """Sum over all pixels of ``(x_c - y_c)^2`` per image and channel (B, C), computed ``rows`` rows at a time
    (no full-size intermediate image)."""
    b, c_in, h, w = x.shape
    c = c_in if n_channels is None else n_channels
    xt, yt = x.detach().permute(2, 0, 1, 3), y.detach().permute(2, 0, 1, 3)
    sse = torch.zeros(b, c, dtype=torch.float64, device=x.device)
    for r0 in range(0, h, rows):
        n = min(rows, h - r0)
        both = torch.empty(2, n, b, c, w, dtype=torch.float64, device=x.device)
        channels(xt[r0 : r0 + n], yt[r0 : r0 + n], both[0], both[1])
        diff = both[0].sub_(both[1])
        sse += diff.mul_(diff).sum(dim=(0, 3))
    return sse


def _band_sums(
    xs: Tensor,
    ys: Tensor,
    band: Tensor,
    taps: tuple[float, ...],
    c1: float,
    c2: float,
    cov_norm: float,
    channels: Channels,
    c: int,
    own: int,
) -> tuple[Tensor, Tensor]:
    """SSIM-map sums (b, c) over one band of output rows and squared-error sums (b, c) over its first ``own``
    input rows. xs, ys: (r + k - 1, b, C_in, W) input rows."""
    n_in, b, _, w = xs.shape
    r, k = band.shape[0], len(taps)
    w_out = w - k + 1
    n = b * c
    maps = torch.empty(n_in, 4, n, w, dtype=torch.float64, device=xs.device)
    mx, my = maps[:, 0], maps[:, 1]
    channels(xs, ys, mx.view(n_in, b, c, w), my.view(n_in, b, c, w))
    diff = mx[:own] - my[:own]
    sse = diff.mul_(diff).sum(dim=(0, 2))
    torch.mul(mx, mx, out=maps[:, 2])
    maps[:, 2].addcmul_(my, my)
    torch.mul(mx, my, out=maps[:, 3])
    # column pass: one matrix product for all maps of the band
    cols = (band @ maps.view(n_in, -1)).view(r, 4, n, w)
    # row pass: k multiply-adds on shifted views
    stats = cols[..., 0:w_out] * taps[0]
    for j in range(1, k):
        stats.add_(cols[..., j : j + w_out], alpha=taps[j])
    mu_x, mu_y, sq, xy = stats.unbind(1)
    # SSIM map, in place on the band's statistics, with the constant factors taken out of the fraction:
    # (2 m + c1)(2 cn (xy - m) + c2) / ((q + c1)(cn (sq - q) + c2))
    #   = 4 (m + c1 / 2)(xy - m + c2 / (2 cn)) / ((q + c1)(sq - q + c2 / cn)),  m = mu_x mu_y, q = mu_x^2 + mu_y^2
    m = mu_x * mu_y
    q = mu_x * mu_x
    q.addcmul_(mu_y, mu_y)
    num = xy.sub_(m).add_(c2 / (2.0 * cov_norm)).mul_(m.add_(c1 / 2.0))
    den = sq.sub_(q).add_(c2 / cov_norm).mul_(q.add_(c1))
    return num.div_(den).sum(dim=(0, 2)).mul_(4.0).view(b, c), sse.view(b, c)
