"""python -m src.train [overrides]: build data, model, trainer from config; fit; test the chosen weights.

Writes into the run dir (logs/<task>/runs/<timestamp>/): .hydra/ (resolved config), checkpoints/ (best by
val/psnr_spanet, last), metrics.json (final validation and test reports of the tested weights, and the run's
cost), logger files.

``test_ckpt`` picks the weights that are validated and tested after fit: ``best`` (default), the best
checkpoint by the monitored validation score, or ``last``, the final weights of the run (the SPANet paper's
practice: its release tested the final 40K-iteration checkpoint).

A run never reports what it did not do: before fit every process must get a full training batch
(``src.data.base.require_train_batch``); a run that stops before ``max_steps`` or scores fewer images than its
validation / test set holds writes ``"complete": false`` and the reasons (``"incomplete"``) into metrics.json
and exits non-zero, unless the shortening was asked for (``trainer.fast_dev_run``, ``limit_*_batches``,
``overfit_batches``: the debug configs). A diverged run stops before saving (``src.lit.checkpoint_io``).
An existing run dir is not written over unless ``overwrite=true`` or the run resumes there.

A run continues exactly where it stopped (same step, learning rate, data order) from ``ckpt_path=<run>/
checkpoints/last.ckpt`` (in that run's dir) or with ``resume=auto`` (the run dir's own last.ckpt; a job that
SLURM requeued does this by itself); see src/utils/resume.py. SIGTERM / SIGINT / SIGUSR1 save last.ckpt and
exit 143 / 130 / 138 (src/lit/preemption.py). One process writes a run dir at a time (a lock).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Optional

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from src.lit.cost import RunCost
from src.lit.preemption import ContinueLogs, Preemption, RunInterrupted, SignalGuard
from src.lit.trainer import IncompleteRunError, build_trainer, count_bad_files, incomplete_reasons, shortened_on_purpose
from src.utils.checkpoint import check_resumable
from src.utils.compute import apply_compute
from src.utils.ddp import choose_strategy, ddp_job
from src.utils.guards import refuse_existing_run
from src.utils.report import NO_TEST_SPLIT, print_report
from src.utils.resume import (
    INTERRUPTED_FILE, LAST, RunDirLock, continue_csv_logger, forget_earlier_run, interruptions, process_rank,
    record_interruption, resume_checkpoint, resume_command, sweep_job, use_run_dir_wandb_id,
)
from src.utils.run import finish_wandb, instantiate_group, require_set, setup_environment, write_json
from src.utils.errors import refusals_exit

log = logging.getLogger(__name__)


TEST_CKPTS = ("best", "last")


def tested_weights(cfg: DictConfig, trainer: L.Trainer) -> Optional[str]:
    """The checkpoint that ``test_ckpt`` names after fit: the best checkpoint's path, or None for the weights in
    memory (``last``: the final weights; ``best`` when no best checkpoint was saved, with a warning)."""
    if cfg.get("test_ckpt", "best") == "last":
        return None
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if not best and not trainer.fast_dev_run:
        log.warning("no best checkpoint was saved; final metrics use the last weights")
    return best or None


def train(cfg: DictConfig) -> dict:
    setup_environment(cfg)
    if cfg.get("test_ckpt", "best") not in TEST_CKPTS:
        raise ValueError(f"test_ckpt={cfg.test_ckpt!r}: expected one of {TEST_CKPTS}")
    require_set(cfg, "data")
    refuse_existing_run(cfg.paths.output_dir, cfg)
    compute = apply_compute(cfg)  # compute=equal_*: the schedule stretched to the budget (after the resume check)
    run_dir = Path(cfg.paths.output_dir)
    rank0 = process_rank() == 0
    with contextlib.ExitStack() as stack:
        if rank0:
            stack.enter_context(RunDirLock(run_dir))
        guard = stack.enter_context(SignalGuard())
        ckpt_path = resume_checkpoint(cfg.get("resume"), cfg.get("ckpt_path"), run_dir)
        if rank0 and not ckpt_path:
            forget_earlier_run(run_dir)
        try:
            result = _fit_and_test(cfg, run_dir, ckpt_path, guard, rank0, compute)
        except (RunInterrupted, SIGTERMException) as exc:
            if not isinstance(exc, RunInterrupted):  # Lightning's, from a SIGTERM during the final val/test
                exc = RunInterrupted(guard.received or 15, -1, None)
            log.error("%s", exc)
            if rank0:
                sweep_dir, job = sweep_job()
                record_interruption(run_dir, {
                    "signal": exc.signal_name, "exit_code": exc.code, "step": exc.step, "checkpoint": exc.checkpoint,
                    "requeued": exc.requeued, "run_dir": str(run_dir), **job,
                    "resume": resume_command(exc.checkpoint),
                }, sweep_dir)
            raise exc from None
    return result


def _fit_and_test(cfg: DictConfig, run_dir: Path, ckpt_path: str | None, guard: SignalGuard, rank0: bool,
                  compute: dict) -> dict:
    L.seed_everything(cfg.seed, workers=True)
    if ckpt_path:  # only a checkpoint of a src.train run of this model; other weights go to model.init_from
        check_resumable(ckpt_path, model=cfg.run_info.model)
    choose_strategy(cfg.trainer)
    use_run_dir_wandb_id(cfg, run_dir, rank0)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, **({"init_from": None} if ckpt_path else {}))  # resuming restores all weights
    model.suite_config = OmegaConf.to_container(cfg, resolve=True)
    loggers = instantiate_group(cfg.get("logger"))
    cost = RunCost()
    extra = [cost, Preemption(guard, run_dir / "checkpoints" / LAST), ContinueLogs(resumed=bool(ckpt_path))]
    if cfg.get("speed") is not None:
        extra.append(instantiate(cfg.speed))
    trainer = build_trainer(cfg, loggers, extra_callbacks=extra)
    if ckpt_path:
        for lg in loggers:
            if isinstance(lg, CSVLogger):
                continue_csv_logger(lg)
    for lg in loggers:
        lg.log_hyperparams(model.suite_config)

    try:
        with ddp_job(trainer):
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
            if guard.received is not None:  # a signal after the last training step
                raise RunInterrupted(guard.received, trainer.global_step, None)
            ckpt = tested_weights(cfg, trainer)
            trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)
            # a data set without a test split is not "tested" on its validation split (report.NO_TEST_SPLIT)
            no_test_split = bool(cfg.get("test")) and datamodule.test_set is None
            if cfg.get("test") and not no_test_split:
                trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)
            if guard.received is not None:
                raise RunInterrupted(guard.received, trainer.global_step, None)
            n_bad = count_bad_files(trainer, model)  # summed over processes, so inside the DDP job
        incomplete = incomplete_reasons(trainer, datamodule, model)
        result = {
            "task": cfg.task, "experiment": cfg.get("experiment_name"), **cfg.run_info, "seed": cfg.seed,
            "test_ckpt": cfg.get("test_ckpt", "best"), "ckpt_path": ckpt, "global_step": trainer.global_step,
            "max_steps": trainer.max_steps, "complete": not incomplete, "incomplete": incomplete,
            "shortened_on_purpose": shortened_on_purpose(trainer),
            "bad_files": {"skipped": n_bad, "first": list(dict.fromkeys(model.bad_files))[:20]},
            "val": model.reports.get("val"), "val_input": model.reports.get("val_input"),
            "test": model.reports.get("test"), "test_input": model.reports.get("test_input"),
            "test_note": NO_TEST_SPLIT if no_test_split else None,
            "cost": cost.report(trainer), "compute": compute,
            "resumed_from": ckpt_path, "interruptions": interruptions(run_dir),
        }
        if trainer.is_global_zero:
            write_json(result, f"{cfg.paths.output_dir}/metrics.json")
            (run_dir / INTERRUPTED_FILE).unlink(missing_ok=True)
            print_report(result, title=f"{cfg.run_info.model} on {cfg.run_info.data}")
        return result
    finally:
        finish_wandb()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@refusals_exit
def main(cfg: DictConfig) -> float | None:
    result = train(cfg)
    if result["incomplete"] and not result["shortened_on_purpose"]:
        raise IncompleteRunError(f"the run did not do all it was configured to do ({'; '.join(result['incomplete'])}); "
                                 f"metrics.json in {cfg.paths.output_dir} records this as complete: false")
    test = result.get("test") or result.get("val") or {}
    return test.get("mean", {}).get("spanet", {}).get("psnr")  # the value a sweeper would optimise


if __name__ == "__main__":
    main()
