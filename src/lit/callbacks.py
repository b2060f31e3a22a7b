"""Callbacks: image grids of (rain, output, clean, extra maps), the W&B per-image score table, the progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import imageio.v3 as iio
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from src.metrics.protocols import to_uint8_image


def _as_rgb(x: torch.Tensor) -> torch.Tensor:
    """(C,H,W) with C in {1,3}, any range -> (3,H,W) clipped to [0,1]."""
    x = x.detach().float().cpu()
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x.clamp(0, 1)


def make_grid_rows(rows: list[list[torch.Tensor]], gap: int = 2) -> np.ndarray:
    """Panels (3,H,W) in rows -> one uint8 H x W x 3 image; rows of different width are right-padded white."""
    rendered = []
    for panels in rows:
        h = max(p.shape[1] for p in panels)
        padded = [F.pad(p, (0, gap, 0, h - p.shape[1]), value=1.0) for p in panels]
        rendered.append(torch.cat(padded, dim=2))
    w = max(r.shape[2] for r in rendered)
    rendered = [F.pad(r, (0, w - r.shape[2], 0, gap), value=1.0) for r in rendered]
    grid = torch.cat(rendered, dim=1).permute(1, 2, 0).numpy()
    return to_uint8_image(grid)


class ImageGridLogger(L.Callback):
    """After each validation, logs a grid: one row per image (rain | output | clean | the net's "vis" maps).

    The grid goes to every logger that takes images (TensorBoard, W&B) and, always, to
    ``<run dir>/images/val_step<step>.png`` so CSV-only runs have it too.
    """

    def __init__(self, n_images: int = 4, save_png: bool = True) -> None:
        self.n_images = n_images
        self.save_png = save_png
        self._rows: list[list[torch.Tensor]] = []
        self._titles: list[str] = []
        self._keys: list[str] = []

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._rows, self._titles = [], []

    def on_validation_batch_end(self, trainer, pl_module, outputs: Any, batch: dict, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking or not isinstance(outputs, dict):
            return
        vis = {k: v for k, v in (outputs.get("vis") or {}).items() if torch.is_tensor(v)}
        if not self._rows:
            self._keys = ["rain", "output", "clean", *vis]
        for i in range(batch["rain"].shape[0]):
            if len(self._rows) >= self.n_images:
                return
            row = [_as_rgb(batch["rain"][i]), _as_rgb(outputs["out"][i]), _as_rgb(batch["clean"][i])]
            row += [_as_rgb(v[i]) for v in vis.values()]
            self._rows.append(row)
            self._titles.append(str(batch["name"][i]))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not self._rows or not trainer.is_global_zero:
            return
        grid = make_grid_rows(self._rows)
        step = trainer.global_step
        caption = f"rows: {', '.join(self._titles)}; columns: {' | '.join(self._keys)}"
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("val/grid", grid, step, dataformats="HWC")
            elif isinstance(logger, WandbLogger):
                logger.log_image("val/grid", [grid], step=step, caption=[caption])
        if self.save_png:
            out = Path(trainer.default_root_dir) / "images"
            out.mkdir(parents=True, exist_ok=True)
            iio.imwrite(out / f"val_step{step:07d}.png", grid)


class WandbPerImageTable(L.Callback):
    """At test end, logs a ``wandb.Table`` with one row per test image and one column per protocol metric.

    Runs in ``on_test_end`` because the module stores its test report in its own ``on_test_epoch_end``,
    which Lightning calls after the callbacks' hook of the same name.
    """

    def on_test_end(self, trainer, pl_module) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        report: Optional[dict] = getattr(pl_module, "reports", {}).get("test")
        if not loggers or not report or not trainer.is_global_zero:
            return
        import wandb

        per_image = report.get("per_image", {})
        protocols = list(report.get("mean", {}))
        columns = ["image"] + [f"{m}_{p}" for p in protocols for m in ("psnr", "ssim")]
        table = wandb.Table(columns=columns)
        for name, scores in per_image.items():
            table.add_data(name, *[scores[p][m] for p in protocols for m in ("psnr", "ssim")])
        for lg in loggers:
            lg.experiment.log({"test/per_image": table})


class StepProgressBar(RichProgressBar):
    """Rich progress bar for runs counted in iterations (``max_epochs: -1``): "Epoch 3 (of 60000 steps)" instead
    of Lightning's "Epoch 3/-2"; the bar itself counts the epoch's batches."""

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        text = f"Epoch {current_epoch}"
        if trainer.max_epochs is not None and trainer.max_epochs >= 0:
            text += f"/{trainer.max_epochs - 1}"
        if trainer.max_steps is not None and trainer.max_steps > 0:
            text += f" (of {trainer.max_steps} steps)"
        return f"{text:{len(self.validation_description)}}"
