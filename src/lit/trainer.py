"""The Trainer of a src.train run, and what the run did not do.

* :func:`build_trainer`: ``cfg.trainer`` with the suite's checkpoint writer (:mod:`src.lit.checkpoint_io`); the
  learning-rate monitor only when there is a logger to write to; spawn-based strategies refused up front.
* :func:`incomplete_reasons` / :func:`shortened_on_purpose`: the ``complete`` / ``incomplete`` /
  ``shortened_on_purpose`` fields of metrics.json.
* :func:`count_bad_files`: training files skipped as unreadable (``data.on_bad_file=skip``), all processes.
"""

from __future__ import annotations

import logging

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher
from omegaconf import DictConfig

from src.lit.checkpoint_io import AtomicCheckpointIO
from src.utils.run import instantiate_group

log = logging.getLogger(__name__)


class IncompleteRunError(RuntimeError):
    """The run did less than its config asked for (stopped early, scored fewer images); metrics.json says what."""


def shortened_on_purpose(trainer: L.Trainer) -> bool:
    """True when the config asked Lightning to run less than the whole schedule / data (the debug configs)."""
    limits = (trainer.limit_train_batches, trainer.limit_val_batches, trainer.limit_test_batches)
    # an int is a number of batches (1 = one batch), a float a fraction (1.0 = all)
    return bool(trainer.fast_dev_run) or bool(trainer.overfit_batches) or any(
        isinstance(x, int) or x != 1.0 for x in limits)


def incomplete_reasons(trainer: L.Trainer, datamodule, model) -> list[str]:
    """What the run did not do: steps short of ``max_steps``, images of a split left unscored."""
    reasons = []
    if trainer.max_steps > 0 and trainer.global_step < trainer.max_steps:
        status = trainer.state.status.value if trainer.interrupted else "stopped"
        reasons.append(f"training {status} at step {trainer.global_step} of max_steps={trainer.max_steps}")
    for split, ds in (("val", datamodule.val_set), ("test", datamodule.test_set or datamodule.val_set)):
        report = model.reports.get(split)
        if report is not None and ds is not None and report["n_images"] < len(ds):
            reasons.append(f"{split}: scored {report['n_images']} of {len(ds)} images")
    return reasons


def build_trainer(cfg: DictConfig, loggers: list, extra_callbacks: tuple = ()) -> L.Trainer:
    """The Trainer of ``cfg.trainer`` with the suite's checkpoint writer; options that cannot work are refused.
    ``extra_callbacks``: the run's own (cost, signals, speed options; src/train.py) after the config's."""
    callbacks = instantiate_group(cfg.get("callbacks")) + list(extra_callbacks)
    if not loggers:  # LearningRateMonitor refuses a Trainer without logger: nothing to monitor into
        dropped = [c for c in callbacks if isinstance(c, LearningRateMonitor)]
        if dropped:
            log.info("no logger configured: learning-rate monitoring is off")
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    plugins = [instantiate(p) if isinstance(p, DictConfig) else p for p in cfg.trainer.get("plugins") or []]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins)
    if isinstance(trainer.strategy.launcher, _MultiProcessingLauncher):
        raise ValueError(
            f"trainer.strategy={type(trainer.strategy).__name__} starts its processes by spawning/forking "
            f"({getattr(trainer.strategy, '_start_method', '?')}), and their results (best checkpoint, metric "
            f"reports) do not come back to this process. Use trainer=ddp (one process per device, started as "
            f"a script) instead")
    return trainer


def count_bad_files(trainer: L.Trainer, model) -> int:
    """Times a training file was skipped as unreadable, summed over the processes (call on every rank)."""
    n = int(trainer.strategy.reduce(torch.tensor(float(len(model.bad_files))), reduce_op="sum"))
    if n:
        log.warning("skipped %d unreadable training files (data.on_bad_file=skip), first: %s", n, model.bad_files[:1])
    return n
