"""DRSformer (Chen et al., CVPR 2023): Restormer's U-Net with top-k sparse attention, a mixed-scale feed-forward
network and a mixture-of-experts feature compensator (MEFC).

"Learning A Sparse Transformer Network for Effective Image Deraining". Written from the paper and the structure
of the authors' ``basicsr/models/archs/DRSformer_arch.py`` (cschenxiang/DRSformer); module and attribute names
follow theirs (including ``layers`` / ``_ops`` inside the MEFC), so their released files (``{'params': state
dict}``) load as they are. The U-Net, layer norm, embedding and resizing are Restormer's
(:mod:`src.models.restormer`); what differs:

* TKSA (top-k sparse attention), :class:`Attention`: Restormer's channel attention scores, then four masked
  softmaxes that keep the top ``int(C/2)``, ``int(2C/3)``, ``int(3C/4)``, ``int(4C/5)`` scores of each row
  (C = channels per head; the others set to -inf), applied to v and summed with four learned scalar weights
  (``attn1..4``, initially 0.2).
* MSFN (mixed-scale feed-forward), :class:`FeedForward`: 1x1 conv to 2 x hidden channels; parallel 3x3 and 5x5
  depthwise convs + ReLU; their first halves concatenated go through a grouped 3x3 conv, their second halves
  through a grouped 5x5 conv (2 input channels per group), + ReLU; 1x1 projection of the concatenation.
* MEFC, :class:`MEFC` (the authors' ``subnet``), between the embedding and the first encoder level
  (``encoder_level0``) and as the refinement stage (instead of Restormer's refinement blocks): a small gate
  (global average pool, linear -> ReLU -> linear) gives softmax weights over 8 operations for each of 4 steps;
  after a 1x1 conv + ReLU, each step computes ``relu(x + relu(conv1x1(cat_i(w_i * op_i(x)))))`` over separable
  convs 1/3/5/7, dilated convs 3/5/7 (dilation 2) and a 3x3 average pool (padding not counted).

The authors train the SPA-Data and Rain200L models WITHOUT the MEFC (their ``DRSformer_arch_200L+SPA.py``):
that network is :class:`src.models.drsformer_spa.DRSformerSPA` (``model=drsformer_spa``). Their ``test.py``
always builds the MEFC file, so their SPA-Data / Rain200L weights need the other file (here: the other model).

Input-size rule of the authors' ``test.py``: reflect-pad right and bottom to the next multiple of 8 only where a
side is not one already, forward, clamp to [0, 1], crop back. This network pads and crops the same way but
does not clamp (the suite clamps when it writes images); edge replication where a side is too small to reflect
(:func:`src.models.restormer.pad_to_multiple`).
Output dict: ``{"out": (B, 3, H, W)}``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.models import restormer
from src.models.restormer import Restormer

#: the modules of the two feature compensators (left out by DRSformerSPA)
MEFC_MODULES = ("encoder_level0.", "refinement.")
#: TKSA keeps these fractions of each row of attention scores, in four branches (int(C * f) scores each)
TOP_K_FRACTIONS = (1 / 2, 2 / 3, 3 / 4, 4 / 5)


class Attention(restormer.Attention):
    """TKSA: channel attention with four top-k masked softmaxes, mixed by learned weights ``attn1..attn4``."""

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__(dim, num_heads, bias)
        for i in range(1, 5):
            setattr(self, f"attn{i}", nn.Parameter(torch.tensor([0.2])))

    def forward(self, x: Tensor) -> Tensor:
        attn, v = self.scores(x)
        c = attn.shape[-1]
        out = 0
        for i, frac in enumerate(TOP_K_FRACTIONS, start=1):
            # the authors' rounding (int(C*2/3), ...) and one topk per branch, so ties are broken as theirs are
            keep = torch.zeros_like(attn, dtype=torch.bool).scatter_(-1, attn.topk(int(c * frac), dim=-1)[1], True)
            out = out + (attn.masked_fill(~keep, float("-inf")).softmax(dim=-1) @ v) * getattr(self, f"attn{i}")
        return self.project_out(out.reshape(x.shape))


class FeedForward(nn.Module):
    """MSFN: two parallel multi-scale depthwise stages (3x3 and 5x5) exchanging halves, see the module doc."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv3x3 = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.dwconv5x5 = nn.Conv2d(hidden * 2, hidden * 2, 5, padding=2, groups=hidden * 2, bias=bias)
        self.dwconv3x3_1 = nn.Conv2d(hidden * 2, hidden, 3, padding=1, groups=hidden, bias=bias)
        self.dwconv5x5_1 = nn.Conv2d(hidden * 2, hidden, 5, padding=2, groups=hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden * 2, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.project_in(x)
        a3, b3 = F.relu(self.dwconv3x3(x)).chunk(2, dim=1)
        a5, b5 = F.relu(self.dwconv5x5(x)).chunk(2, dim=1)
        a = F.relu(self.dwconv3x3_1(torch.cat([a3, a5], dim=1)))
        b = F.relu(self.dwconv5x5_1(torch.cat([b3, b5], dim=1)))
        return self.project_out(torch.cat([a, b], dim=1))


# --- MEFC: mixture-of-experts feature compensator -------------------------------------------------------------
def sep_conv(c: int, k: int) -> nn.Module:
    """Separable conv applied twice: depthwise kxk, 1x1, ReLU, depthwise kxk, 1x1 (no biases)."""
    return _Op(
        nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        nn.ReLU(),
        nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
    )


def dil_conv(c: int, k: int) -> nn.Module:
    """Dilated (2) depthwise kxk conv, then 1x1 (no biases)."""
    return _Op(nn.Conv2d(c, c, k, padding=k - 1, dilation=2, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False))


class _Op(nn.Module):
    """A sequence kept under the attribute name ``op`` (the authors' tensor names: ``..._ops.<j>.op.<k>``)."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.op = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


def expert_ops(c: int) -> list[nn.Module]:
    """The 8 candidate operations of an MEFC step, in the authors' order (their weights are indexed by it)."""
    return [
        sep_conv(c, 1),
        sep_conv(c, 3),
        sep_conv(c, 5),
        sep_conv(c, 7),
        dil_conv(c, 3),
        dil_conv(c, 5),
        dil_conv(c, 7),
        nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    ]


class OperationLayer(nn.Module):
    """One step: ``relu(conv1x1(cat_i(weight_i * op_i(x))))`` with per-image weights (B, 8)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self._ops = nn.ModuleList(expert_ops(c))
        self._out = nn.Sequential(nn.Conv2d(c * len(self._ops), c, 1, bias=False), nn.ReLU())

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        return self._out(torch.cat([op(x) * w.view(-1, 1, 1, 1) for op, w in zip(self._ops, weights.t())], dim=1))


class GroupOLs(nn.Module):
    """1x1 conv + ReLU (``preprocess.op.0``), then ``steps`` residual operation layers: ``relu(x + step(x))``."""

    def __init__(self, steps: int, c: int) -> None:
        super().__init__()
        self.preprocess = _Op(nn.Conv2d(c, c, 1, bias=False), nn.ReLU())
        self._ops = nn.ModuleList([OperationLayer(c) for _ in range(steps)])

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        x = self.preprocess(x)
        for i, step in enumerate(self._ops):
            x = F.relu(step(x, weights[:, i, :]) + x)
        return x


class OALayer(nn.Module):
    """The gate: global average pool, ``ca_fc`` = linear(C, 2 * steps * 8) -> ReLU -> linear(-, steps * 8);
    logits (B, steps, 8)."""

    def __init__(self, channel: int, k: int, num_ops: int) -> None:
        super().__init__()
        self.k, self.num_ops = k, num_ops
        hidden = k * num_ops * 2
        self.ca_fc = nn.Sequential(nn.Linear(channel, hidden), nn.ReLU(), nn.Linear(hidden, k * num_ops))

    def forward(self, x: Tensor) -> Tensor:
        return self.ca_fc(x.mean(dim=(2, 3))).view(-1, self.k, self.num_ops)


class MEFC(nn.Module):
    """Mixture-of-experts feature compensator (the authors' ``subnet``, one gate + one group of 4 steps, kept
    in ``layers`` as [OALayer, GroupOLs])."""

    def __init__(self, dim: int, steps: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList([OALayer(dim, steps, len(expert_ops(1))), GroupOLs(steps, dim)])

    def forward(self, x: Tensor) -> Tensor:
        gate, group = self.layers
        return group(x, gate(x).softmax(dim=-1))


class DRSformer(Restormer):
    """DRSformer with the MEFC (the authors' default file); arguments and defaults as in the authors' class.
    ``mefc=False`` leaves out both compensators (:class:`src.models.drsformer_spa.DRSformerSPA`)."""

    attention = Attention
    feedforward = FeedForward

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",  # noqa: N803
        mefc: bool = True,
    ) -> None:
        super().__init__(
            inp_channels, out_channels, dim, num_blocks, 0, heads, ffn_expansion_factor, bias, LayerNorm_type
        )
        self.mefc = mefc
        if mefc:
            self.encoder_level0 = MEFC(dim)
            self.refinement = MEFC(dim * 2)

    def embed(self, x: Tensor) -> Tensor:
        emb = self.patch_embed(x)
        return self.encoder_level0(emb) if self.mefc else emb

    def missing_weights_hint(self, missing: Sequence[str]) -> Optional[str]:
        """What a weights file that lacks only ``missing`` most likely is (see :mod:`src.utils.checkpoint`)."""
        if self.mefc and all(k.startswith(MEFC_MODULES) for k in missing):
            return (
                "this looks like the authors' SPA-Data or Rain200L weights, trained without MEFC: use "
                "model=drsformer_spa"
            )
        return None
