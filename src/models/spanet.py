"""SPANet (Wang et al., CVPR 2019) and its Table-4 ablations B_a..B_f as flags of one class.

Image convention: ``forward(x)`` takes ``x`` of shape (B, 3, H, W), RGB, values in [0, 1], and predicts the
clean image directly (no global skip from the input, no clamp). Any H, W >= 1 work.

Structure (docs/models.md; width C = 32, no normalisation layers)::

    conv_in 3x3 (3->C, no bias) -> ReLU
    3 RBs                                      pre_blocks
    4 SABs: A = SAM(features); 3 SARBs use A   sabs, sams
    2 RBs                                      post_blocks
    conv_out 3x3 (C->3, no bias)

An RB computes ``relu(body(x) + x)``, a SARB ``relu(body(x) * A + x)`` with the same bottleneck body
(1x1 -> ReLU -> 3x3 dilation 2 -> ReLU -> 1x1, no biases) and A a (B, 1, H, W) attention map.

Variants (paper Table 4). The attention-loss column (B_e) belongs to the loss config
(:class:`src.losses.spanet.SPANetLoss`), not to the network:

=======  ===========  ===================  ======================================================
variant  sam_mode     direction_attention  meaning
=======  ===========  ===================  ======================================================
b_a      none         False                17 plain RBs, no SAM (SARBs become RBs)
b_b      single       True                 one SAM evaluated once; its map reused by all 4 SABs
b_c      independent  True                 4 SAMs with their own weights
b_d      shared       False                one SAM recomputed per SAB; no direction weights
b_e      shared       True                 as b_f (trained without attention loss)
b_f      shared       True                 SPANet as in the paper (alias ``spanet``)
=======  ===========  ===================  ======================================================

The authors' release computes the direction weights but throws them away, so it behaves like b_d; see
:mod:`src.models.spanet_release` for converting its weights.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.models.irnn import IRNN

SAM_MODES = ("none", "single", "independent", "shared")

#: Table-4 presets: variant name -> (sam_mode, direction_attention).
VARIANTS: dict[str, tuple[str, bool]] = {
    "b_a": ("none", False),
    "b_b": ("single", True),
    "b_c": ("independent", True),
    "b_d": ("shared", False),
    "b_e": ("shared", True),
    "b_f": ("shared", True),
    "spanet": ("shared", True),
}


def _conv(cin: int, cout: int, k: int, bias: bool = False, dilation: int = 1) -> nn.Conv2d:
    """k x k convolution that keeps the spatial size (stride 1, 'same' zero padding)."""
    return nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, bias=bias)


class ResidualBlock(nn.Module):
    """RB (``attention is None``): ``relu(body(x) + x)``; SARB: ``relu(body(x) * attention + x)``.

    ``body`` is the bottleneck 1x1 -> ReLU -> 3x3 (dilation 2) -> ReLU -> 1x1, all without bias and with no
    activation after the last conv. x: (B, C, H, W); attention: (B, 1, H, W) broadcast over channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            OrderedDict(
                conv1=_conv(channels, channels, 1),
                relu1=nn.ReLU(),
                conv2=_conv(channels, channels, 3, dilation=2),
                relu2=nn.ReLU(),
                conv3=_conv(channels, channels, 1),
            )
        )

    def forward(self, x: Tensor, attention: Optional[Tensor] = None) -> Tensor:
        residual = self.body(x)
        if attention is not None:
            residual = residual * attention
        return F.relu(residual + x)


class SAB(nn.Module):
    """Spatial attentive block: ``num_blocks`` SARBs that all use the same attention map.

    The SAM that produces the map is owned by :class:`SPANet` (it may be shared between SABs).
    With ``attention=None`` (variant b_a) the SARBs act as plain RBs.
    """

    def __init__(self, channels: int, num_blocks: int = 3) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResidualBlock(channels) for _ in range(num_blocks))

    def forward(self, x: Tensor, attention: Optional[Tensor]) -> Tensor:
        for block in self.blocks:
            x = block(x, attention)
        return x


class SAM(nn.Module):
    """Spatial attentive module: features (B, C, H, W) -> attention map (B, 1, H, W) in (0, 1).

    ``f = conv_in(x)``; two rounds of [four-direction IRNN -> (optional) per-pixel direction weights ->
    concat (up, right, down, left) -> 3x3 conv 4C->C]; ReLU after the second round; ``sigmoid(conv_out)``.
    With ``direction_attention`` an extra branch (3x3 C->C/2, ReLU, 3x3 C/2->C/2, ReLU, 1x1 C/2->4, sigmoid;
    all with bias) computes one weight map per direction from ``x``; it weights both IRNN outputs.
    """

    def __init__(
        self,
        channels: int = 32,
        direction_attention: bool = True,
        irnn_init: str = "release",
        irnn_init_weight: Optional[float] = None,
        irnn_border: str = "relu",
        irnn_backend: str = "auto",
    ) -> None:
        super().__init__()
        half = channels // 2
        self.attention_layer: Optional[nn.Sequential] = None
        if direction_attention:
            self.attention_layer = nn.Sequential(
                OrderedDict(
                    conv1=_conv(channels, half, 3, bias=True),
                    relu1=nn.ReLU(),
                    conv2=_conv(half, half, 3, bias=True),
                    relu2=nn.ReLU(),
                    conv3=_conv(half, 4, 1, bias=True),
                    sigmoid=nn.Sigmoid(),
                )
            )
        self.conv_in = _conv(channels, channels, 3)
        irnn_kw = dict(init=irnn_init, init_weight=irnn_init_weight, border=irnn_border, backend=irnn_backend)
        self.irnn1 = IRNN(channels, **irnn_kw)
        self.conv2 = _conv(4 * channels, channels, 3)
        self.irnn2 = IRNN(channels, **irnn_kw)
        self.conv3 = _conv(4 * channels, channels, 3)
        self.conv_out = _conv(channels, 1, 1)

    @staticmethod
    def _merge(directions: Tensor, weights: Optional[Tensor]) -> Tensor:
        """(B, 4, C, H, W) IRNN outputs [* (B, 4, H, W) weights] -> (B, 4C, H, W), directions concatenated."""
        if weights is not None:
            directions = directions * weights.unsqueeze(2)
        b, d, c, h, w = directions.shape
        return directions.reshape(b, d * c, h, w)

    def forward(self, x: Tensor) -> Tensor:
        weights = self.attention_layer(x) if self.attention_layer is not None else None
        out = self.conv2(self._merge(self.irnn1(self.conv_in(x)), weights))
        out = F.relu(self.conv3(self._merge(self.irnn2(out), weights)))
        return torch.sigmoid(self.conv_out(out))


class SPANet(nn.Module):
    """SPANet family. ``variant`` picks a Table-4 preset; ``sam_mode`` / ``direction_attention`` override it.

    Args:
        variant: one of ``b_a`` .. ``b_f`` or ``spanet`` (= ``b_f``), see the module docstring.
        sam_mode: ``none`` | ``single`` | ``independent`` | ``shared`` (None: from ``variant``).
        direction_attention: whether each SAM has the direction-weight branch (None: from ``variant``).
        channels: feature width (32 in the paper).
        irnn_init: IRNN initialisation, ``release`` (the authors' code: weight 0.2, bias
            U(-1/sqrt(C), 1/sqrt(C)) as PyTorch 0.4.1 drew it), ``conv_default`` (the code that trained the
            released checkpoint: weight and bias both U(-1/sqrt(C), 1/sqrt(C))) or ``identity`` (Le et al.'s
            IRNN, which the paper cites: weight 1, bias 0); see :class:`src.models.irnn.IRNN`.
        irnn_init_weight: a constant initial recurrent weight replacing the scheme's (None: the scheme's).
        irnn_border: first element of each IRNN sweep, ``relu`` (h_0 = relu(x_0), the release code) or
            ``identity`` (h_0 = x_0, the code that trained the released checkpoint).
        irnn_backend: passed to :class:`src.models.irnn.IRNN`.

    ``forward(x)`` with x (B, 3, H, W) RGB in [0, 1] returns::

        {"out": (B, 3, H, W) derained RGB, unclamped,
         "att": [A_1, ...] SAM maps (B, 1, H, W) in evaluation order (empty for b_a; one map for b_b),
         "vis": {"attention": A_1}  (empty for b_a)}

    Only ``att[0]`` is supervised by the attention loss.
    """

    uses_label: bool = False
    #: under torch.inference_mode, run :mod:`src.models.spanet_lean` (same numbers, about a third of the memory)
    lean_inference: bool = True

    num_pre_blocks = 3
    num_sabs = 4
    blocks_per_sab = 3
    num_post_blocks = 2

    def __init__(
        self,
        variant: str = "b_f",
        sam_mode: Optional[str] = None,
        direction_attention: Optional[bool] = None,
        channels: int = 32,
        irnn_init: str = "release",
        irnn_init_weight: Optional[float] = None,
        irnn_border: str = "relu",
        irnn_backend: str = "auto",
    ) -> None:
        super().__init__()
        key = str(variant).lower()
        if key not in VARIANTS:
            raise ValueError(
                f"model.net.variant: unknown SPANet variant {variant!r}; expected one of {sorted(VARIANTS)}"
            )
        preset_mode, preset_attention = VARIANTS[key]
        sam_mode = preset_mode if sam_mode is None else str(sam_mode).lower()
        if sam_mode not in SAM_MODES:
            raise ValueError(f"model.net.sam_mode: {sam_mode!r} is not one of {SAM_MODES}")
        if sam_mode == "none" and direction_attention:
            raise ValueError("model.net.direction_attention: must be false when sam_mode is 'none' (there is no SAM)")
        if direction_attention is None:
            direction_attention = preset_attention and sam_mode != "none"
        direction_attention = bool(direction_attention)
        if channels < 2 or channels % 2:
            raise ValueError(f"model.net.channels: must be an even number >= 2, got {channels}")

        self.variant = key
        self.sam_mode = sam_mode
        self.direction_attention = direction_attention

        self.conv_in = _conv(3, channels, 3)
        self.pre_blocks = nn.ModuleList(ResidualBlock(channels) for _ in range(self.num_pre_blocks))
        self.sabs = nn.ModuleList(SAB(channels, self.blocks_per_sab) for _ in range(self.num_sabs))
        self.post_blocks = nn.ModuleList(ResidualBlock(channels) for _ in range(self.num_post_blocks))
        self.conv_out = _conv(channels, 3, 3)

        num_sams = {"none": 0, "single": 1, "shared": 1, "independent": self.num_sabs}[sam_mode]
        self.sams = nn.ModuleList(
            SAM(channels, direction_attention, irnn_init, irnn_init_weight, irnn_border, irnn_backend)
            for _ in range(num_sams)
        )

    def forward(self, x: Tensor) -> dict:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"SPANet expects input of shape (B, 3, H, W), got {tuple(x.shape)}")
        if self.uses_lean_path(x):
            from src.models.spanet_lean import forward_lean

            return forward_lean(self, x)
        out = F.relu(self.conv_in(x))
        for block in self.pre_blocks:
            out = block(out)

        maps: list[Tensor] = []
        attention: Optional[Tensor] = None
        for k, sab in enumerate(self.sabs):
            if (sam := self.sam_before(k)) is not None:
                attention = sam(out)
                maps.append(attention)
            out = sab(out, attention)  # 'single' reuses the first map; 'none' keeps attention None

        for block in self.post_blocks:
            out = block(out)
        out = self.conv_out(out)
        return {"out": out, "att": maps, "vis": {"attention": maps[0]} if maps else {}}

    def sam_before(self, k: int) -> Optional[SAM]:
        """The SAM evaluated before SAB ``k`` (None: SAB k reuses the previous map, or has none)."""
        if self.sam_mode in ("shared", "independent") or (self.sam_mode == "single" and k == 0):
            return self.sams[k if self.sam_mode == "independent" else 0]
        return None

    def uses_lean_path(self, x: Tensor) -> bool:
        """Whether ``forward(x)`` runs the memory-lean inference path (:mod:`src.models.spanet_lean`): under
        ``torch.inference_mode`` (no autograd graph), outside autocast, not compiled (``net.compile()``, whose
        frames can run eagerly when dynamo gives up on them) nor being traced by ``torch.compile``, with the
        weights in the default (NCHW) memory format, unless ``lean_inference`` is False."""
        return (
            self.lean_inference
            and torch.is_inference_mode_enabled()
            and x.numel() > 0
            and not torch.is_autocast_enabled(x.device.type)
            and not torch.compiler.is_compiling()
            and getattr(self, "_compiled_call_impl", None) is None
            and self.conv_out.weight.is_contiguous()
        )

    # --- the authors' released weights (src/models/spanet_release.py) --------------------------------
    @staticmethod
    def is_release_state_dict(state_dict: dict) -> bool:
        """Whether a state dict uses the authors' names (``conv_in.0.weight``, ``res_block*``, ``SAM1.*``)."""
        from src.models.spanet_release import is_release_state_dict

        return is_release_state_dict(state_dict)

    def convert_release_state_dict(self, state_dict: dict) -> dict:
        """The authors' state dict in this network's names and RGB order, checked strictly (ValueError)."""
        from src.models.spanet_release import convert_release_state_dict

        return convert_release_state_dict(state_dict, self)
