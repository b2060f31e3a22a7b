"""Figures stay readable at any size: captions are fitted to their strip, never cut off."""

from __future__ import annotations

import numpy as np
import pytest

from src.metrics.figures import GAP, MARGIN, compare_figure, comparison_grid, fit_text


def _dark_columns(strip: np.ndarray) -> np.ndarray:
    return np.nonzero((strip < 128).any(axis=(0, 2)))[0]


@pytest.mark.parametrize("h, w", [(30, 40), (7, 9)])
def test_compare_figure_captions_fit_a_tiny_image(h, w):
    rng = np.random.default_rng(0)
    rain, out, gt = (rng.random((h, w, 3)) for _ in range(3))
    scores = {"rain": {"psnr": 24.52, "ssim": 0.8123}, "derained": {"psnr": 31.07, "ssim": 0.9456}}
    fig, boxes = compare_figure(rain, out, rng.random((h, w)), gt, scores, "y_matlab", title="b_a seed=1 lr=0.0001")
    top, left, bottom, right = boxes["rain"]
    width = right - left
    assert width >= 160 and width % w == 0 and bottom - top == h * width // w  # enlarged by a whole factor
    captions = {
        "rain": ["Rain", "24.52 dB / 0.8123"],
        "derained": ["b_a seed=1 lr=0.0001", "31.07 dB / 0.9456"],
        "attention": ["Attention"],
        "gt": ["Ground truth", "PSNR / SSIM: protocol y_matlab"],
    }
    for name, lines in captions.items():
        _, left, bottom, right = boxes[name]
        strip = fig[bottom:, left:right]
        cols = _dark_columns(strip)
        assert cols.size and cols.min() >= MARGIN and cols.max() < width - MARGIN, name  # text inside, not cut
        wrapped, font, size = fit_text(width, lines, 40)
        assert all(font.getlength(line) <= width - 2 * MARGIN for line in wrapped) and size >= 8
    assert fig.shape[1] == 4 * width + 3 * GAP


def test_grid_labels_and_footer_fit_narrow_cells():
    img = np.random.default_rng(1).random((30, 40, 3))
    rows = [("row", [("Rain", img, {"psnr": 20.0, "ssim": 0.5}), ("spanet_release seed=12", img, None)])]
    grid, boxes = comparison_grid(rows, cell_width=40, protocol="rgb_uint8")
    for label in ("Rain", "spanet_release seed=12"):
        top, left, _, right = boxes[f"row/{label}"]
        cols = _dark_columns(grid[:top, left:right])  # the column label above the cell
        assert cols.size and cols.min() >= MARGIN and cols.max() < 40 - MARGIN
    footer = grid[-20:]
    assert _dark_columns(footer).max() < grid.shape[1] - MARGIN
