"""NeRD-Rain's training loss, as the authors' ``train.py`` computes it (cschenxiang/NeRD-Rain).

The targets are a Gaussian pyramid of the clean image: ``kornia.geometry.transform.build_pyramid(clean, 3)``
(5x5 binomial blur with reflection at the border, then bilinear resizing to ``floor(side / 2)``, twice), which
their code calls too. With the network's outputs (:class:`src.models.nerd_rain.NeRDRain`; their list
indices in brackets)::

    char  = sum_s charbonnier(scales[s], target[s])      s = 0, 1, 2: full, 1/2, 1/4 resolution [0, 1, 2]
    fft   = sum_s fft_l1(scales[s], target[s])
    edge  = sum_s edge_loss(scales[s], target[s])
    l1    = L1(inr[0], target[1]) + L1(inr[1], target[2])   the implicit-representation outputs [3], [5]
    total = char_weight * char + fft_weight * fft + edge_weight * edge + inr_weight * l1

with weights 1, 0.01, 0.05 and 0.1 in their code. Parts ``{"char", "fft", "edge", "l1_inr"}`` (unweighted).
"""

from __future__ import annotations

import torch.nn.functional as F
from kornia.geometry.transform import build_pyramid
from torch import Tensor, nn

from src.losses.pixel import charbonnier, edge_loss, fft_l1


class NeRDRainLoss(nn.Module):
    """Charbonnier + FFT + edge losses on the three scale outputs, L1 on the two INR outputs (module docstring)."""

    def __init__(
        self, char_weight: float = 1.0, fft_weight: float = 0.01, edge_weight: float = 0.05, inr_weight: float = 0.1
    ) -> None:
        super().__init__()
        self.weights = {
            "char": float(char_weight),
            "fft": float(fft_weight),
            "edge": float(edge_weight),
            "l1_inr": float(inr_weight),
        }

    def forward(self, outputs: dict, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        if "scales" not in outputs or "inr" not in outputs:
            raise ValueError(
                "NeRDRainLoss needs the network's 'scales' and 'inr' outputs (NeRDRain in training "
                "mode or with win_size null); got keys " + ", ".join(sorted(outputs))
            )
        target = build_pyramid(batch["clean"], 3)
        pairs = list(zip(outputs["scales"], target))
        parts = {
            "char": sum(charbonnier(p, t) for p, t in pairs),
            "fft": sum(fft_l1(p, t) for p, t in pairs),
            "edge": sum(edge_loss(p, t) for p, t in pairs),
            "l1_inr": F.l1_loss(outputs["inr"][0], target[1]) + F.l1_loss(outputs["inr"][1], target[2]),
        }
        return sum(self.weights[k] * v for k, v in parts.items()), parts
