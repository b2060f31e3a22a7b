"""NAFNet (Chen et al., ECCV 2022): a U-Net of nonlinear-activation-free blocks (simple gates, simplified
channel attention).

"Simple Baselines for Image Restoration". Written from the paper and the structure of the authors'
``basicsr/models/archs/NAFNet_arch.py`` (megvii-research/NAFNet, MIT licence); module and attribute names follow
theirs, so their released files (``{'params': state dict}``) load as they are.

* NAFBlock on c channels: ``y = x + beta * conv3(SCA(SG(dwconv3x3(conv1(LN(x))))))`` then
  ``y + gamma * conv5(SG(conv4(LN(y))))``; conv1 / conv4 are 1x1 to 2c, SG ("simple gate") multiplies the two
  channel halves, SCA multiplies by a 1x1 conv of the global average, LN normalises over the channels of each
  pixel (eps 1e-6, weight and bias). ``beta`` / ``gamma`` start at zero, so each block starts as the identity.
  The authors' ``drop_out_rate`` (0 in every released config) is not an argument here.
* U-Net: 3x3 ``intro`` to ``width``; per level ``enc_blk_nums[i]`` blocks then a 2x2 stride-2 conv doubling the
  channels; ``middle_blk_num`` blocks; per level a 1x1 conv (no bias) + pixel-shuffle halving the channels, the
  encoder skip ADDED, ``dec_blk_nums[i]`` blocks; 3x3 ``ending`` to RGB plus the input.

Input-size rule (inside the authors' network, ``check_image_size``): zero-pad at the right and bottom to a
multiple of ``2 ** len(enc_blk_nums)`` (16 in the released configs), crop back; their ``demo.py`` reads the image
as RGB in [0, 1] and clamps only when it writes the file (this network does not clamp).

The default size is the authors' SIDD width-32 configuration (``options/train/SIDD/NAFNet-width32.yml``, the
recipe adopted here; no deraining configuration exists). Their GoPro / REDS test configurations use
``NAFNetLocal`` (average pooling over a local window at test time, "TLC"), which is not implemented here: their
GoPro / REDS weights load, but give the whole-image pooling result. Output dict: ``{"out": (B, 3, H, W)}``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm2d(nn.Module):
    """Layer norm over the channels of every pixel of (B, C, H, W): ``(x - mean) / sqrt(var + eps) * w + b``."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        centred = x - x.mean(1, keepdim=True)
        y = centred / torch.sqrt(centred.pow(2).mean(1, keepdim=True) + self.eps)
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)


def simple_gate(x: Tensor) -> Tensor:
    """The product of the two channel halves."""
    a, b = x.chunk(2, dim=1)
    return a * b


class NAFBlock(nn.Module):
    """The nonlinear-activation-free block (see the module docstring); ``DW_Expand`` / ``FFN_Expand`` as theirs."""

    def __init__(self, c: int, DW_Expand: int = 2, FFN_Expand: int = 2) -> None:  # noqa: N803
        super().__init__()
        dw = c * DW_Expand
        self.conv1 = nn.Conv2d(c, dw, kernel_size=1)
        self.conv2 = nn.Conv2d(dw, dw, kernel_size=3, padding=1, groups=dw)
        self.conv3 = nn.Conv2d(dw // 2, c, kernel_size=1)
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, kernel_size=1))
        ffn = FFN_Expand * c
        self.conv4 = nn.Conv2d(c, ffn, kernel_size=1)
        self.conv5 = nn.Conv2d(ffn // 2, c, kernel_size=1)
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.beta = nn.Parameter(torch.zeros((1, c, 1, 1)))
        self.gamma = nn.Parameter(torch.zeros((1, c, 1, 1)))

    def forward(self, inp: Tensor) -> Tensor:
        x = simple_gate(self.conv2(self.conv1(self.norm1(inp))))
        y = inp + self.conv3(x * self.sca(x)) * self.beta
        return y + self.conv5(simple_gate(self.conv4(self.norm2(y)))) * self.gamma


class NAFNet(nn.Module):
    """NAFNet; arguments as in the authors' class, defaults their SIDD width-32 configuration."""

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 32,
        middle_blk_num: int = 12,
        enc_blk_nums: Sequence[int] = (2, 2, 4, 8),
        dec_blk_nums: Sequence[int] = (2, 2, 2, 2),
    ) -> None:
        super().__init__()
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise ValueError(
                f"enc_blk_nums={list(enc_blk_nums)} and dec_blk_nums={list(dec_blk_nums)} need the "
                "same number of levels"
            )
        self.intro = nn.Conv2d(img_channel, width, kernel_size=3, padding=1)
        self.ending = nn.Conv2d(width, img_channel, kernel_size=3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        self.decoders, self.ups = nn.ModuleList(), nn.ModuleList()
        chan = width
        for num in enc_blk_nums:
            self.encoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(num)]))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, 2))
            chan *= 2
        self.middle_blks = nn.Sequential(*[NAFBlock(chan) for _ in range(middle_blk_num)])
        for num in dec_blk_nums:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, chan * 2, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(num)]))
        self.padder_size = 2 ** len(self.encoders)

    def forward(self, inp: Tensor) -> dict[str, Tensor]:
        h, w = inp.shape[-2:]
        inp = F.pad(inp, (0, -w % self.padder_size, 0, -h % self.padder_size))  # zeros, as the authors' network
        x = self.intro(inp)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            x = decoder(up(x) + skip)
        return {"out": (self.ending(x) + inp)[..., :h, :w]}
