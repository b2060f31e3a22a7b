"""The release notebook's clean-image computation, pixel by pixel in plain Python: the yardstick that
:mod:`src.make_clean.algorithm` must match exactly (tests) and beat on speed (experiments/bench_clean.py).

Deliberately slow and literal: luma through the notebook's YCbCr matrix product, then for every pixel a
bincount mode, a Python ``sorted`` list and the positions of the mode in it, a 101-way vote per pixel, and
one ``np.percentile`` call per pixel and channel. Only for small clips.
"""

from __future__ import annotations

import numpy as np

#: The notebook's RGB -> YCbCr matrix (columns Y, Cb, Cr); only the Y column is used.
YCBCR = np.array([[0.29900, -0.16874, 0.50000],
                  [0.58700, -0.33126, -0.41869],
                  [0.11400, 0.50000, -0.08131]])


def notebook_luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 luma as the notebook computes it: ``np.dot(rgb, YCBCR)[..., 0]`` cast to uint8 (truncation),
    for the 4-D video array (N, H, W, 3) as in the notebook: numpy's N-d ``dot`` adds the three products in
    order, while a 2-D ``dot`` goes to BLAS gemm and may round differently (fused multiply-adds).

    The notebook's ``+= 128`` on ``ycbcr[:, :, 1:]`` is left out: meant for Cb/Cr, on a 4-D video array it
    lands on image columns instead (see the algorithm module's docstring); the spec uses plain luma.
    """
    return np.dot(rgb, YCBCR)[..., 0].astype(np.uint8)


def reference_clean_image(frames: np.ndarray) -> tuple[np.ndarray, int, list[int]]:
    """(clean image uint8 (H, W, 3), p_hat, votes per p 0..100) for uint8 RGB frames (N, H, W, 3), one
    pixel at a time."""
    rgb = np.asarray(frames)
    n, h, w, _ = rgb.shape
    y = notebook_luma(rgb)

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
