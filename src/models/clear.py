"""Clear: DerainNet of Fu et al., "Clearing the skies: a deep network architecture for single-image rain
removal" (IEEE TIP 2017), named "Clear" in SPANet's tables (Table 2: 31.31 dB / 0.9304 on SPA-Data, as the
SPANet authors retrained it).

Image convention: ``forward(x)`` takes ``x`` of shape (B, 3, H, W), RGB, values in [0, 1], any H, W >= 1,
and returns ``out`` on the same scale, not clamped.

Structure (three layers on the detail layer, as DDN after it)::

    base   = guided_filter(x, x)    per channel, radius 15 (31x31 box), eps 1, box truncated at the borders
    detail = x - base
    h = relu(conv16x16 3->512 (pad(detail, 4)))       valid convolution: H + 8 - 15 = H - 7
    h = relu(conv1x1 512->512 (h))
    out = base + convtranspose8x8 512->3 (h)          H - 7 + 7 = H: the input's size again

754,691 parameters. Source of the layer sizes: the paper says only "a 3-layer CNN on the
detail layer"; the kernel sizes and widths (16x16x512, 1x1x512, 8x8x3, a transposed last layer) are those of
derain-toolbox's reimplementation of the paper, not checked against the authors' Matlab release. The border:
the detail layer is padded by 4 pixels by reflection, so the output has the input's size without cropping
(images under 8 pixels a side get a wider border, cropped off again; replication where reflection is undefined). The authors' training recipe
is not known to the suite either: train it with another model's schedule (``schedule=spanet_paper`` is
SPANet's, ``schedule=ddn`` that of the same authors' next network) and with DDN's MSE loss (``conf/model/clear.yaml``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from src.models.guided_filter import DetailSplit

_PAD = 4  # (16 - 1) - (8 - 1): what the valid 16x16 conv removes beyond what the 8x8 transposed conv adds back


class Clear(nn.Module):
    """DerainNet ("Clear"). See the module docstring.

    Args:
        channels: width of the two hidden layers (512).
        radius, eps: guided filter of the base/detail split (15 and 1.0 on the [0, 1] scale).

    ``forward(x)`` returns ``{"out": base + net(detail), "base": ..., "detail": ..., "vis": {...}}``.
    """

    uses_label: bool = False

    def __init__(self, channels: int = 512, radius: int = 15, eps: float = 1.0) -> None:
        super().__init__()
        self.split = DetailSplit(radius, eps)
        self.body = nn.Sequential(
            nn.Conv2d(3, channels, 16),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(channels, 3, 8),
        )

    def forward(self, x: Tensor) -> dict:
        base, detail, vis = self.split(x)
        h, w = x.shape[-2:]
        extra = max(0, 8 - min(h, w))  # below 8 pixels the 16x16 conv needs more border; cropped again below
        pad = _PAD + extra
        mode = "reflect" if min(h, w) > pad else "replicate"
        residual = self.body(F.pad(detail, (pad,) * 4, mode=mode))[..., extra : extra + h, extra : extra + w]
        out = base + residual
        return {"out": out, "base": base, "detail": detail, "vis": vis}
