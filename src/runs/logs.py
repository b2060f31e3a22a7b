"""The loggers of a run: one CSV log and one W&B run per run dir, however many parts the run took.

* :class:`WandbLogger` (conf/logger/wandb.yaml): Lightning's, without an argument that current wandb warns about.

* :func:`continue_csv_logger` makes Lightning's ``CSVLogger`` of a resumed run append to the run's
  ``metrics.csv`` (it would replace it), and :class:`ContinueLogs` drops the rows logged after the checkpoint the
  run resumed from (they are logged again) and flushes the CSV with every checkpoint (rows up to a checkpoint are
  never lost to a kill).
* :func:`use_run_dir_wandb_id`: every W&B logger of the run continues the W&B run whose id the run dir keeps.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Optional

import lightning as L
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from omegaconf import DictConfig, open_dict

from src.runs import compat
from src.runs.rundir import RunDir


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` without the ``anonymous`` argument it always passes to ``wandb.init``: current
    wandb ignores that setting and prints "The anonymous setting has no effect" on every run."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        compat.drop_wandb_init_arg(self, "anonymous")


def continue_csv(metrics_csv: Path, step: int) -> list[str]:
    """Prepare a resumed run's CSV log: keep the rows logged before ``step`` (those after it were logged past the
    checkpoint and are logged again by the resumed run); returns the header for the logger to append with."""
    if not metrics_csv.is_file():
        return []
    with open(metrics_csv, newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = [r for r in reader if r.get("step", "") == "" or int(float(r["step"])) < step]
    tmp = metrics_csv.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, metrics_csv)
    return header


def continue_csv_logger(logger) -> None:
    """Make a Lightning ``CSVLogger`` append to its existing ``metrics.csv`` instead of deleting it, as it does
    when its dir is not empty (the rows logged past the checkpoint are dropped at the start of training by
    :class:`ContinueLogs`)."""
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    path = Path(logger.log_dir) / ExperimentWriter.NAME_METRICS_FILE
    compat.appending_csv_writer(logger, continue_csv(path, step=2**62) if path.is_file() else [])


class ContinueLogs(L.Callback):
    """Keeps CSV logs continuous over interruptions: flushes them with every checkpoint and, in a run resumed from
    the checkpoint of step ``resumed_at``, drops the rows logged from that step on (they are logged again; also
    when the resumed fit has no step left to train and only validates and tests)."""

    def __init__(self, resumed_at: Optional[int] = None) -> None:
        self.resumed_at = resumed_at

    @staticmethod
    def _csv_loggers(trainer):
        from lightning.pytorch.loggers import CSVLogger

        return [lg for lg in trainer.loggers if isinstance(lg, CSVLogger)]

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.resumed_at is not None and trainer.is_global_zero:
            for lg in self._csv_loggers(trainer):
                continue_csv(Path(lg.log_dir) / "metrics.csv", self.resumed_at)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        for lg in self._csv_loggers(trainer):
            lg.save()


def use_run_dir_wandb_id(cfg: DictConfig, run_dir: RunDir, rank0: bool) -> None:
    """Every W&B logger of the run continues the run dir's W&B run (id kept in the run dir)."""
    loggers = cfg.get("logger") or {}
    for _key, conf in loggers.items():
        if conf is not None and str(conf.get("_target_", "")).endswith("WandbLogger") and rank0:
            with open_dict(cfg):
                conf.id = run_dir.wandb_run_id()
                conf.resume = "allow"
