"""Validation scores the rainy input once per image and reuses the scores at every later validation."""

from __future__ import annotations

import torch
from torch import nn

from src.lit.module import DerainModule
from src.metrics import score_all


class _Halve(nn.Module):
    pad_multiple = 1

    def forward(self, x):
        return {"out": x * 0.5}


def test_rain_input_scored_once_across_validations():
    module = DerainModule(_Halve(), loss=nn.L1Loss())
    g = torch.Generator().manual_seed(0)
    batches = [
        {
            "rain": torch.rand(2, 3, 20, 24, generator=g),
            "clean": torch.rand(2, 3, 20, 24, generator=g),
            "name": [f"{i}a", f"{i}b"],
        }
        for i in range(2)
    ]
    reports = []
    for _ in range(3):  # three validations
        for batch in batches:
            module._eval_step(batch, "val")
        reports.append(module.metrics["val_input"].report())
        module.metrics["val_input"].reset()
    cache = module.input_scores["val"]
    assert (cache.misses, cache.hits) == (4, 8)
    assert reports[0] == reports[1] == reports[2]
    direct = score_all(batches[1]["rain"], batches[1]["clean"])
    assert reports[2]["per_image"]["1b"]["y_matlab"]["ssim"] == direct["y_matlab"]["ssim"][1].item()
    assert module.input_scores["test"].misses == 0  # a stage of its own
