"""He et al.'s guided filter with a normalised box, the base/detail split of DDN and Clear (DerainNet).

Both of Fu et al.'s networks see only the detail layer ``x - guided_filter(x, x)`` (radius 15, eps 1 on the
[0, 1] scale): the base layer carries the image's low frequencies, the rain streaks are in the detail.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def box_filter(x: Tensor, radius: int) -> Tensor:
    """Mean of ``x`` over the (2r+1) x (2r+1) window around each pixel, the window truncated at the borders.

    Near a border the mean is taken over the pixels that lie inside the image only (the normalised box of
    He et al.'s guided filter: ``boxfilter(I) / boxfilter(ones)``). x: (B, C, H, W), any H, W >= 1. The 2-D
    box is separable (rows x columns) and so is the count of pixels inside it, hence two 1-D average pools.
    """
    k = 2 * radius + 1
    x = F.avg_pool2d(x, (k, 1), stride=1, padding=(radius, 0), count_include_pad=False)
    return F.avg_pool2d(x, (1, k), stride=1, padding=(0, radius), count_include_pad=False)


def guided_filter(guide: Tensor, src: Tensor, radius: int, eps: float) -> Tensor:
    """He et al.'s guided filter of ``src`` guided by ``guide``, channel by channel (gray guide per channel).

    guide, src: (B, C, H, W) on the same scale; returns (B, C, H, W). DDN calls it with ``guide = src = x``.
    """
    mean_i = box_filter(guide, radius)
    mean_p = box_filter(src, radius)
    cov_ip = box_filter(guide * src, radius) - mean_i * mean_p
    var_i = box_filter(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_filter(a, radius) * guide + box_filter(b, radius)


class DetailSplit(nn.Module):
    """``x -> (base, detail, vis)`` with ``base = guided_filter(x, x)`` and ``detail = x - base``; no parameters.

    ``vis`` shows the base layer and the detail layer shifted by 0.5, both clamped to [0, 1]. The arguments are
    the model config's ``model.net.radius`` (box radius, >= 1) and ``model.net.eps`` (regulariser, > 0).
    """

    def __init__(self, radius: int = 15, eps: float = 1.0) -> None:
        super().__init__()
        if radius < 1:
            raise ValueError(f"model.net.radius must be >= 1, got {radius}")
        if eps <= 0:
            raise ValueError(f"model.net.eps must be > 0, got {eps}")
        self.radius, self.eps = int(radius), float(eps)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, dict]:
        base = guided_filter(x, x, self.radius, self.eps)
        detail = x - base
        return base, detail, {"base": base.clamp(0, 1), "detail": (detail + 0.5).clamp(0, 1)}

    def extra_repr(self) -> str:
        return f"radius={self.radius}, eps={self.eps}"
