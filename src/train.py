"""python -m src.train [overrides]: build data, model, trainer from config; fit; test the best checkpoint.

Writes into the run dir (logs/<task>/runs/<timestamp>/): .hydra/ (resolved config), checkpoints/ (best by
val/psnr_spanet, last), metrics.json (final validation and test reports of the best checkpoint), logger files.

A run never reports what it did not do: before fit every process must get a full training batch
(``src.data.base.require_train_batch``); a run that stops before ``max_steps`` or scores fewer images than its
validation / test set holds writes ``"complete": false`` and the reasons (``"incomplete"``) into metrics.json
and exits non-zero, unless the shortening was asked for (``trainer.fast_dev_run``, ``limit_*_batches``,
``overfit_batches``: the debug configs). A diverged run stops before saving (``src.lit.checkpoint_io``).
An existing run dir is not written over unless ``overwrite=true`` or the run resumes there (``ckpt_path``).
"""

from __future__ import annotations

import logging

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher
from omegaconf import DictConfig, OmegaConf

from src.lit.checkpoint_io import AtomicCheckpointIO

from src.utils.ddp import ddp_job
from src.utils.guards import refuse_existing_run
from src.utils.report import print_report
from src.utils.run import finish_wandb, instantiate_group, require_set, setup_environment, write_json

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


def build_trainer(cfg: DictConfig, loggers: list) -> L.Trainer:
    """The Trainer of ``cfg.trainer`` with the suite's checkpoint writer; options that cannot work are refused."""
    callbacks = instantiate_group(cfg.get("callbacks"))
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


def train(cfg: DictConfig) -> dict:
    setup_environment(cfg)
    require_set(cfg, "data")
    refuse_existing_run(cfg.paths.output_dir, cfg)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    model.suite_config = OmegaConf.to_container(cfg, resolve=True)
    loggers = instantiate_group(cfg.get("logger"))
    trainer = build_trainer(cfg, loggers)
    for lg in loggers:
        lg.log_hyperparams(model.suite_config)

    try:
        with ddp_job(trainer):
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            if not best and not trainer.fast_dev_run:
                log.warning("no best checkpoint was saved; final metrics use the last weights")
            ckpt = best or None
            trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
            if cfg.get("test"):
                trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        incomplete = incomplete_reasons(trainer, datamodule, model)
        n_bad = int(trainer.strategy.reduce(torch.tensor(float(len(model.bad_files))), reduce_op="sum"))
        if n_bad:
            log.warning("skipped %d unreadable training files (data.on_bad_file=skip), first: %s", n_bad,
                        model.bad_files[:1])
        result = {
            "task": cfg.task, "experiment": cfg.get("experiment_name"), **cfg.run_info, "seed": cfg.seed,
            "ckpt_path": ckpt, "global_step": trainer.global_step, "max_steps": trainer.max_steps,
            "complete": not incomplete, "incomplete": incomplete,
            "shortened_on_purpose": shortened_on_purpose(trainer),
            "bad_files": {"skipped": n_bad, "first": list(dict.fromkeys(model.bad_files))[:20]},
            "val": model.reports.get("val"), "val_input": model.reports.get("val_input"),
            "test": model.reports.get("test"), "test_input": model.reports.get("test_input"),
        }
        if trainer.is_global_zero:
            write_json(result, f"{cfg.paths.output_dir}/metrics.json")
            print_report(result, title=f"{cfg.run_info.model} on {cfg.run_info.data}")
        return result
    finally:
        finish_wandb()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    result = train(cfg)
    if result["incomplete"] and not result["shortened_on_purpose"]:
        raise IncompleteRunError(f"the run did not do all it was configured to do ({'; '.join(result['incomplete'])}); "
                                 f"metrics.json in {cfg.paths.output_dir} records this as complete: false")
    test = result.get("test") or result.get("val") or {}
    return test.get("mean", {}).get("spanet", {}).get("psnr")  # the value a sweeper would optimise


if __name__ == "__main__":
    main()
