"""Callbacks: image grids of (rain, output, clean, extra maps), the before/after picture of a test image, the W&B
per-image score table, the progress bar."""

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

from src.metrics.protocols import PROTOCOL_FUNCTIONS, to_uint8_image
from src.utils.errors import ConfigValueError

BEFORE_AFTER = "before_after.png"  # in <run dir>/images/


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


def log_image(trainer, key: str, image: np.ndarray, step: int, caption: str) -> None:
    """One uint8 H x W x 3 image to every logger of ``trainer`` that takes images (TensorBoard, W&B)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, step, dataformats="HWC")
        elif isinstance(logger, WandbLogger):
            logger.log_image(key, [image], step=step, caption=[caption])


def _images_dir(trainer) -> Path:
    out = Path(trainer.default_root_dir) / "images"
    out.mkdir(parents=True, exist_ok=True)
    return out


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

    def on_validation_batch_end(
        self, trainer, pl_module, outputs: Any, batch: dict, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
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
        log_image(trainer, "val/grid", grid, step, caption)
        if self.save_png:
            iio.imwrite(_images_dir(trainer) / f"val_step{step:07d}.png", grid)


class BeforeAfterFigure(L.Callback):
    """At test end, writes ``<run dir>/images/before_after.png``: the test image with the most rain (the lowest
    PSNR of the rain input under ``protocol``, so the choice does not depend on the network) as ``rain | derained |
    attention (when the network returns one) | clean``, with the PSNR / SSIM of the rain and of the derained image
    under ``protocol`` (the scores of the run's own test table) written under them; also logged as
    ``test/before_after`` to TensorBoard / W&B. With several processes, among the images of the first one.

    Panels smaller than ``min_width`` pixels are enlarged by an integer factor (each pixel a square block, so the
    panels still show the exact pixels that were scored).
    """

    def __init__(self, protocol: str = "spanet", min_width: int = 384) -> None:
        if protocol not in PROTOCOL_FUNCTIONS:
            raise ConfigValueError(
                f"callbacks.before_after.protocol: {protocol!r} is not one of {sorted(PROTOCOL_FUNCTIONS)}"
            )
        self.protocol = protocol
        self.psnr = PROTOCOL_FUNCTIONS[protocol][0]
        self.min_width = min_width
        self._sample: Optional[dict] = None

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._sample = None

    def on_test_batch_end(
        self, trainer, pl_module, outputs: Any, batch: dict, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not trainer.is_global_zero or not isinstance(outputs, dict):
            return
        rain_psnr = self.psnr(batch["rain"].float(), batch["clean"].float())
        i = int(rain_psnr.argmin())
        if self._sample is not None and float(rain_psnr[i]) >= self._sample["rain_psnr"]:
            return
        attention = (outputs.get("vis") or {}).get("attention")
        self._sample = {
            "name": str(batch["name"][i]),
            "rain_psnr": float(rain_psnr[i]),
            "rain": _as_rgb(batch["rain"][i]),
            "derained": _as_rgb(outputs["out"][i]),
            "gt": _as_rgb(batch["clean"][i]),
            "attention": attention[i, 0].detach().float().cpu().clamp(0, 1) if torch.is_tensor(attention) else None,
        }

    def _scores(self, pl_module, name: str) -> Optional[dict]:
        reports = getattr(pl_module, "reports", {})
        try:
            return {
                who: reports[key]["per_image"][name][self.protocol]
                for who, key in (("rain", "test_input"), ("derained", "test"))
            }
        except KeyError:
            return None

    def on_test_end(self, trainer, pl_module) -> None:
        sample, self._sample = self._sample, None
        if sample is None or not trainer.is_global_zero:
            return
        from src.metrics.figures import compare_figure  # matplotlib: imported when a figure is drawn

        factor = max(1, -(-self.min_width // sample["rain"].shape[-1]))
        panels = {
            k: None if v is None else _enlarge(v.numpy(), factor)
            for k, v in sample.items()
            if k in ("rain", "derained", "gt", "attention")
        }
        scores = self._scores(pl_module, sample["name"])
        figure, _ = compare_figure(
            panels["rain"],
            panels["derained"],
            attention=panels["attention"],
            gt=panels["gt"],
            scores=scores,
            protocol=self.protocol,
            title=f"Derained ({sample['name']})",
        )
        log_image(trainer, "test/before_after", figure, trainer.global_step, sample["name"])
        iio.imwrite(_images_dir(trainer) / BEFORE_AFTER, figure)


def _enlarge(img: np.ndarray, factor: int) -> np.ndarray:
    """(3, H, W) or (H, W) array -> H x W [x 3] image enlarged ``factor`` times by repeating pixels."""
    if img.ndim == 3:
        img = img.transpose(1, 2, 0)
    return img.repeat(factor, axis=0).repeat(factor, axis=1)


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
