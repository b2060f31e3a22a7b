"""One float -> 8-bit rule everywhere: round half up of clip(x, 0, 1) * 255 (MATLAB's im2uint8), checked against
exact rational arithmetic on float32 values at and next to the ties, where float32 ``round(x * 255)`` (half to
even, after a rounded product) disagrees."""

from __future__ import annotations

from fractions import Fraction
from math import floor

import numpy as np
import torch

from src.lit.callbacks import make_grid_rows
from src.losses.spanet import rain_mask
from src.metrics.protocols import to_uint8_image, to_uint8_levels


def _near_ties() -> np.ndarray:
    """float32 values nearest to (k + 1/2) / 255 and their two neighbours, k = 0..254, plus 0, 1 and outside."""
    ties = np.float32((np.arange(255) + 0.5) / 255)
    x = np.concatenate(
        [
            np.nextafter(ties, np.float32(0)),
            ties,
            np.nextafter(ties, np.float32(1)),
            np.float32([0.0, 1.0, -0.25, 1.5, 0.5]),
        ]
    )
    return x.astype(np.float32)


def _exact_level(v: np.float32) -> int:
    q = min(max(Fraction(float(v)), Fraction(0)), Fraction(1))
    return floor(q * 255 + Fraction(1, 2))


def test_helpers_match_exact_round_half_up():
    x = _near_ties()
    expected = np.array([_exact_level(v) for v in x])
    assert np.array_equal(to_uint8_levels(torch.from_numpy(x)).numpy(), expected)
    assert np.array_equal(to_uint8_image(x), expected.astype(np.uint8))
    assert np.array_equal(to_uint8_image(torch.from_numpy(x)), expected.astype(np.uint8))
    old = torch.round(torch.from_numpy(x) * 255).numpy()  # what predict / the callback / the mask used to do
    assert (old != np.clip(expected, 0, 255)).sum() > 0  # the rules really differ on these values


def test_callback_grid_and_loss_mask_use_the_rule():
    x = _near_ties()
    n = len(x)
    expected = np.array([_exact_level(v) for v in x], dtype=np.uint8)
    panel = torch.from_numpy(np.tile(x, (3, 1, 1)))  # (3, 1, n)
    grid = make_grid_rows([[panel]], gap=0)
    assert np.array_equal(grid[0, :n, 0], expected)
    # rain mask: M = 1 exactly where the 8-bit levels differ, by the same rule
    clean = torch.from_numpy(np.tile(x, (1, 3, 1, 1)))
    rain = torch.from_numpy(np.tile(np.nextafter(x, np.float32(2)), (1, 3, 1, 1)))
    rain_levels = np.array([_exact_level(v) for v in np.nextafter(x, np.float32(2))])
    mask = rain_mask(rain, clean)[0, 0, 0].numpy()
    assert 0 < mask.sum() < n and np.array_equal(mask, (rain_levels != expected).astype(np.float32))
