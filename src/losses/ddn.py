"""DDN's training loss (Fu et al., CVPR 2017): mean squared error between the output and the clean image.

Values on the [0, 1] scale, as the authors' TensorFlow code trains (``tf.reduce_mean(tf.square(...))``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class DDNLoss(nn.Module):
    """``MSE(outputs["out"], batch["clean"])`` over all pixels and channels; parts ``{"mse": ...}``."""

    def forward(self, outputs: dict, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        mse = F.mse_loss(outputs["out"], batch["clean"])
        return mse, {"mse": mse}
