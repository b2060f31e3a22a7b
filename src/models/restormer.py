"""Restormer (Zamir et al., CVPR 2022): a 4-level U-Net of transformer blocks with attention across channels.

"Restormer: Efficient Transformer for High-Resolution Image Restoration". Written from the paper and the
structure of the authors' ``basicsr/models/archs/restormer_arch.py`` (swz30/Restormer); module and attribute
names follow theirs, so their released files (``deraining.pth``: ``{'params': state dict}``) load as they are.

* Transformer block: ``x + MDTA(LN(x))`` then ``x + GDFN(LN(x))``. LN normalises over the channels of each
  pixel (eps 1e-5; ``LayerNorm_type`` WithBias or BiasFree). MDTA: 1x1 conv to q, k, v, 3x3 depthwise conv,
  split into ``heads``; q and k L2-normalised along the pixels, attention ``softmax(q k^T * temperature)`` is
  C/heads x C/heads per head (a learned temperature per head), applied to v, 1x1 projection. GDFN: 1x1 conv
  to 2 x ``int(dim * ffn_expansion_factor)`` channels, 3x3 depthwise conv, ``gelu(a) * b``, 1x1 projection.
* U-Net: 3x3 embedding to ``dim``; encoder levels of ``num_blocks[i]`` blocks at ``dim * 2**i`` channels
  and ``heads[i]`` heads; down: 3x3 conv to half the channels + pixel-unshuffle; up: 3x3 conv to twice the
  channels + pixel-shuffle; skips concatenated (levels 3 and 2 reduced by a 1x1 conv, level 1 kept at
  2 x ``dim``); ``num_refinement_blocks`` more blocks; 3x3 conv to RGB plus the input image.
* ``dual_pixel_task`` (6-channel defocus input, not used for deraining): a 1x1 skip from the embedding and
  no global residual, as in the authors' code.

Input-size rule of the authors' ``Deraining/test.py``: the image is reflect-padded at the right and bottom to
the next multiple of 8 only when a side is not one already, and the output is cropped back; their script then
clamps to [0, 1], which this network does not (the suite clamps when it writes images). Where a side is too
small to reflect (pad >= side: sides of 4 or less), edge replication is used instead; the authors' script fails
there.

Differences from the paper: none in the network (the paper's progressive training belongs to the training recipe).
Output dict: ``{"out": (B, 3, H, W)}``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.utils.errors import ConfigValueError

#: the authors' test script pads both sides to a multiple of this (three 2x downsamplings)
SIZE_MULTIPLE = 8


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad (B, C, H, W) at the bottom / right to multiples of ``multiple`` by reflection, only where a side is not
    one (edge replication of both sides when one is too small to reflect)."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")


class LayerNorm(nn.Module):
    """Layer norm over the channels of every pixel of a (B, C, H, W) map. ``body`` holds the affine
    parameters: ``nn.LayerNorm`` (WithBias) or :class:`BiasFreeNorm` (BiasFree)."""

    def __init__(self, dim: int, LayerNorm_type: str) -> None:  # noqa: N803 (the authors' argument name)
        super().__init__()
        if LayerNorm_type not in ("WithBias", "BiasFree"):
            raise ConfigValueError(f"model.net.LayerNorm_type={LayerNorm_type!r}: expected 'WithBias' or 'BiasFree'")
        self.body = BiasFreeNorm(dim) if LayerNorm_type == "BiasFree" else nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class BiasFreeNorm(nn.Module):
    """``x / sqrt(var(x) + 1e-5) * weight`` over the last axis: divided by the spread, not centred."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5) * self.weight


class Attention(nn.Module):
    """MDTA, multi-Dconv head transposed attention: attention between channels, not pixels."""

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"{dim} channels cannot be split into {num_heads} heads (check dim and heads)")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def scores(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(the C/heads x C/heads scores ``normalize(q) @ normalize(k)^T * temperature`` per head, v as
        (B, heads, C/heads, H*W)), q, k, v from the 1x1 and depthwise 3x3 convs of (B, C, H, W) ``x``."""
        b, c, h, w = x.shape
        q, k, v = (
            t.reshape(b, self.num_heads, c // self.num_heads, h * w)
            for t in self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        )
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        return (q @ k.transpose(-2, -1)) * self.temperature, v

    def forward(self, x: Tensor) -> Tensor:
        attn, v = self.scores(x)
        return self.project_out((attn.softmax(dim=-1) @ v).reshape(x.shape))


class FeedForward(nn.Module):
    """GDFN, gated-Dconv feed-forward network: ``project_out(gelu(a) * b)`` with a, b the halves of a 1x1 conv
    followed by a 3x3 depthwise conv."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(a) * b)


class TransformerBlock(nn.Module):
    """``x + attn(norm1(x))``, then ``x + ffn(norm2(x))``; ``attention`` / ``feedforward`` are the classes."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_expansion_factor: float,
        bias: bool,
        LayerNorm_type: str,
        attention: type = Attention,
        feedforward: type = FeedForward,
    ) -> None:  # noqa: N803
        super().__init__()
        self.norm1 = LayerNorm(dim, LayerNorm_type)
        self.attn = attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, LayerNorm_type)
        self.ffn = feedforward(dim, ffn_expansion_factor, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """3x3 convolution from the image to ``embed_dim`` feature channels."""

    def __init__(self, in_c: int, embed_dim: int, bias: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, kernel_size=3, padding=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """Half resolution, twice the channels: 3x3 conv to ``n_feat // 2`` then pixel-unshuffle by 2."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Twice the resolution, half the channels: 3x3 conv to ``2 * n_feat`` then pixel-shuffle by 2."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Restormer(nn.Module):
    """The Restormer U-Net (see the module docstring); arguments and defaults as in the authors' class (their
    deraining configuration is the default). :class:`src.models.drsformer.DRSformer` reuses this skeleton with
    other attention / feed-forward classes (:attr:`attention`, :attr:`feedforward`) and its own embedding and
    refinement stages."""

    attention: type = Attention
    feedforward: type = FeedForward

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",
        dual_pixel_task: bool = False,
    ) -> None:  # noqa: N803
        super().__init__()
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError(f"num_blocks={list(num_blocks)} and heads={list(heads)} need one entry per level (4)")
        self.block_args = dict(ffn_expansion_factor=ffn_expansion_factor, bias=bias, LayerNorm_type=LayerNorm_type)
        chans = [dim * 2**i for i in range(4)]
        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        self.encoder_level1 = self.blocks(num_blocks[0], chans[0], heads[0])
        self.down1_2 = Downsample(chans[0])
        self.encoder_level2 = self.blocks(num_blocks[1], chans[1], heads[1])
        self.down2_3 = Downsample(chans[1])
        self.encoder_level3 = self.blocks(num_blocks[2], chans[2], heads[2])
        self.down3_4 = Downsample(chans[2])
        self.latent = self.blocks(num_blocks[3], chans[3], heads[3])
        self.up4_3 = Upsample(chans[3])
        self.reduce_chan_level3 = nn.Conv2d(chans[3], chans[2], kernel_size=1, bias=bias)
        self.decoder_level3 = self.blocks(num_blocks[2], chans[2], heads[2])
        self.up3_2 = Upsample(chans[2])
        self.reduce_chan_level2 = nn.Conv2d(chans[2], chans[1], kernel_size=1, bias=bias)
        self.decoder_level2 = self.blocks(num_blocks[1], chans[1], heads[1])
        self.up2_1 = Upsample(chans[1])  # level 1 keeps the 2 * dim channels of the concatenation
        self.decoder_level1 = self.blocks(num_blocks[0], chans[1], heads[0])
        self.refinement = self.blocks(num_refinement_blocks, chans[1], heads[0])
        self.dual_pixel_task = dual_pixel_task
        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(dim, chans[1], kernel_size=1, bias=bias)
        self.output = nn.Conv2d(chans[1], out_channels, kernel_size=3, padding=1, bias=bias)

    def blocks(self, n: int, dim: int, heads: int) -> nn.Sequential:
        """``n`` transformer blocks of this network's kind at ``dim`` channels and ``heads`` heads."""
        return nn.Sequential(
            *[
                TransformerBlock(dim, heads, **self.block_args, attention=self.attention, feedforward=self.feedforward)
                for _ in range(n)
            ]
        )

    def embed(self, x: Tensor) -> Tensor:
        """Image -> level-1 features (DRSformer adds its feature compensator here)."""
        return self.patch_embed(x)

    def body(self, x: Tensor) -> Tensor:
        """The network on an image whose sides are multiples of 8."""
        emb = self.embed(x)
        enc1 = self.encoder_level1(emb)
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        latent = self.latent(self.down3_4(enc3))
        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec1 = self.refinement(self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1)))
        if self.dual_pixel_task:
            return self.output(dec1 + self.skip_conv(emb))
        return self.output(dec1) + x

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h, w = x.shape[-2:]
        return {"out": self.body(pad_to_multiple(x, SIZE_MULTIPLE))[..., :h, :w]}
