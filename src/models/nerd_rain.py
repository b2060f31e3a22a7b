"""NeRD-Rain (Chen et al., CVPR 2024): three coupled transformer U-Nets at 1/4, 1/2 and full resolution with
implicit neural representations passing the coarse results up.

"Bidirectional Multi-Scale Implicit Neural Representations for Image Deraining". Written from the paper and the
structure of the authors' ``model.py`` / ``mlp.py`` (cschenxiang/NeRD-Rain, class ``MultiscaleNet``; their
``model_S.py`` is the same class with ``dim`` 32, NeRD-Rain-S). Module names follow theirs; their files
(``{'epoch', 'state_dict', 'optimizer'}``, ``module.`` prefixes) are converted by
:meth:`NeRDRain.convert_release_state_dict` (two differences, below).

Structure (``dim`` C, ``num_blocks`` (n1, n2, n3), ``heads``). Each U-Net: a 3x3 embedding (first pass only),
an encoder of n1 blocks at C channels, n2 at 2C, a latent of n3 blocks at 4C (two pixel-unshuffle
downsamplings), a decoder of n2 and n1 blocks with skips (1x1 reductions). ``up2`` / ``half``: nearest
resizing; ``up4``: two pixel-shuffle upsamplings::

    x_s = x at 1/4, x_m = x at 1/2 (nearest)
    small encoder on x_s -> latent L_s;  inr_s = INR(up4(L_s)) + x_s
    m = x_m + up2(inr_s); mid encoder on m -> L_m1;  inr_m = INR2(up4(L_m1)) + m
    max U-Net on x + up2(inr_m), 3 passes (decoder -> 3x3 "context" conv -> next encoder): L_x1, L_x2, L_x3
    mid: decode(L_m1 + half(BF1(L_x1, L_x2))) -> context -> 2nd encoder -> L_m2
    small: d_s = decode(L_s + half(BF3(L_m1, L_m2)));              out_s = conv(d_s) + x_s
    mid:   d_m = decode(L_m2 + half(BF2(L_x2, L_x3))) + up2(d_s);  out_m = conv(d_m) + x_m
    max:   d_x = decode(L_x3) + up2(d_m);                          out = conv(d_x) + x

The authors built NeRD-Rain on Restormer's blocks, and so does this module: the transformer block (channel
attention MDTA + gated feed-forward GDFN, layer norm over channels), the 3x3 embedding, the pixel-(un)shuffle
resizing and the padding come from :mod:`src.models.restormer` (same computation, same tensor names); what is
NeRD-Rain's own (the three coupled U-Nets, BF, INR, the windows) is here. BF is
the bidirectional fusion ``x g1[0] + a_x g1[1] + y g2[0] + a_y g2[1]`` with ``a = sigmoid(q(x) k(y))`` times each
input and 3x3 convs g1, g2 of each input and its attended copy. INR is an MLP (``hidden_list``, ReLU) on each
pixel's 3x3 feature neighbourhood (LIIF-style: ``9 C`` features + relative coordinate with ``L`` sine/cosine
frequencies + cell size).

Output dict (the authors' forward returns a list; their indices in brackets)::

    "out"     (B, 3, H, W)        the full-resolution output [0], the one their test script keeps
    "scales"  [out, out_m, out_s] the three outputs at 1, 1/2, 1/4 resolution [0, 1, 2]
    "inr"     [inr_m, inr_s]      the implicit-representation outputs at 1/2 and 1/4 [3, 5]

The training loss (:class:`src.losses.nerd_rain.NeRDRainLoss`) reads all of them; with windows (below) only
``"out"`` is returned.

Input-size rule. The network needs sides that are multiples of 16 (the 1/4-scale U-Net downsamples twice more).
Their ``train.py`` feeds 256x256 patches as they are; their ``test.py`` cuts the image into ``win_size`` windows
(default 256; ``window_partitionx``): a grid of whole windows from the top left, plus windows flush with the right
and bottom border (and the corner) for the remainder, of which only the remainder is kept; the network runs on
all windows as one batch; their script then clamps to [0, 1] (this network does not). Here:

* in eval mode with ``win_size`` set, the same windows (equal to their script wherever it runs). Along a side
  shorter than a window (their script fails there) the window is the whole side. A window side that is not a
  multiple of 16 is reflect-padded at the bottom / right (edge replication where too small to reflect) and
  the output cropped back;
* in training mode, or with ``win_size`` null: the whole input at once, padded the same way (a no-op for their
  256 patches); the 1/2 and 1/4 outputs are cropped to ``floor(H / 2)``, ``floor(H / 4)``, the sizes of the
  target pyramid the loss compares them with.

Where the release differs from the paper, and from this module:

* The paper's INR decodes the image from features and their coordinates (LIIF-style, with a positional encoding
  and a local ensemble). In the release the query coordinates are the feature grid itself, so every relative
  coordinate (and its encoding) is exactly zero, the four local-ensemble predictions are identical and their
  area weights equal: the INR is an MLP on the 3x3 features, ``2 + 4 L`` zeros and the cell size (2, 2). This
  module computes that once instead of four times (same result up to rounding; the zeros and the cell are made in
  float32 as in the release, on the input's device, then cast to the features' dtype).
* ``reduce_chan_level1_max3`` exists in the release but is never called (its third full-resolution decoder reuses
  ``reduce_chan_level1_max2``). It is left out here (every parameter must get a gradient for DDP), so this
  network has 4,608 parameters fewer than the released module (``dim`` 48; 2,048 at ``dim`` 32). The converter
  drops the tensor and says so.
* The release wraps each depthwise convolution in a ``Sequential`` (``dwconv.main.0``); the converter renames
  those to ``dwconv``.
* The INR width (``hidden_list``) and frequencies (``L``) are module constants of their ``mlp.py`` (256, 256, 256
  and 4); here they are arguments. ``inp_channels`` / ``out_channels`` are fixed to RGB.
"""

from __future__ import annotations

import logging
from itertools import product
from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.models.restormer import Downsample, OverlapPatchEmbed, TransformerBlock, Upsample, pad_to_multiple
from src.utils.errors import ConfigValueError

log = logging.getLogger(__name__)

#: the network's sides must be multiples of this (1/4 scale, then two 2x downsamplings)
SIZE_MULTIPLE = 16
#: the release's module that is never called (see the module docstring)
_UNUSED_RELEASE_MODULE = "reduce_chan_level1_max3."


# --- NeRD-Rain's own parts (the blocks are Restormer's) ------------------------------------------------------
class Fusion(nn.Module):
    """Bidirectional fusion (BF) of two latents of one shape: ``a = sigmoid(query_conv(x) * key_conv(y))``;
    ``x g1[0] + (a x) g1[1] + y g2[0] + (a y) g2[1]`` with ``g1 = gamma1(cat(x, a x))``, ``g2 = gamma2(cat(y, a y))``
    (3x3 convs with bias)."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.query_conv = nn.Conv2d(in_dim, in_dim, 3, 1, 1)
        self.key_conv = nn.Conv2d(in_dim, in_dim, 3, 1, 1)
        self.gamma1 = nn.Conv2d(in_dim * 2, 2, 3, 1, 1)
        self.gamma2 = nn.Conv2d(in_dim * 2, 2, 3, 1, 1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        attention = torch.sigmoid(self.query_conv(x) * self.key_conv(y))
        ax, ay = x * attention, y * attention
        gx, gy = self.gamma1(torch.cat((x, ax), 1)), self.gamma2(torch.cat((y, ay), 1))
        return (x * gx[:, 0:1] + ax * gx[:, 1:2]) + (y * gy[:, 0:1] + ay * gy[:, 1:2])


class MLP(nn.Module):
    """Linear layers of widths ``hidden_list`` with ReLU between them, then a linear layer to ``out_dim``."""

    def __init__(self, in_dim: int, out_dim: int, hidden_list: Sequence[int]) -> None:
        super().__init__()
        layers, last = [], in_dim
        for hidden in hidden_list:
            layers += [nn.Linear(last, hidden), nn.ReLU()]
            last = hidden
        self.layers = nn.Sequential(*layers, nn.Linear(last, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class INR(nn.Module):
    """The release's implicit neural representation: RGB from a (B, ``dim``, h, w) feature map at the same size.

    Per pixel the MLP sees ``[9 * dim`` features of its 3x3 neighbourhood (zero padding), ``2 + 4 L`` relative
    coordinate and encoding values, ``2`` cell size]``. The relative coordinates are zero in the release (its
    queries sit on the feature grid) and the cell size is ``(2 / h * h, 2 / w * w)`` rounded in float32."""

    def __init__(self, dim: int, hidden_list: Sequence[int], L: int) -> None:  # noqa: N803 (the authors' name)
        super().__init__()
        self.coord_dim = 2 + 4 * L
        self.imnet = MLP(dim * 9 + self.coord_dim + 2, 3, hidden_list)

    def forward(self, feat: Tensor) -> Tensor:
        b, _, h, w = feat.shape
        neighbourhood = F.unfold(feat, 3, padding=1).transpose(1, 2)  # (B, h*w, 9 * dim)
        f32 = dict(dtype=torch.float32, device=feat.device)
        cell = torch.tensor([2 / h, 2 / w], **f32) * torch.tensor([h, w], **f32)
        const = torch.cat([torch.zeros(self.coord_dim, **f32), cell]).to(feat.dtype)
        pred = self.imnet(torch.cat([neighbourhood, const.expand(b, h * w, -1)], dim=-1))
        return pred.transpose(1, 2).reshape(b, 3, h, w)


def _half(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=0.5)  # nearest, as the release


def _double(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2)


def window_spans(length: int, win: int) -> list[tuple[int, int]]:
    """(start, first kept index) of the windows along a side of ``length``, as the release's ``window_partitionx``:
    whole windows from 0, then one flush with the end whose overlap with the last whole window is dropped. One
    window (the whole side) when ``length <= win``."""
    if length <= win:
        return [(0, 0)]
    whole = length // win
    spans = [(i * win, i * win) for i in range(whole)]
    return spans + ([(length - win, whole * win)] if length % win else [])


# --- the network --------------------------------------------------------------------------------------------
#: passes of the U-Net at each scale
PASSES = {"small": 1, "mid": 2, "max": 3}


def _name(kind: str, scale: str, k: int) -> str:
    """The release's module names: ``latent_small``, ``latent_mid2``, ``down1_2_max`` / ``down1_2_max3``, ..."""
    if PASSES[scale] == 1:
        return f"{kind}_{scale}"
    if kind in ("down1_2", "down2_3", "up3_2", "up2_1"):
        return f"{kind}_{scale}" + ("" if k == 1 else str(k))
    return f"{kind}_{scale}{k}"


class NeRDRain(nn.Module):
    """NeRD-Rain (see the module docstring); defaults are the authors' (NeRD-Rain; NeRD-Rain-S has ``dim`` 32)."""

    def __init__(
        self,
        dim: int = 48,
        num_blocks: Sequence[int] = (2, 3, 3),
        heads: Sequence[int] = (1, 2, 4),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",
        hidden_list: Sequence[int] = (256, 256, 256),
        L: int = 4,  # noqa: N803 (the authors' names)
        win_size: Optional[int] = 256,
    ) -> None:
        super().__init__()
        _check_sizes(dim, num_blocks, heads, win_size)
        self.win_size = int(win_size) if win_size else None
        chans = (dim, dim * 2, dim * 4)
        block = dict(ffn_expansion_factor=ffn_expansion_factor, bias=bias, LayerNorm_type=LayerNorm_type)

        def blocks(level: int) -> nn.Sequential:
            return nn.Sequential(
                *[TransformerBlock(chans[level], heads[level], **block) for _ in range(num_blocks[level])]
            )

        for scale, passes in PASSES.items():
            setattr(self, f"patch_embed_{scale}", OverlapPatchEmbed(3, dim))
            for k in range(1, passes + 1):
                parts = {
                    "encoder_level1": blocks(0),
                    "down1_2": Downsample(chans[0]),
                    "encoder_level2": blocks(1),
                    "down2_3": Downsample(chans[1]),
                    "latent": blocks(2),
                    "up3_2": Upsample(chans[2]),
                    "reduce_chan_level2": nn.Conv2d(chans[2], chans[1], kernel_size=1, bias=bias),
                    "decoder_level2": blocks(1),
                    "up2_1": Upsample(chans[1]),
                    "reduce_chan_level1": nn.Conv2d(chans[1], chans[0], kernel_size=1, bias=bias),
                    "decoder_level1": blocks(0),
                }
                if (scale, k) == ("max", 3):
                    del parts["reduce_chan_level1"]  # never called by the release (see the module docstring)
                for kind, module in parts.items():
                    setattr(self, _name(kind, scale, k), module)
            setattr(self, f"output_{scale}", nn.Conv2d(dim, 3, kernel_size=3, padding=1, bias=bias))
        self.output_mid_context = nn.Conv2d(dim, dim, kernel_size=3, padding=1, bias=bias)
        self.output_max_context1 = nn.Conv2d(dim, dim, kernel_size=3, padding=1, bias=bias)
        self.output_max_context2 = nn.Conv2d(dim, dim, kernel_size=3, padding=1, bias=bias)
        self.INR = INR(dim, hidden_list, L)
        self.INR2 = INR(dim, hidden_list, L)
        self.BF1, self.BF2, self.BF3 = Fusion(chans[2]), Fusion(chans[2]), Fusion(chans[2])
        self.upsmall2mid1, self.upsmall2mid2 = Upsample(chans[2]), Upsample(chans[1])
        self.upmid2max1, self.upmid2max2 = Upsample(chans[2]), Upsample(chans[1])

    def _m(self, kind: str, scale: str, k: int = 1) -> nn.Module:
        return getattr(self, _name(kind, scale, k))

    def _encode(self, x: Tensor, scale: str, k: int) -> tuple[Tensor, Tensor, Tensor]:
        """Pass ``k`` of the encoder at ``scale``: (level-1 features, level-2 features, latent)."""
        enc1 = self._m("encoder_level1", scale, k)(x)
        enc2 = self._m("encoder_level2", scale, k)(self._m("down1_2", scale, k)(enc1))
        return enc1, enc2, self._m("latent", scale, k)(self._m("down2_3", scale, k)(enc2))

    def _decode(self, latent: Tensor, enc2: Tensor, enc1: Tensor, scale: str, k: int) -> Tensor:
        """Pass ``k`` of the decoder at ``scale`` (the release's third full-resolution pass reuses the second
        pass's level-1 reduction)."""
        x = torch.cat([self._m("up3_2", scale, k)(latent), enc2], 1)
        x = self._m("decoder_level2", scale, k)(self._m("reduce_chan_level2", scale, k)(x))
        x = torch.cat([self._m("up2_1", scale, k)(x), enc1], 1)
        reduce1 = self._m("reduce_chan_level1", scale, 2 if (scale, k) == ("max", 3) else k)
        return self._m("decoder_level1", scale, k)(reduce1(x))

    def body(self, x: Tensor) -> dict:
        """The network on (B, 3, H, W) with H, W multiples of 16; the output dict of the module docstring."""
        x_mid, x_small = F.interpolate(x, scale_factor=0.5), F.interpolate(x, scale_factor=0.25)
        s1, s2, lat_s = self._encode(self.patch_embed_small(x_small), "small", 1)
        inr_s = self.INR(self.upsmall2mid2(self.upsmall2mid1(lat_s))) + x_small
        mid_in = x_mid + _double(inr_s)
        m1, m2, lat_m1 = self._encode(self.patch_embed_mid(mid_in), "mid", 1)
        inr_m = self.INR2(self.upmid2max2(self.upmid2max1(lat_m1))) + mid_in

        feats, lat_x = self.patch_embed_max(x + _double(inr_m)), []
        for k in (1, 2, 3):
            e1, e2, lat = self._encode(feats, "max", k)
            lat_x.append(lat)
            if k < 3:
                feats = getattr(self, f"output_max_context{k}")(self._decode(lat, e2, e1, "max", k))
        feats = self.output_mid_context(self._decode(lat_m1 + _half(self.BF1(lat_x[0], lat_x[1])), m2, m1, "mid", 1))
        m1b, m2b, lat_m2 = self._encode(feats, "mid", 2)

        dec_s = self._decode(lat_s + _half(self.BF3(lat_m1, lat_m2)), s2, s1, "small", 1)
        dec_m = self._decode(lat_m2 + _half(self.BF2(lat_x[1], lat_x[2])), m2b, m1b, "mid", 2) + _double(dec_s)
        dec_x = self._decode(lat_x[2], e2, e1, "max", 3) + _double(dec_m)
        out = self.output_max(dec_x) + x
        scales = [out, self.output_mid(dec_m) + x_mid, self.output_small(dec_s) + x_small]
        return {"out": out, "scales": scales, "inr": [inr_m, inr_s]}

    def whole(self, x: Tensor) -> dict:
        """The network on the whole input (padded to multiples of 16), every output cropped back to the input's
        size at its scale (``floor(H / s)``)."""
        h, w = x.shape[-2:]
        res = self.body(pad_to_multiple(x, SIZE_MULTIPLE))

        def crop(t: Tensor, s: int) -> Tensor:
            return t[..., : h // s, : w // s]

        scales = [crop(t, s) for t, s in zip(res["scales"], (1, 2, 4))]
        return {"out": scales[0], "scales": scales, "inr": [crop(res["inr"][0], 2), crop(res["inr"][1], 4)]}

    def windowed(self, x: Tensor) -> Tensor:
        """The release's test-time windows (module docstring): the full-resolution output, stitched."""
        b, _, h, w = x.shape
        rows, cols = window_spans(h, self.win_size), window_spans(w, self.win_size)
        wh, ww = min(h, self.win_size), min(w, self.win_size)
        spans = list(product(rows, cols))
        y = self.whole(torch.cat([x[:, :, r : r + wh, c : c + ww] for (r, _), (c, _) in spans]))["out"]
        out = x.new_empty(b, y.shape[1], h, w)
        for i, ((r, keep_r), (c, keep_c)) in enumerate(spans):
            out[:, :, keep_r : r + wh, keep_c : c + ww] = y[i * b : (i + 1) * b, :, keep_r - r :, keep_c - c :]
        return out

    def forward(self, x: Tensor) -> dict:
        if self.training or self.win_size is None:
            return self.whole(x)
        return {"out": self.windowed(x)}

    # --- the authors' files ---------------------------------------------------------------------------------
    @staticmethod
    def is_release_state_dict(state: Mapping[str, Tensor]) -> bool:
        """True for a state dict in the release's naming (depthwise convs as ``dwconv.main.0``)."""
        return any(".dwconv.main.0." in str(k) for k in state)

    @staticmethod
    def convert_release_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The release's tensors under this module's names: ``module.`` stripped, ``dwconv.main.0`` ->
        ``dwconv``, the never-called ``reduce_chan_level1_max3`` dropped (logged)."""
        out, dropped = {}, []
        for key, value in state.items():
            key = str(key).removeprefix("module.")
            if key.startswith(_UNUSED_RELEASE_MODULE):
                dropped.append(key)
                continue
            out[key.replace("dwconv.main.0.", "dwconv.")] = value
        if dropped:
            log.info("NeRD-Rain release file: dropped %s (a layer the release never calls)", ", ".join(dropped))
        return out


def _check_sizes(dim: int, num_blocks: Sequence[int], heads: Sequence[int], win_size: Optional[int]) -> None:
    if len(num_blocks) != 3 or len(heads) != 3:
        raise ConfigValueError(
            f"model.net.num_blocks={list(num_blocks)} and model.net.heads={list(heads)} need one "
            "entry per U-Net level (3)"
        )
    for level, h in enumerate(heads):
        if (dim * 2**level) % h:
            raise ConfigValueError(
                f"model.net.heads[{level}]={h} does not divide the {dim * 2**level} channels of "
                f"level {level + 1} (model.net.dim={dim})"
            )
    if win_size and (win_size < 0 or win_size % SIZE_MULTIPLE):
        raise ConfigValueError(
            f"model.net.win_size={win_size}: must be a positive multiple of {SIZE_MULTIPLE} (or null: whole images)"
        )
