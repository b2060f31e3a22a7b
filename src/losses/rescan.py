"""RESCAN's training loss (Li et al., ECCV 2018): the sum over stages of MSE(R_s, O - B).

``R_s`` is stage s's predicted rain layer (``outputs["rain_layers"]``), ``O`` the rainy and ``B`` the clean
image, all on the [0, 1] scale as in the authors' code (config/train.py).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class RESCANLoss(nn.Module):
    """Sum over stages of ``MSE(R_s, rain - clean)``; parts ``{"stage1": ..., ..., "stageS": ...}``."""

    def forward(self, outputs: dict, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        target = batch["rain"] - batch["clean"]
        parts = {f"stage{s + 1}": F.mse_loss(r, target) for s, r in enumerate(outputs["rain_layers"])}
        return sum(parts.values()), parts
