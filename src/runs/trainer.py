"""The Trainer of a src.train run, and facts about what it did.

* :func:`build_trainer`: ``cfg.trainer`` with the suite's checkpoint writer (:mod:`src.runs.checkpoint_io`); the
  learning-rate monitor only when there is a logger to write to; no progress bar when the config removed it
  (Lightning would fall back to its own, which counts epochs of a step-counted run: "Epoch 1/-2"); spawn-based
  strategies refused up front.
* :func:`tested_weights`: the checkpoint ``test_ckpt`` names after fit.
* :func:`shortened_on_purpose`, :func:`count_bad_files`: fields of metrics.json.
"""

from __future__ import annotations

import logging
from typing import Optional

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.plugins.io import CheckpointIO
from omegaconf import DictConfig

from src.runs.checkpoint_io import AtomicCheckpointIO
from src.runs.compat import MultiProcessingLauncher
from src.utils.config import instantiate_group
from src.utils.errors import ConfigValueError

log = logging.getLogger(__name__)

TEST_CKPTS = ("best", "last")


class IncompleteRunError(RuntimeError):
    """The run did less than its config asked for (stopped early, scored fewer images); metrics.json says what."""


def shortened_on_purpose(trainer: L.Trainer) -> bool:
    """True when the config asked Lightning to run less than the whole schedule / data (the debug configs)."""
    limits = (trainer.limit_train_batches, trainer.limit_val_batches, trainer.limit_test_batches)
    # an int is a number of batches (1 = one batch), a float a fraction (1.0 = all)
    return (
        bool(trainer.fast_dev_run)
        or bool(trainer.overfit_batches)
        or any(isinstance(x, int) or x != 1.0 for x in limits)
    )


def build_trainer(cfg: DictConfig, loggers: list, extra_callbacks: tuple = ()) -> L.Trainer:
    """The Trainer of ``cfg.trainer`` with the suite's checkpoint writer; options that cannot work are refused.
    ``extra_callbacks``: the run's own (cost, signals, speed options; src/runs/training.py) after the config's."""
    callbacks = instantiate_group(cfg.get("callbacks")) + list(extra_callbacks)
    if not loggers:  # LearningRateMonitor refuses a Trainer without logger: nothing to monitor into
        dropped = [c for c in callbacks if isinstance(c, LearningRateMonitor)]
        if dropped:
            log.info("no logger configured: learning-rate monitoring is off")
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    plugins = [instantiate(p) if isinstance(p, DictConfig) else p for p in cfg.trainer.get("plugins") or []]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    options = {}
    if "enable_progress_bar" not in cfg.trainer:  # callbacks.progress_bar=null: no bar at all
        options["enable_progress_bar"] = any(isinstance(c, ProgressBar) for c in callbacks)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins, **options)
    if isinstance(trainer.strategy.launcher, MultiProcessingLauncher):
        raise ConfigValueError(
            f"trainer.strategy={type(trainer.strategy).__name__} starts its processes by spawning/forking "
            f"({getattr(trainer.strategy, '_start_method', '?')}), and their results (best checkpoint, metric "
            f"reports) do not come back to this process. Use trainer=ddp (one process per device, started as "
            f"a script) instead"
        )
    return trainer


def tested_weights(cfg: DictConfig, trainer: L.Trainer) -> Optional[str]:
    """The checkpoint that ``test_ckpt`` names after fit: the best checkpoint's path, or None for the weights in
    memory (``last``: the final weights; ``best`` when no best checkpoint was saved, with a warning)."""
    if cfg.get("test_ckpt", "best") == "last":
        return None
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if not best and not trainer.fast_dev_run:
        log.warning("no best checkpoint was saved; final metrics use the last weights")
    return best or None


def count_bad_files(trainer: L.Trainer, model) -> int:
    """Times a training file was skipped as unreadable, summed over the processes (call on every rank)."""
    n = int(trainer.strategy.reduce(torch.tensor(float(len(model.bad_files))), reduce_op="sum"))
    if n:
        log.warning("skipped %d unreadable training files (data.on_bad_file=skip), first: %s", n, model.bad_files[:1])
    return n
