"""PReNet (Ren et al., CVPR 2019): a progressive recurrent network that derains in 6 stages of one shared net.

"Progressive Image Deraining Networks: A Better and Simpler Baseline". Written from the paper and the structure
of the authors' ``networks.py`` (csdwren/PReNet, class ``PReNet``); module names follow theirs, so their released
files (``logs/<data set>/PReNet6/net_latest.pth``: plain state dicts of 32 tensors) load as they are.

Every stage t = 1..``recurrent_iter`` runs the same weights on the rainy image y and the previous estimate
x_{t-1} (x_0 = y)::

    f   = relu(conv0(cat(y, x_{t-1})))                        3x3, 6 -> 32
    i, f', o = sigmoid(conv_{i,f,o}(cat(f, h))),  g = tanh(conv_g(cat(f, h)))     3x3, 64 -> 32 each
    c   = f' * c + i * g;   h = o * tanh(c)                  convolutional LSTM (h = c = 0 before stage 1)
    r   = 5 residual blocks on h: relu(h + relu(conv(relu(conv(h)))))                3x3, 32 -> 32
    x_t = conv(r) + y                                         3x3, 32 -> 3

Input-size rule of the authors' ``test_PReNet.py``: none (no padding; every convolution keeps the size); the
image is RGB divided by 255 (they read BGR with OpenCV and convert). Their script keeps the last stage,
``out, _ = model(y)``, and clamps it to [0, 1]; this network does not clamp (the suite clamps when it writes
images). Output dict: ``{"out": x_T, "stages": [x_1, ..., x_T]}``, all (B, 3, H, W).

Taken from the authors' code: the layer sizes, the gate order, ``x_t = conv(r) + y``. Differences between the
release and the paper: none found in the network. The authors' ``use_GPU`` argument (which put the LSTM state
on the GPU) is gone: the state is made on the input's device, in its dtype. Their training loss is
``-SSIM(x_T, clean)`` (:class:`src.losses.pixel.NegativeSSIMLoss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: feature width of every layer (fixed in the authors' code)
CHANNELS = 32
#: residual blocks per stage (fixed in the authors' code)
RES_BLOCKS = 5


def _conv(cin: int, cout: int, *act: nn.Module) -> nn.Sequential:
    """3x3 convolution with bias (stride 1, padding 1) followed by ``act``: the release's ``<name>.0`` layers."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), *act)


class PReNet(nn.Module):
    """PReNet with ``recurrent_iter`` stages (the authors' default and their released files: 6)."""

    def __init__(self, recurrent_iter: int = 6) -> None:
        super().__init__()
        if recurrent_iter < 1:
            raise ValueError(f"recurrent_iter={recurrent_iter}: PReNet needs at least one stage")
        self.recurrent_iter = recurrent_iter
        c = CHANNELS
        self.conv0 = _conv(6, c, nn.ReLU())
        for k in range(1, RES_BLOCKS + 1):
            self.add_module(
                f"res_conv{k}", nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1), nn.ReLU())
            )
        self.conv_i = _conv(2 * c, c, nn.Sigmoid())
        self.conv_f = _conv(2 * c, c, nn.Sigmoid())
        self.conv_g = _conv(2 * c, c, nn.Tanh())
        self.conv_o = _conv(2 * c, c, nn.Sigmoid())
        self.conv = _conv(c, 3)

    def forward(self, x: Tensor) -> dict:
        b, _, h, w = x.shape
        state = x.new_zeros(b, CHANNELS, h, w)
        cell = torch.zeros_like(state)
        est, stages = x, []
        for _ in range(self.recurrent_iter):
            feat = torch.cat((self.conv0(torch.cat((x, est), 1)), state), 1)
            cell = self.conv_f(feat) * cell + self.conv_i(feat) * self.conv_g(feat)
            state = self.conv_o(feat) * torch.tanh(cell)
            r = state
            for k in range(1, RES_BLOCKS + 1):
                r = F.relu(getattr(self, f"res_conv{k}")(r) + r)
            est = self.conv(r) + x
            stages.append(est)
        return {"out": est, "stages": stages}
