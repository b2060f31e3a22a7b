"""Test reference: the release notebook's clean-image generation ("clean image generation.ipynb" of the
authors' repository stevewongv/SPANet), restated step by step with its slips, without its 8 processes
(the regions are processed one after another; the result is the same).

Its steps: ``RGB2YCbCr`` = ``np.dot`` of the 4-D video array with the YCbCr matrix, then ``[:, :, 1:] += 128``
(image columns 1.., all channels) and ``astype('uint8')``; Y = channel 0. ``computer_percentile`` splits the
image into 8 regions (columns at W/4*k, rows at H/2, as floats) and runs ``job`` on each: per pixel the
mode of its Y series (bincount argmax), the first and last index of the mode in the sorted series as
``index / len * 100``; then a 0/1 map per pixel and p, of ``int(h2-h1) * int(w2-w1)`` rows, filled for the
first that many pixels. The maps are concatenated, summed per p, and the argmax is the percentile; the image is
``np.percentile(rgb, p, axis=0).astype('uint8')``.

One deliberate change: ``np.dot`` goes to BLAS, whose kernel (chosen per CPU) may fuse or reorder the three
multiply-adds of a pixel, so the notebook's own luma differs between machines in some colours. Here each column
of the product is written out as ``((r * m0) + (g * m1)) + (b * m2)``, element-wise float64, the order that
``notebook_compat`` documents: the same on every machine. And its ``astype('uint8')`` of values above 255 (the
luma + 128) is written out as what it gives on the authors' x86 machine, truncation then wrap-around modulo 256:
C leaves such a cast undefined, and numpy's result may depend on the CPU's vector instructions.
"""

from __future__ import annotations

import numpy as np

YCBCR = np.array([[0.29900, -0.16874, 0.50000], [0.58700, -0.33126, -0.41869], [0.11400, 0.50000, -0.08131]])


def rgb2ycbcr(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    ycbcr = np.stack(
        [(rgb[..., 0] * YCBCR[0, k] + rgb[..., 1] * YCBCR[1, k]) + rgb[..., 2] * YCBCR[2, k] for k in range(3)], axis=-1
    )  # np.dot(rgb, YCBCR), each sum in one fixed order
    ycbcr[:, :, 1:] += 128.0  # on (N, H, W, 3): axis 2 is the image width
    return (np.trunc(ycbcr).astype(np.int64) % 256).astype(np.uint8)  # astype('uint8') as on x86: wraps


def region_maps(y: np.ndarray, region: tuple) -> np.ndarray:
    w1, w2, h1, h2 = region
    lows, highs = [], []
    for h in range(int(h1), int(h2)):
        for w in range(int(w1), int(w2)):
            series = y[:, h, w]
            mode = np.argmax(np.bincount(series))
            index = [i for i, v in enumerate(sorted(series)) if v == mode]
            lows.append(index[0] / len(series) * 100)
            highs.append(index[-1] / len(series) * 100)
    maps = np.zeros((int(h2 - h1) * int(w2 - w1), 101))
    for i in range(int(h2 - h1) * int(w2 - w1)):
        for p in range(0, 101):
            if lows[i] <= p <= highs[i]:
                maps[i, p] = 1
    return maps


def notebook_percentile(y: np.ndarray) -> int:
    _, H, W = y.shape
    regions = [(W / 4 * k, W / 4 * (k + 1), h1, h2) for h1, h2 in ((0, H / 2), (H / 2, H)) for k in range(4)]
    maps = np.concatenate([region_maps(y, r) for r in regions], axis=0)
    return int(np.argmax([np.sum(maps[:, i]) for i in range(0, 101)]))


def notebook_clean_image(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    y = rgb2ycbcr(rgb)[:, :, :, 0]
    p = notebook_percentile(y)
    return np.percentile(rgb, p, axis=0).astype("uint8"), p
