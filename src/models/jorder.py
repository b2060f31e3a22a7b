"""JORDER-E, Yang et al., "Joint rain detection and removal from a single image with contextualized deep
networks" (TPAMI 2019), the official PyTorch successor of JORDER (CVPR 2017), as in the authors' code
(src/model/jorder_e.py; docs/models.md).

Image convention: ``forward(x)`` takes ``x`` of shape (B, 3, H, W), RGB, values in [0, 1], any H, W >= 1.
The official network works on the 0-255 scale (``rgb_range = 255``, no mean shift),
so the input is multiplied by ``rgb_range`` inside and every image-valued output (``out``, ``stages``,
``levels``) is divided by it again: all returned images are on the [0, 1] scale, ``out`` not clamped.

Structure: two stages with separate weights, width 64, every conv 3x3 with bias::

    stage k input: cat(x, x) (k = 1) or cat(x, stage-1 output) (k = 2) -> encoder conv 6->64 -> F
    9 residual blocks: F = F + relu(c2(relu(c1 F)))                  dilation 1, 1
                             + 0.1 relu(c4(relu(c3 F)))             dilation 2, 2
                             + 0.1 relu(c6(relu(c5 F)))             dilation 2, 4
                             (+ the same-index block output of stage 1, in stage 2)
    mask  = conv 8->2 (conv 64->8 (F))   2-class rain-mask logits   (stage 2: + stage-1 mask)
    level = conv 8->3 (conv 64->8 (F))   rain level, predicts clean - rain   (stage 2: + stage-1 level)
    F = [b_mask(mask) + F + b_level(level)] + [w_mask(mask) * F * w_level(level)]
        each b/w encoder is conv(2|3 -> 16) -> ReLU -> conv(16 -> 64); the last conv of each w encoder starts
        at weight 0, bias 1
    stage output = conv 64->3 (conv 64->64 (F)) + x          (no activation between the two decoder convs)

4,169,024 parameters. The official loss uses the stage-2 mask and level only; both stages' are returned.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _conv(cin: int, cout: int, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)


class ResBlock(nn.Module):
    """Three parallel two-conv paths with dilations (1, 1), (2, 2), (2, 4), the wider two scaled by 0.1."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.paths = nn.ModuleList(
            nn.Sequential(_conv(channels, channels, d1), nn.ReLU(), _conv(channels, channels, d2), nn.ReLU())
            for d1, d2 in ((1, 1), (2, 2), (2, 4))
        )

    def forward(self, x: Tensor) -> Tensor:
        p1, p2, p3 = (p(x) for p in self.paths)
        return x + p1 + 0.1 * p2 + 0.1 * p3


def _encoder(cin: int, channels: int) -> nn.Sequential:
    """conv(cin -> 16) -> ReLU -> conv(16 -> channels): maps a mask or level map to a feature modulation."""
    return nn.Sequential(_conv(cin, 16), nn.ReLU(), _conv(16, channels))


class JORDERStage(nn.Module):
    """One stage. ``forward(x, prev)`` with x the rainy input and ``prev`` None (stage 1) or the previous
    stage's dict; returns {"out", "feats" (9 block outputs), "mask" (B,2,H,W logits), "level" (B,3,H,W)},
    all on the network's internal (0-255) scale."""

    def __init__(self, channels: int = 64, num_blocks: int = 9) -> None:
        super().__init__()
        self.encoder = _conv(6, channels)
        self.blocks = nn.ModuleList(ResBlock(channels) for _ in range(num_blocks))
        self.mask_head = nn.Sequential(_conv(channels, 8), _conv(8, 2))
        self.level_head = nn.Sequential(_conv(channels, 8), _conv(8, 3))
        self.mask_w, self.mask_b = _encoder(2, channels), _encoder(2, channels)
        self.level_w, self.level_b = _encoder(3, channels), _encoder(3, channels)
        for enc in (self.mask_w, self.level_w):  # multiplicative modulation starts as the identity
            nn.init.zeros_(enc[-1].weight)
            nn.init.ones_(enc[-1].bias)
        self.decoder = nn.Sequential(_conv(channels, channels), _conv(channels, 3))

    def forward(self, x: Tensor, prev: dict | None = None) -> dict:
        f = self.encoder(torch.cat([x, x if prev is None else prev["out"]], dim=1))
        feats = []
        for i, block in enumerate(self.blocks):
            f = block(f) if prev is None else block(f) + prev["feats"][i]
            feats.append(f)
        mask, level = self.mask_head(f), self.level_head(f)
        if prev is not None:
            mask, level = mask + prev["mask"], level + prev["level"]
        f = (self.mask_b(mask) + f + self.level_b(level)) + self.mask_w(mask) * f * self.level_w(level)
        return {"out": self.decoder(f) + x, "feats": feats, "mask": mask, "level": level}


class JORDERE(nn.Module):
    """Two-stage JORDER-E. See the module docstring for the structure.

    Args:
        channels: feature width (64).
        num_blocks: residual blocks per stage (9).
        rgb_range: the value range the network works in (255 as in the official code).

    ``forward(x)`` returns::

        out          (B, 3, H, W) stage-2 output, [0, 1] scale
        stages       [stage-1 output, stage-2 output], [0, 1] scale
        mask_logits  [stage-1, stage-2] (B, 2, H, W) rain-mask logits (class 1 = rain)
        levels       [stage-1, stage-2] (B, 3, H, W) predicted rain level clean - rain, [0, 1] scale
        vis          {"rain_mask": P(rain) of stage 2 (B, 1, H, W), "stage1": stage-1 output clamped}
    """

    uses_label: bool = False

    def __init__(self, channels: int = 64, num_blocks: int = 9, rgb_range: float = 255.0) -> None:
        super().__init__()
        if rgb_range <= 0:
            raise ValueError(f"model.net.rgb_range must be > 0, got {rgb_range}")
        self.rgb_range = float(rgb_range)
        self.stage1 = JORDERStage(channels, num_blocks)
        self.stage2 = JORDERStage(channels, num_blocks)

    def forward(self, x: Tensor) -> dict:
        xs = x * self.rgb_range
        s1 = self.stage1(xs)
        s2 = self.stage2(xs, s1)
        r = self.rgb_range
        stages = [s1["out"] / r, s2["out"] / r]
        vis = {"rain_mask": s2["mask"].softmax(dim=1)[:, 1:2], "stage1": stages[0].clamp(0, 1)}
        return {
            "out": stages[-1],
            "stages": stages,
            "mask_logits": [s1["mask"], s2["mask"]],
            "levels": [s1["level"] / r, s2["level"] / r],
            "vis": vis,
        }
