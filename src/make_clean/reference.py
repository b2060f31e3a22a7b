"""The clean-image computation of the release notebook, as the paper means it, pixel by pixel in plain Python: the
yardstick that :mod:`src.make_clean.algorithm` must match exactly (tests) and beat on speed
(experiments/bench_clean.py).

Deliberately slow and literal: the luma of every pixel in Python integers, then for every pixel a bincount mode,
a Python ``sorted`` list and the positions of the mode in it, a 101-way vote per pixel, and one ``np.percentile``
call per pixel and channel. Only for small clips. Every step is exact or element-wise IEEE arithmetic (no BLAS
``dot``, no float sums whose order a CPU kernel may change), so the reference gives the same numbers on every
machine.
"""

from __future__ import annotations

import numpy as np


def reference_luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 luma ``(299 R + 587 G + 114 B) // 1000`` of uint8 RGB ``(..., 3)``, one pixel at a time in Python
    integers: the notebook's ``0.299 R + 0.587 G + 0.114 B`` truncated, without float rounding.

    (The notebook itself computes ``np.dot(video, YCbCr matrix)[..., 0]`` in float64; that value depends on the
    CPU's BLAS kernel, and its ``+= 128`` slip lands on image columns: see the algorithm module's docstring.)
    """
    rgb = np.asarray(rgb)
    values = [(299 * r + 587 * g + 114 * b) // 1000 for r, g, b in rgb.reshape(-1, 3).tolist()]
    return np.array(values, np.uint8).reshape(rgb.shape[:-1])


def reference_clean_image(frames: np.ndarray) -> tuple[np.ndarray, int, list[int]]:
    """(clean image uint8 (H, W, 3), p_hat, votes per p 0..100) for uint8 RGB frames (N, H, W, 3), one
    pixel at a time."""
    rgb = np.asarray(frames)
    n, h, w, _ = rgb.shape
    y = reference_luma(rgb)

    r_min, r_max = [], []
    for i in range(h):
        for j in range(w):
            series = y[:, i, j]
            phi = np.argmax(np.bincount(series))  # the mode; the first maximum is the smallest value
            positions = [t for t, v in enumerate(sorted(series)) if v == phi]
            r_min.append(positions[0] / len(series) * 100)
            r_max.append(positions[-1] / len(series) * 100)

    votes = [0] * 101
    for lo, hi in zip(r_min, r_max):
        for p in range(101):
            if lo <= p <= hi:
                votes[p] += 1
    p_hat = int(np.argmax(votes))

    out = np.empty((h, w, 3), np.uint8)
    for i in range(h):
        for j in range(w):
            for c in range(3):
                out[i, j, c] = np.percentile(rgb[:, i, j, c], p_hat).astype(np.uint8)
    return out, p_hat, votes
