"""SPANet's memory-lean inference: the same numbers as :meth:`src.models.spanet.SPANet.forward`, in far less memory.

:class:`~src.models.spanet.SPANet` uses this path under ``torch.inference_mode`` (no autograd graph can need
the intermediate maps). Autograd's forward keeps every intermediate map alive, and builds the SAM's 128-channel
concatenation of four IRNN directions; this path holds at most three full-size C-channel maps:

* ``trunk``: the features. Every residual block, and the input convolution, is computed in row bands
  (:mod:`src.ops.bands`) and written back into the same map, so a block allocates one band at a time;
* ``f``: the SAM's input convolution, then (written over it, band by band) the output of its first IRNN round;
* ``up``: the one IRNN direction that must run bottom to top over the whole image before the bands can go top
  to bottom (weighted by its direction weight as it is written).

In each band of a SAM round the other three directions are computed from the band alone (``down`` continues from
the state the previous band left, :func:`src.models.irnn.irnn_sweep`), weighted, and fed to the 3x3 convolution
that mixes the four directions: the 128-channel map exists one band at a time. The direction weights
(4 channels) and the attention maps (1 channel each) are full-size.

Per pixel that is 3 x 4C bytes of float32 maps plus 4 x (4 + 4) bytes (attention maps, direction weights) plus
the input and output images: about 440 bytes for C = 32 (README, "Performance", has measurements). Bands are the
only other allocations, and are recycled by the C library's heap instead of being faulted in fresh from the kernel
(:func:`src.ops.heap.keep_freed_memory` sets the heap's thresholds for that). Numbers: the convolutions see the
same inputs in the same order, so results equal autograd's forward up to the convolution library's float rounding
(tests: 1e-6).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from src.models.irnn import DOWN, IRNN, LEFT, RIGHT, UP, irnn_horizontal, irnn_vertical
from src.ops.bands import Band, band_rows, conv, empty_map, stream
from src.ops.heap import keep_freed_memory

#: Bytes of one band of the SAM's 4C-channel concatenation (CPU: the band stays in the last-level cache).
BAND_BYTES = {"cpu": 8 << 20, "cuda": 128 << 20}


def forward_lean(net, x: Tensor) -> dict:
    """``net`` (a :class:`~src.models.spanet.SPANet`) on x (B, 3, H, W), one image at a time, no autograd."""
    if x.device.type == "cpu":
        keep_freed_memory()  # bands are recycled by the heap, not faulted in fresh (src/ops/heap.py)
    results = [_forward_one(net, x[i : i + 1]) for i in range(x.shape[0])]
    out, maps = results[0]
    if len(results) > 1:
        out = torch.cat([r[0] for r in results])
        maps = [torch.cat([r[1][k] for r in results]) for k in range(len(maps))]
    return {"out": out, "att": maps, "vis": {"attention": maps[0]} if maps else {}}


def _forward_one(net, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    channels = net.conv_in.out_channels
    x = x.contiguous()
    rows = band_rows(x.shape[3], 4 * channels, x.element_size(), BAND_BYTES.get(x.device.type, BAND_BYTES["cuda"]))
    trunk = empty_map(x, channels)
    stream(x, trunk, lambda band: _relu(conv(band, net.conv_in)), 1, rows)
    for block in net.pre_blocks:
        _block(block, trunk, None, rows)

    work: dict = {}  # the SAMs' full-size maps, allocated at the first SAM and reused
    maps: list[Tensor] = []
    attention: Optional[Tensor] = None
    for k, sab in enumerate(net.sabs):
        if (sam := net.sam_before(k)) is not None:
            attention = _sam(sam, trunk, work, rows)
            maps.append(attention)
        for block in sab.blocks:
            _block(block, trunk, attention, rows)
    work.clear()
    for block in net.post_blocks:
        _block(block, trunk, None, rows)
    out = empty_map(x, 3)
    stream(trunk, out, lambda band: conv(band, net.conv_out), 1, rows)
    del trunk
    return out, maps


def _block(block, trunk: Tensor, attention: Optional[Tensor], rows: int) -> None:
    """A residual block in place: trunk = relu(body(trunk) [* attention] + trunk)."""
    body = block.body

    def fn(band: Band) -> Band:
        t = conv(_relu(conv(_relu(conv(band, body.conv1)), body.conv2)), body.conv3)
        res = t.t
        if attention is not None:
            res.mul_(attention[:, :, t.top : t.bottom])
        return t.like(res.add_(band.rows(t.top, t.bottom)).relu_())

    stream(trunk, trunk, fn, body.conv2.padding[0], rows)


def _sam(sam, trunk: Tensor, work: dict, rows: int) -> Tensor:
    """The SAM's attention map (1, 1, H, W) of the features ``trunk``."""
    if not work:
        work["f"], work["up"] = empty_map(trunk, trunk.shape[1]), empty_map(trunk, trunk.shape[1])
    weights = None
    if sam.attention_layer is not None:
        layers = sam.attention_layer
        weights = work.setdefault("weights", empty_map(trunk, 4))

        def directions(band: Band) -> Band:
            t = conv(_relu(conv(_relu(conv(band, layers.conv1)), layers.conv2)), layers.conv3)
            return t.like(t.t.sigmoid_())

        stream(trunk, weights, directions, 2, rows)
    f = work["f"]
    stream(trunk, f, lambda band: conv(band, sam.conv_in), 1, rows)
    _irnn_round(sam.irnn1, f, f, work["up"], weights, lambda band: conv(band, sam.conv2), rows)
    mask = empty_map(trunk, 1)

    def head(band: Band) -> Band:
        t = conv(_relu(conv(band, sam.conv3)), sam.conv_out)
        return t.like(t.t.sigmoid_())

    _irnn_round(sam.irnn2, f, mask, work["up"], weights, head, rows)
    return mask


def _relu(band: Band) -> Band:
    return band.like(band.t.relu_())


def _irnn_round(irnn: IRNN, src: Tensor, dst: Tensor, up: Tensor, weights: Optional[Tensor], mix, rows: int) -> None:
    """dst = mix(concat of the four weighted IRNN directions of src), band by band (dst may be src).

    ``mix`` is the 3x3 convolution over the 4C channels (and what follows it); ``up`` receives the up direction
    of the whole image first. ``down`` is carried from band to band: each band keeps its state at the row before
    the next band's first row."""
    c, halo = src.shape[1], 1  # the halo of the 3x3 mixing convolution
    w, b, border = irnn.weight, irnn.bias, irnn.border
    scale = [None if weights is None else weights[0, d] for d in range(4)]  # (H, W) views
    irnn_vertical(src[0], UP, w[UP], b[UP], up[0], scale[UP], border=border)
    state: dict = {"down": None}

    def fn(band: Band) -> Band:
        a, n = band.top, band.t.shape[2]
        z = torch.empty((4, c, n, band.t.shape[3]), dtype=src.dtype, device=src.device)  # directions x C
        x, s = band.t[0], [None if t is None else t[a : a + n] for t in scale]
        z[UP] = up[0, :, a : a + n]
        irnn_horizontal(x, w, b, z[RIGHT], z[LEFT], s[RIGHT], s[LEFT], border=border)
        last = band.want[1] == band.height  # else the next band starts at want[1] - halo
        kept = None if last else torch.empty_like(x[:, 0])
        irnn_vertical(
            x,
            DOWN,
            w[DOWN],
            b[DOWN],
            z[DOWN],
            s[DOWN],
            init=state["down"],
            final=kept,
            final_row=band.want[1] - halo - 1 - a,
            border=border,
        )
        state["down"] = kept
        return mix(band.like(z.view(1, 4 * c, n, -1)))

    stream(src, dst, fn, halo, rows)


__all__ = ["forward_lean", "BAND_BYTES"]
