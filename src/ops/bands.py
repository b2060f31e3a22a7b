"""Row bands: run a chain of local layers over an image a few rows at a time, into a preallocated map.

A network of convolutions needs, for output rows [r0, r1), only the input rows [r0 - halo, r1 + halo). Running a
layer band by band bounds what it allocates to one band (a few MB, which the C library's heap recycles: no fresh
pages to fault in) and writes its result into a map allocated once, which may even be the input map itself
(:func:`stream` keeps aside the rows a later band still needs before overwriting them).

Zero padding stays exact: :func:`conv` keeps the rows that the convolution's zero padding reached only where the
band touches the image's top or bottom edge, and otherwise uses up the halo rows (a band shrinks by the padding
of each convolution it passes through). A band is a view of its rows (or, in place, a copy), so a layer sees
exactly the values, in the same memory layout, that it would see on the whole image; the convolution library then
computes the same sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Band:
    """Rows [top, top + t.shape[2]) of an image ``height`` rows tall; ``t`` is (1, C, rows, W). ``want``: the rows
    [r0, r1) that the band function of :func:`stream` computes from it."""

    t: Tensor
    top: int
    height: int
    want: tuple[int, int] = (0, 0)

    @property
    def bottom(self) -> int:
        return self.top + self.t.shape[2]

    def rows(self, a: int, b: int) -> Tensor:
        """Image rows [a, b) of the band."""
        return self.t[:, :, a - self.top : b - self.top]

    def like(self, t: Tensor) -> Band:
        """Another tensor over the same rows (an element-wise result)."""
        return Band(t, self.top, self.height, self.want)


def conv(band: Band, layer: nn.Conv2d) -> Band:
    """``layer`` (stride 1, 'same' zero padding) on a band. Inside the image the band's halo rows replace the
    padding (the band shrinks by it); a band touching the image's top or bottom edge is padded as the whole image
    is, and the padded rows on its other side are dropped. Either way the rows that remain equal the whole
    image's result."""
    ph, pw = layer.padding
    if layer.kernel_size == (1, 1) and layer.stride == (1, 1) and layer.groups == 1 and _rows_contiguous(band.t):
        return band.like(_pointwise(band.t, layer))
    at_edge = band.top == 0 or band.bottom == band.height
    y = F.conv2d(band.t, layer.weight, layer.bias, padding=(ph if at_edge else 0, pw), dilation=layer.dilation)
    if not at_edge:
        return Band(y, band.top + ph, band.height, band.want)
    start = 0 if band.top == 0 else ph
    end = y.shape[2] if band.bottom == band.height else y.shape[2] - ph
    return Band(y[:, :, start:end], band.top + start, band.height, band.want)


def _pointwise(x: Tensor, layer: nn.Conv2d) -> Tensor:
    """A 1x1 convolution of a band as one matrix product that reads the band where it lies.

    A band is a view of rows of a larger (1, C, H, W) map: each channel's rows are contiguous, channels H x W
    apart, i.e. a (C x pixels) matrix with leading dimension H x W, which the matrix product takes as it is.
    PyTorch's own single-threaded 1x1 convolution (unfold and multiply) first copies such a view; the product
    is the same (tests: equal to conv2d)."""
    _, c, n, w = x.shape
    flat = x[0].view(c, n * w)
    weight = layer.weight.view(layer.out_channels, c)
    y = weight @ flat if layer.bias is None else torch.addmm(layer.bias[:, None], weight, flat)
    return y.view(1, -1, n, w)


def _rows_contiguous(x: Tensor) -> bool:
    """Whether ``x`` (1, C, n, W) is a CPU band whose channels are contiguous runs of n x W values."""
    return x.device.type == "cpu" and x.shape[0] == 1 and x.stride()[2:] == (x.shape[3], 1)


def empty_map(like: Tensor, channels: int) -> Tensor:
    """An uninitialised (1, channels, H, W) map of ``like``'s size, dtype and device."""
    _, _, h, w = like.shape
    return torch.empty((1, channels, h, w), dtype=like.dtype, device=like.device)


def band_rows(width: int, channels: int, element_size: int, target_bytes: int) -> int:
    """Rows per band so that one band of ``channels`` channels takes about ``target_bytes`` (at least 8 rows)."""
    return max(8, target_bytes // max(1, width * channels * element_size))


def stream(src: Tensor, dst: Tensor, fn: Callable[[Band], Band], halo: int, rows: int) -> None:
    """``dst[..., r0:r1, :] = fn(band of src rows [r0 - halo, r1 + halo))`` for bands of ``rows`` rows, top to
    bottom (bands are clipped to the image). ``fn`` returns a band covering rows [r0, r1) (more rows where its
    input band reached the image's edge). ``dst`` may be ``src``."""
    height = src.shape[2]
    in_place = dst.data_ptr() == src.data_ptr()
    kept = None  # src rows [r0 - halo, r0) as they were before this pass overwrote them
    for r0 in range(0, height, rows):
        r1 = min(r0 + rows, height)
        a, b = max(r0 - halo, 0), min(r1 + halo, height)
        t = torch.cat([kept, src[:, :, r0:b]], 2) if kept is not None else src[:, :, a:b]
        out = fn(Band(t, a, height, (r0, r1)))
        if out.top > r0 or out.bottom < r1:
            raise RuntimeError(f"band function returned rows [{out.top}, {out.bottom}), expected [{r0}, {r1})")
        if in_place and halo and r1 < height:
            kept = src[:, :, max(r1 - halo, 0) : r1].clone()
        dst[:, :, r0:r1] = out.rows(r0, r1)
