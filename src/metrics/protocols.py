"""The three named evaluation protocols: ``spanet``, ``y_matlab`` and ``rgb_uint8``.

Every function takes a batch of predictions and targets as torch tensors of shape (B, 3, H, W), RGB,
values on the [0, 1] scale (the prediction may lie outside: each protocol clips it) -- or uint8 / uint16
images as decoded from files, divided by 255 / 65535 in float64 -- and returns one score
per image, a float64 tensor of shape (B,) on the input's device. Averaging over images is the caller's job
(``ProtocolMetrics``): scores are always computed per image and then averaged, never from an error pooled
over a batch. Everything is computed in float64.

``spanet`` (the SPANet paper's Tables 2-4)
    pixels: RGB floats, prediction clipped to [0, 1].
    PSNR:   peak 1, MSE over all 3 channels, no border crop.
    SSIM:   per channel, 7x7 uniform window, sample covariance (x 49/48), data_range 2, the SSIM map's
            3-pixel border excluded; mean over the map, then over the 3 channels.
``y_matlab`` (Restormer, MPRNet, most papers since 2019)
    pixels: Y of MATLAB ``rgb2ycbcr`` on the 8-bit images (integers 16..235).
    PSNR:   peak 255, no border crop.
    SSIM:   11x11 Gaussian window, sigma 1.5, 'valid' region (5-pixel border excluded), L 255.
``rgb_uint8`` (derain-toolbox style)
    pixels: 8-bit RGB levels 0..255.
    PSNR:   peak 255, MSE over all 3 channels, no border crop.
    SSIM:   per channel, 11x11 Gaussian window, sigma 1.5, 'valid' region, L 255; mean of the 3 channels.

All SSIMs use K1 = 0.01, K2 = 0.03. The ``spanet`` protocol is what the SPANet release computed with
``skimage.measure.compare_psnr`` / ``compare_ssim(multichannel=True)`` on float images (whose implicit
data_range of 2 for float input inflates SSIM); today's equivalent is
``skimage.metrics.structural_similarity(x, y, win_size=7, channel_axis=-1, data_range=2)``.

Conventions fixed here:

* Float -> 8 bit: ``level = floor(clip(x, 0, 1) * 255 + 0.5)`` in float64, i.e. round half up
  (:func:`to_uint8_levels`; :func:`to_uint8_image` for a uint8 array). This equals MATLAB's
  ``im2uint8``/``round`` and ``torchvision.utils.save_image``. It is the suite's one rule: the protocols, the
  images ``src.predict`` writes, the image grids of the training callback and the SPANet loss's rain mask all
  call these two functions. (numpy/torch ``round(x * 255)`` in float32 differs from it on ties and near-ties.)
* Identical images: PSNR is capped at :data:`PSNR_CAP_DB` = 100 dB (MSE = 0 would give +inf and turn every
  mean into inf). 100 dB is far above any real restoration (8-bit images differing in one level at one pixel
  of a 1-megapixel image still read about 113 dB, which is also reported as 100).

Where the libraries stand, and why the kernels are written here (:mod:`src.metrics.kernels`):

* ``kornia.metrics.ssim(x, y, 11, max_val=255.0, eps=0.0, padding="valid")`` computes exactly the Gaussian
  SSIM map of ``y_matlab`` / ``rgb_uint8`` (11x11 sampled Gaussian, sigma 1.5, 'valid' region, population
  covariance, as Wang et al.'s ``ssim_index.m``), but with a non-separable 11x11 convolution per statistic.
* Neither library computes the ``spanet`` SSIM: kornia only has a Gaussian window, and torchmetrics'
  ``structural_similarity_index_measure`` reflect-pads the image and averages the WHOLE map (border
  included), uses the population covariance and clamps variances at 0. A 'valid' 7x7 box filter equals
  scikit-image's filter-then-crop-3-pixels.
* :mod:`src.metrics.kernels` computes both families with separable filters and shared intermediate results
  (one pass for RGB and Y, one conversion to 8-bit levels per image in :func:`score_all`), in float64; the
  tests pin it to scikit-image, kornia and a direct implementation of the formulas.
* torchmetrics' ``peak_signal_noise_ratio`` reduces over the whole batch unless given ``dim``; the PSNR here
  is one line per image instead.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from src.metrics.kernels import gaussian_taps, sse_per_channel, ssim_means, uniform_taps

__all__ = [
    "PROTOCOLS",
    "PROTOCOL_SUMMARY",
    "PSNR_CAP_DB",
    "to_uint8_levels",
    "to_uint8_image",
    "rgb_to_y_matlab",
    "psnr_spanet",
    "ssim_spanet",
    "psnr_y_matlab",
    "ssim_y_matlab",
    "psnr_rgb_uint8",
    "ssim_rgb_uint8",
    "PROTOCOL_FUNCTIONS",
    "score_all",
]

PROTOCOLS: tuple[str, ...] = ("spanet", "y_matlab", "rgb_uint8")
"""Protocol names, in the order tables print them."""

PROTOCOL_SUMMARY: dict[str, str] = {
    "spanet": "RGB in [0,1], PSNR peak 1; SSIM 7x7 uniform window, data_range 2, 3-pixel border excluded",
    "y_matlab": "Y of MATLAB rgb2ycbcr on 8-bit images, PSNR peak 255; SSIM 11x11 Gaussian, 'valid' region",
    "rgb_uint8": "8-bit RGB, PSNR peak 255; SSIM 11x11 Gaussian, 'valid' region, per channel",
}
"""One line per protocol, for captions and table footers."""

PSNR_CAP_DB = 100.0
"""PSNR reported for identical images (and the ceiling for all PSNRs), in dB."""

K1, K2 = 0.01, 0.03
SPANET_WIN = 7  # uniform window of the spanet SSIM
SPANET_DATA_RANGE = 2.0  # old scikit-image default for float images (dtype range -1..1)
GAUSS_WIN = 11  # Gaussian window (sigma 1.5) of the y_matlab / rgb_uint8 SSIM


# --- input handling -------------------------------------------------------------------------------------


_INTEGER_SCALES = {torch.uint8: 255.0, torch.uint16: 65535.0}
"""Integer images are accepted as they come out of a file and divided by these (in float64, exactly as
``src.utils.image_io.to_float``), band by band."""


def _check_pair(pred: Tensor, target: Tensor, min_side: int) -> tuple[Tensor, Tensor]:
    """Validate (B, 3, H, W) pairs of floating-point (or uint8 / uint16) tensors; return them detached."""
    if not isinstance(pred, Tensor) or not isinstance(target, Tensor):
        raise TypeError(f"pred and target must be torch tensors, got {type(pred).__name__}, {type(target).__name__}")
    if pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(f"pred must have shape (B, 3, H, W) (RGB), got {tuple(pred.shape)}")
    if target.shape != pred.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    h, w = pred.shape[-2:]
    if min(h, w) < min_side:
        raise ValueError(f"images of {h}x{w} pixels are smaller than the {min_side}x{min_side} SSIM window")
    for t in (pred, target):
        if not t.is_floating_point() and t.dtype not in _INTEGER_SCALES:
            raise TypeError(
                f"pred and target must be floating-point images on the [0, 1] scale (or uint8 / uint16 "
                f"images), got {pred.dtype} and {target.dtype}"
            )
    return pred.detach(), target.detach()


def to_uint8_levels(x: Tensor) -> Tensor:
    """Float image on the [0, 1] scale -> its 8-bit levels, as float64 integers in 0..255.

    ``floor(clip(x, 0, 1) * 255 + 0.5)`` (round half up; see the module docstring). Shape is kept.
    """
    return _levels(x, torch.empty(x.shape, dtype=torch.float64, device=x.device))


def _levels(x: Tensor, out: Tensor) -> Tensor:
    """:func:`to_uint8_levels` of ``x`` written into the float64 tensor ``out`` (same shape)."""
    return _clip_into(x, out).mul_(255.0).add_(0.5).floor_()


def _unit_into(x: Tensor, out: Tensor) -> Tensor:
    """``x`` on the [0, 1] scale as float64, written into ``out`` (same shape); integer images are divided by
    255 or 65535 (by a tensor, not a Python number: CUDA would multiply by the rounded reciprocal instead)."""
    out.copy_(x)
    if x.dtype in _INTEGER_SCALES:
        out.div_(torch.full((), _INTEGER_SCALES[x.dtype], dtype=torch.float64, device=out.device))
    return out


def _clip_into(x: Tensor, out: Tensor) -> Tensor:
    """``clip(x, 0, 1)`` as float64, written into ``out`` (same shape)."""
    if x.dtype == torch.float64:
        return torch.clamp(x, 0.0, 1.0, out=out)
    return _unit_into(x, out).clamp_(0.0, 1.0)


def to_uint8_image(x) -> np.ndarray:
    """Float image on the [0, 1] scale (tensor or array, any shape) -> uint8 numpy array of its levels
    (:func:`to_uint8_levels`: the suite's one float -> 8-bit rule)."""
    t = x.detach().cpu() if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x))
    return to_uint8_levels(t).to(torch.uint8).numpy()


def rgb_to_y_matlab(levels: Tensor) -> Tensor:
    """Y of MATLAB ``rgb2ycbcr`` on an 8-bit image: (B, 3, H, W) RGB levels 0..255 -> (B, 1, H, W) Y in 16..235.

    ``Y = round(16 + (65.481 R + 128.553 G + 24.966 B) / 255)`` with MATLAB's round (half away from zero).
    Evaluated in exact integer arithmetic (coefficients x 1000) so that ties round the same way on every
    device: ``Y = floor((16 * 255000 + 65481 R + 128553 G + 24966 B + 127500) / 255000)``.
    Returned as float64 integers.
    """
    if levels.ndim != 4 or levels.shape[1] != 3:
        raise ValueError(f"expected RGB levels of shape (B, 3, H, W), got {tuple(levels.shape)}")
    out = torch.empty_like(levels[:, :1], dtype=torch.float64)
    return _y_of_levels(levels.to(torch.float64).round(), out, dim=1)


def _y_of_levels(levels: Tensor, out: Tensor, dim: int) -> Tensor:
    """:func:`rgb_to_y_matlab` of float64 integer levels (R, G, B along ``dim``) into ``out`` (size 1 there).

    The numerator is an integer below 2^53, so float64 holds it exactly, and ``floor(n / 255000)`` is exact
    too: a quotient that is not an integer lies at least 1/255000 below the next one, far more than float64's
    rounding error on a number below 236."""
    r, g, b = levels.unbind(dim=dim)
    numerator = torch.mul(r, 65_481.0, out=out.squeeze(dim))
    numerator.add_(g, alpha=128_553.0).add_(b, alpha=24_966.0).add_(16 * 255_000 + 127_500)
    numerator.div_(255_000.0).floor_()
    return out


# --- the protocols' channels, made band by band (see src.metrics.kernels.Channels) -------------------------
# rows: (n, B, 3, W) views of the inputs; out: (n, B, C, W) float64.


def _spanet_channels(rows_x: Tensor, rows_y: Tensor, out_x: Tensor, out_y: Tensor) -> None:
    """RGB on the [0, 1] scale, the prediction clipped."""
    _clip_into(rows_x, out_x)
    _unit_into(rows_y, out_y)


def _rgb_level_channels(rows_x: Tensor, rows_y: Tensor, out_x: Tensor, out_y: Tensor) -> None:
    """8-bit RGB levels of both."""
    _levels(rows_x, out_x)
    _levels(rows_y, out_y)


def _y_channel(rows_x: Tensor, rows_y: Tensor, out_x: Tensor, out_y: Tensor) -> None:
    """Y (MATLAB rgb2ycbcr) of the 8-bit levels of both."""
    for rows, out in ((rows_x, out_x), (rows_y, out_y)):
        _y_of_levels(_levels(rows, torch.empty(rows.shape, dtype=torch.float64, device=rows.device)), out, dim=2)


def _rgb_y_channels(rows_x: Tensor, rows_y: Tensor, out_x: Tensor, out_y: Tensor) -> None:
    """8-bit R, G, B and their Y: the channels of both Gaussian protocols, filtered in one pass."""
    for rows, out in ((rows_x, out_x), (rows_y, out_y)):
        _y_of_levels(_levels(rows, out[:, :, :3]), out[:, :, 3:], dim=2)


# --- the two measures, per image ------------------------------------------------------------------------


def _psnr(sse: Tensor, n_values: int, peak: float) -> Tensor:
    """Per-image PSNR in dB from the (B, C) sums of squared errors over ``n_values`` values per image, capped."""
    psnr = 10.0 * torch.log10(peak**2 / (sse.sum(dim=1) / n_values))  # +inf where the error is 0
    return psnr.clamp(max=PSNR_CAP_DB)


_GAUSS = gaussian_taps(GAUSS_WIN, 1.5)
_BOX = uniform_taps(SPANET_WIN)
_C_255 = ((K1 * 255.0) ** 2, (K2 * 255.0) ** 2)
_C_SPANET = ((K1 * SPANET_DATA_RANGE) ** 2, (K2 * SPANET_DATA_RANGE) ** 2)
_SPANET_COV_NORM = SPANET_WIN**2 / (SPANET_WIN**2 - 1)  # sample covariance over the 7x7 window


def _spanet(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 3) per-channel SSIM means and squared-error sums of the spanet protocol."""
    return ssim_means(pred, target, _BOX, *_C_SPANET, cov_norm=_SPANET_COV_NORM, channels=_spanet_channels)


def _gaussian(pred: Tensor, target: Tensor, channels, n_channels: int) -> tuple[Tensor, Tensor]:
    """(B, C) per-channel SSIM means and squared-error sums on 0..255 channels: 11x11 Gaussian sigma 1.5,
    'valid' region, population covariance, L = 255."""
    return ssim_means(pred, target, _GAUSS, *_C_255, channels=channels, n_channels=n_channels)


def _n_pixels(x: Tensor) -> int:
    return x.shape[-2] * x.shape[-1]


# --- protocol `spanet` ----------------------------------------------------------------------------------


def psnr_spanet(pred: Tensor, target: Tensor) -> Tensor:
    """PSNR, protocol ``spanet``: RGB in [0, 1], pred clipped to [0, 1], peak 1, MSE over all 3 channels.

    Args:
        pred: (B, 3, H, W) RGB on the [0, 1] scale (clipped here).
        target: (B, 3, H, W) RGB in [0, 1].
    Returns:
        (B,) float64 PSNR in dB, no border crop, capped at ``PSNR_CAP_DB``.
    """
    pred, target = _check_pair(pred, target, min_side=1)
    return _psnr(sse_per_channel(pred, target, _spanet_channels), 3 * _n_pixels(pred), peak=1.0)


def ssim_spanet(pred: Tensor, target: Tensor) -> Tensor:
    """SSIM, protocol ``spanet``: RGB in [0, 1], 7x7 uniform window, sample covariance, data_range 2.

    Equals ``skimage.metrics.structural_similarity(p, t, win_size=7, channel_axis=-1, data_range=2)``:
    per channel, local means/variances over a 7x7 box with the covariance normalised by 49/48 (sample
    covariance), C1 = (0.01 * 2)^2, C2 = (0.03 * 2)^2; the SSIM map's 3-pixel border is excluded (here: the
    box filter is evaluated only where the window fits, which is the same set of pixels); mean over the map,
    then mean of the 3 channels. Written by hand because no library computes it (module docstring).

    Args:
        pred: (B, 3, H, W) RGB on the [0, 1] scale (clipped here); H, W >= 7.
        target: (B, 3, H, W) RGB in [0, 1].
    Returns:
        (B,) float64 SSIM.
    """
    pred, target = _check_pair(pred, target, min_side=SPANET_WIN)
    return _spanet(pred, target)[0].mean(dim=1)  # per channel, then mean of the channels


# --- protocol `y_matlab` --------------------------------------------------------------------------------


def psnr_y_matlab(pred: Tensor, target: Tensor) -> Tensor:
    """PSNR, protocol ``y_matlab``: Y (MATLAB rgb2ycbcr) of the 8-bit images, peak 255, no border crop.

    Args:
        pred, target: (B, 3, H, W) RGB on the [0, 1] scale; both are quantised with :func:`to_uint8_levels`.
    Returns:
        (B,) float64 PSNR in dB, capped at ``PSNR_CAP_DB``.
    """
    pred, target = _check_pair(pred, target, min_side=1)
    return _psnr(sse_per_channel(pred, target, _y_channel, n_channels=1), _n_pixels(pred), peak=255.0)


def ssim_y_matlab(pred: Tensor, target: Tensor) -> Tensor:
    """SSIM, protocol ``y_matlab``: Y (MATLAB rgb2ycbcr) of the 8-bit images, 0..255 scale.

    11x11 Gaussian window, sigma 1.5; map over the 'valid' region only (5-pixel border excluded);
    L = 255, K1 = 0.01, K2 = 0.03, population covariance (Wang et al.'s ssim_index.m).

    Args:
        pred, target: (B, 3, H, W) RGB on the [0, 1] scale, quantised with :func:`to_uint8_levels`; H, W >= 11.
    Returns:
        (B,) float64 SSIM.
    """
    pred, target = _check_pair(pred, target, min_side=GAUSS_WIN)
    return _gaussian(pred, target, _y_channel, 1)[0][:, 0]


# --- protocol `rgb_uint8` -------------------------------------------------------------------------------


def psnr_rgb_uint8(pred: Tensor, target: Tensor) -> Tensor:
    """PSNR, protocol ``rgb_uint8``: 8-bit RGB levels, peak 255, MSE over all 3 channels, no border crop.

    Args:
        pred, target: (B, 3, H, W) RGB on the [0, 1] scale; both are quantised with :func:`to_uint8_levels`.
    Returns:
        (B,) float64 PSNR in dB, capped at ``PSNR_CAP_DB``.
    """
    pred, target = _check_pair(pred, target, min_side=1)
    return _psnr(sse_per_channel(pred, target, _rgb_level_channels), 3 * _n_pixels(pred), peak=255.0)


def ssim_rgb_uint8(pred: Tensor, target: Tensor) -> Tensor:
    """SSIM, protocol ``rgb_uint8``: 8-bit RGB levels (0..255 scale), per channel then mean of the 3.

    11x11 Gaussian window, sigma 1.5; 'valid' region only (5-pixel border excluded); L = 255,
    K1 = 0.01, K2 = 0.03, population covariance.

    Args:
        pred, target: (B, 3, H, W) RGB on the [0, 1] scale, quantised with :func:`to_uint8_levels`; H, W >= 11.
    Returns:
        (B,) float64 SSIM.
    """
    pred, target = _check_pair(pred, target, min_side=GAUSS_WIN)
    return _gaussian(pred, target, _rgb_level_channels, 3)[0].mean(dim=1)


# --- everything at once ---------------------------------------------------------------------------------

PROTOCOL_FUNCTIONS = {
    "spanet": (psnr_spanet, ssim_spanet),
    "y_matlab": (psnr_y_matlab, ssim_y_matlab),
    "rgb_uint8": (psnr_rgb_uint8, ssim_rgb_uint8),
}


def score_all(pred: Tensor, target: Tensor) -> dict[str, dict[str, Tensor]]:
    """All protocols on a batch: ``{"spanet": {"psnr": (B,), "ssim": (B,)}, "y_matlab": ..., "rgb_uint8": ...}``.

    pred, target: (B, 3, H, W) RGB on the [0, 1] scale, H, W >= 11. Values are float64 per-image scores, those
    of the single-protocol functions. Intermediate results are shared: each PSNR comes from the squared errors
    of its SSIM's band buffers, and the Gaussian protocols share one conversion to 8-bit levels and one
    filtering pass (R, G, B and Y as four channels).
    """
    pred, target = _check_pair(pred, target, min_side=GAUSS_WIN)
    n = _n_pixels(pred)
    spanet_ssim, spanet_sse = _spanet(pred, target)
    gauss_ssim, gauss_sse = _gaussian(pred, target, _rgb_y_channels, 4)
    return {
        "spanet": {"psnr": _psnr(spanet_sse, 3 * n, peak=1.0), "ssim": spanet_ssim.mean(dim=1)},
        "y_matlab": {"psnr": _psnr(gauss_sse[:, 3:], n, peak=255.0), "ssim": gauss_ssim[:, 3]},
        "rgb_uint8": {"psnr": _psnr(gauss_sse[:, :3], 3 * n, peak=255.0), "ssim": gauss_ssim[:, :3].mean(dim=1)},
    }
