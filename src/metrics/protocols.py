"""The three named evaluation protocols: ``spanet``, ``y_matlab`` and ``rgb_uint8``.

Every function takes a batch of predictions and targets as torch tensors of shape (B, 3, H, W), RGB,
values on the [0, 1] scale (the prediction may lie outside: each protocol clips it), and returns one score
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

Where the libraries stand:

* ``kornia.metrics.ssim(x, y, 11, max_val=255.0, eps=0.0, padding="valid")`` is exactly the Gaussian SSIM
  map of ``y_matlab`` / ``rgb_uint8`` (11x11 sampled Gaussian, sigma 1.5, 'valid' region, population
  covariance, as Wang et al.'s ``ssim_index.m``), so those protocols use it.
* Neither library computes the ``spanet`` SSIM: kornia only has a Gaussian window, and torchmetrics'
  ``structural_similarity_index_measure`` reflect-pads the image and averages the WHOLE map (border
  included), uses the population covariance and clamps variances at 0. :func:`ssim_spanet` is therefore
  written here (a valid 7x7 box filter equals scikit-image's filter-then-crop-3-pixels).
* torchmetrics' ``peak_signal_noise_ratio`` reduces over the whole batch unless given ``dim``; the PSNR here
  is one line per image instead.
"""

from __future__ import annotations

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

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


def _check_pair(pred: Tensor, target: Tensor, min_side: int) -> tuple[Tensor, Tensor]:
    """Validate (B, 3, H, W) pairs and return float64 copies (detached)."""
    if not isinstance(pred, Tensor) or not isinstance(target, Tensor):
        raise TypeError(f"pred and target must be torch tensors, got {type(pred).__name__}, {type(target).__name__}")
    if pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(f"pred must have shape (B, 3, H, W) (RGB), got {tuple(pred.shape)}")
    if target.shape != pred.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    h, w = pred.shape[-2:]
    if min(h, w) < min_side:
        raise ValueError(f"images of {h}x{w} pixels are smaller than the {min_side}x{min_side} SSIM window")
    return pred.detach().to(torch.float64), target.detach().to(torch.float64)


def to_uint8_levels(x: Tensor) -> Tensor:
    """Float image on the [0, 1] scale -> its 8-bit levels, as float64 integers in 0..255.

    ``floor(clip(x, 0, 1) * 255 + 0.5)`` (round half up; see the module docstring). Shape is kept.
    """
    return torch.floor(x.to(torch.float64).clamp(0.0, 1.0) * 255.0 + 0.5)


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
    r, g, b = levels.round().to(torch.int64).unbind(dim=1)
    numerator = 16 * 255_000 + 65_481 * r + 128_553 * g + 24_966 * b + 127_500
    return torch.div(numerator, 255_000, rounding_mode="floor").unsqueeze(1).to(torch.float64)


# --- the two measures, per image ------------------------------------------------------------------------


def _psnr(x: Tensor, y: Tensor, peak: float) -> Tensor:
    """Per-image PSNR in dB of (B, C, H, W) float64 tensors: 10 log10(peak^2 / MSE over C, H, W), capped."""
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    psnr = 10.0 * torch.log10(peak**2 / mse)  # +inf where mse == 0
    return psnr.clamp(max=PSNR_CAP_DB)


def _ssim_gaussian_valid(x: Tensor, y: Tensor, data_range: float) -> Tensor:
    """Per-image mean SSIM of (B, C, H, W) float64 tensors; 11x11 Gaussian sigma 1.5, 'valid' region.

    Mean over channels and pixels = mean over channels of the per-channel means (all channels have the same
    number of valid pixels).
    """
    ssim_map = kornia.metrics.ssim(x, y, GAUSS_WIN, max_val=float(data_range), eps=0.0, padding="valid")
    return ssim_map.flatten(1).mean(dim=1)


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
    return _psnr(pred.clamp(0.0, 1.0), target, peak=1.0)


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
    x, y = _check_pair(pred, target, min_side=SPANET_WIN)
    x = x.clamp(0.0, 1.0)

    def box(t: Tensor) -> Tensor:  # mean over each 7x7 window that fits inside the image ('valid')
        return F.avg_pool2d(t, SPANET_WIN, stride=1)

    n = SPANET_WIN * SPANET_WIN
    cov_norm = n / (n - 1)
    mu_x, mu_y = box(x), box(y)
    var_x = cov_norm * (box(x * x) - mu_x * mu_x)
    var_y = cov_norm * (box(y * y) - mu_y * mu_y)
    cov_xy = cov_norm * (box(x * y) - mu_x * mu_y)
    c1, c2 = (K1 * SPANET_DATA_RANGE) ** 2, (K2 * SPANET_DATA_RANGE) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(2).mean(dim=2).mean(dim=1)  # per channel, then mean of the channels


# --- protocol `y_matlab` --------------------------------------------------------------------------------


def psnr_y_matlab(pred: Tensor, target: Tensor) -> Tensor:
    """PSNR, protocol ``y_matlab``: Y (MATLAB rgb2ycbcr) of the 8-bit images, peak 255, no border crop.

    Args:
        pred, target: (B, 3, H, W) RGB on the [0, 1] scale; both are quantised with :func:`to_uint8_levels`.
    Returns:
        (B,) float64 PSNR in dB, capped at ``PSNR_CAP_DB``.
    """
    pred, target = _check_pair(pred, target, min_side=1)
    return _psnr(rgb_to_y_matlab(to_uint8_levels(pred)), rgb_to_y_matlab(to_uint8_levels(target)), peak=255.0)


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
    y_pred, y_target = rgb_to_y_matlab(to_uint8_levels(pred)), rgb_to_y_matlab(to_uint8_levels(target))
    return _ssim_gaussian_valid(y_pred, y_target, data_range=255.0)


# --- protocol `rgb_uint8` -------------------------------------------------------------------------------


def psnr_rgb_uint8(pred: Tensor, target: Tensor) -> Tensor:
    """PSNR, protocol ``rgb_uint8``: 8-bit RGB levels, peak 255, MSE over all 3 channels, no border crop.

    Args:
        pred, target: (B, 3, H, W) RGB on the [0, 1] scale; both are quantised with :func:`to_uint8_levels`.
    Returns:
        (B,) float64 PSNR in dB, capped at ``PSNR_CAP_DB``.
    """
    pred, target = _check_pair(pred, target, min_side=1)
    return _psnr(to_uint8_levels(pred), to_uint8_levels(target), peak=255.0)


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
    return _ssim_gaussian_valid(to_uint8_levels(pred), to_uint8_levels(target), data_range=255.0)


# --- everything at once ---------------------------------------------------------------------------------

PROTOCOL_FUNCTIONS = {
    "spanet": (psnr_spanet, ssim_spanet),
    "y_matlab": (psnr_y_matlab, ssim_y_matlab),
    "rgb_uint8": (psnr_rgb_uint8, ssim_rgb_uint8),
}


def score_all(pred: Tensor, target: Tensor) -> dict[str, dict[str, Tensor]]:
    """All protocols on a batch: ``{"spanet": {"psnr": (B,), "ssim": (B,)}, "y_matlab": ..., "rgb_uint8": ...}``.

    pred, target: (B, 3, H, W) RGB on the [0, 1] scale, H, W >= 11. Values are float64 per-image scores.
    """
    return {
        name: {"psnr": psnr_fn(pred, target), "ssim": ssim_fn(pred, target)}
        for name, (psnr_fn, ssim_fn) in PROTOCOL_FUNCTIONS.items()
    }
