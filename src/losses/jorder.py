"""JORDER-E's multi-task training loss (Yang et al., TPAMI 2019), as in the authors' src/trainer.py.

All image terms are on the 0-255 scale the official code trains on (``value_scale = 255``)::

    total = L1(stage2, clean) + L1(stage1, clean)                      "image"
          + 1e-3 * SUM over pixels of CE(mask logits, rain mask)       "mask"   (a sum, not a mean)
          + 1e-2 * L1(level, clean - rain)                             "level"

L1 terms are means over pixels and channels; the mask and level are the stage-2 ones (the official loss does
not use stage 1's). Because the mask term is a sum, its weight relative to the others grows with batch and
patch size (the authors: batch 8, 64 x 64 patches).

Rain-mask target (``mask_rule``), from d = clean - rain on the [0, 1] scale:

* ``abs_red`` (default): |d| > ``mask_threshold`` (1e-5) in the red channel, as the release's
  src/loss/joint.py does. With 8-bit images this marks every pixel the rain changed.
* ``abs_any``: |d| > ``mask_threshold`` in any channel.
* ``positive_red``: d > 0 in the red channel, what the official trainer.py trains with. Rain brightens
  pixels, so clean - rain is almost never positive and the target is almost always 0 (a bug, kept for
  reproducing the release).
"""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn

MASK_RULES: dict[str, Callable[[Tensor, float], Tensor]] = {
    "abs_red": lambda d, t: d[:, 0].abs() > t,
    "abs_any": lambda d, t: (d.abs() > t).any(dim=1),
    "positive_red": lambda d, t: d[:, 0] > 0,
}


def rain_mask_target(rain: Tensor, clean: Tensor, rule: str = "abs_red", threshold: float = 1e-5) -> Tensor:
    """(B, 3, H, W) rain and clean images on the [0, 1] scale -> (B, H, W) int64 mask, 1 where rain."""
    if rule not in MASK_RULES:
        raise ValueError(f"model.loss.mask_rule must be one of {sorted(MASK_RULES)}, got {rule!r}")
    return MASK_RULES[rule](clean - rain, threshold).long()


class JORDERLoss(nn.Module):
    """JORDER-E loss; see the module docstring. Parts: ``image``, ``mask``, ``level``."""

    def __init__(
        self,
        mask_rule: str = "abs_red",
        mask_threshold: float = 1e-5,
        mask_weight: float = 1e-3,
        level_weight: float = 1e-2,
        value_scale: float = 255.0,
    ) -> None:
        super().__init__()
        if mask_rule not in MASK_RULES:
            raise ValueError(f"model.loss.mask_rule must be one of {sorted(MASK_RULES)}, got {mask_rule!r}")
        self.mask_rule, self.mask_threshold = mask_rule, float(mask_threshold)
        self.mask_weight, self.level_weight = float(mask_weight), float(level_weight)
        self.value_scale = float(value_scale)

    def forward(self, outputs: dict, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        rain, clean, k = batch["rain"], batch["clean"], self.value_scale
        image = sum(k * F.l1_loss(s, clean) for s in outputs["stages"])
        target = rain_mask_target(rain, clean, self.mask_rule, self.mask_threshold)
        mask = self.mask_weight * F.cross_entropy(outputs["mask_logits"][-1], target, reduction="sum")
        level = self.level_weight * k * F.l1_loss(outputs["levels"][-1], clean - rain)
        return image + mask + level, {"image": image, "mask": mask, "level": level}
