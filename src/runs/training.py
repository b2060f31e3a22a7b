"""One ``src.train`` run around ``trainer.fit`` / ``validate`` / ``test``: :class:`TrainingRun`.

src/train.py holds the calls a reader expects (data, model, trainer, fit, validate, test); this class holds what
happens around them:

* entering: the run dir's lock (the process of rank 0; :mod:`src.runs.rundir`), the checkpoint to resume from,
  whether the run already finished (then :attr:`TrainingRun.finished` holds its result and nothing is done), and
  signal handling (:mod:`src.runs.preemption`);
* :meth:`TrainingRun.trainer`: loggers (the CSV log and the W&B run continued, :mod:`src.runs.logs`), the run's
  own callbacks (cost, pre-emption, log continuity, speed options) and DDP (:mod:`src.runs.ddp`);
* :meth:`TrainingRun.job`: one fit/validate/test under DDP, W&B closed afterwards; a signal that arrived after
  the last training step stops the run there (:meth:`TrainingRun.stop_if_signalled`);
* :meth:`TrainingRun.result`: the :class:`~src.runs.result.RunResult`, and :meth:`TrainingRun.finish`: metrics.json
  and the console tables;
* leaving after a signal: the interruption records (:meth:`TrainingRun._interrupted`: ``interrupted.json`` with
  the command that resumes, ``interruptions.jsonl``, the sweep's ``interrupted.jsonl``) and exit status
  143 / 130 / 138.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator, Optional

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from src.runs.cost import RunCost
from src.runs.ddp import choose_strategy, ddp_job
from src.runs.environment import finish_wandb
from src.runs.guards import take_guard_lock
from src.runs.logs import ContinueLogs, continue_csv_logger, use_run_dir_wandb_id
from src.runs.preemption import Preemption, RunInterrupted, SignalGuard
from src.runs.report import NO_TEST_SPLIT, print_report
from src.runs.result import RunResult, incomplete_reasons
from src.runs.rundir import RunDir, process_rank, resume_command, sweep_job
from src.runs.trainer import IncompleteRunError, build_trainer, count_bad_files, shortened_on_purpose
from src.utils.checkpoint import check_resumable
from src.utils.config import instantiate_group

log = logging.getLogger(__name__)


class TrainingRun:
    """Context manager around one training run of ``cfg`` (see the module docstring)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.dir = RunDir(cfg.paths.output_dir)
        self.rank0 = process_rank() == 0
        self.guard = SignalGuard()
        self.cost = RunCost()
        self.ckpt_path: Optional[str] = None
        self.resumed_at: Optional[int] = None  # the step of the checkpoint it resumes from
        self.finished: Optional[RunResult] = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> TrainingRun:
        cfg = self.cfg
        with contextlib.ExitStack() as stack:  # undone if anything below raises
            lock = (take_guard_lock(self.dir.path) or self.dir.lock().acquire(note=False)) if self.rank0 else None
            if lock is not None:
                stack.callback(lock.release)
            self.ckpt_path = self.dir.resume_checkpoint(cfg.get("resume"), cfg.get("ckpt_path"))
            self.finished = self.dir.finished(cfg.trainer.max_steps) if self.ckpt_path else None
            if self.finished is not None:
                log.info(
                    "%s already finished at step %s (its metrics.json): nothing to do",
                    self.dir.path,
                    self.finished.global_step,
                )
            else:
                if self.ckpt_path:  # only a checkpoint of a src.train run of this model
                    ckpt = check_resumable(self.ckpt_path, model=cfg.run_info.model)
                    self.resumed_at = int(ckpt.contents.get("global_step") or 0)
                if lock is not None:
                    lock.note_holder()
                stack.enter_context(self.guard)
                if self.rank0 and not self.ckpt_path:
                    self.dir.forget_earlier_run()
            self._stack = stack.pop_all()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        with self._stack:
            if isinstance(exc, (RunInterrupted, SIGTERMException)):
                raise self._interrupted(exc) from None

    def _interrupted(self, exc: BaseException) -> RunInterrupted:
        """What an interruption leaves behind: the records of the run dir (and the sweep), and the exit status."""
        if not isinstance(exc, RunInterrupted):  # Lightning's, from a SIGTERM during the final val/test
            exc = RunInterrupted(self.guard.received or 15, -1, None)
        log.error("%s", exc)
        if self.rank0:
            sweep_dir, job = sweep_job()
            self.dir.record_interruption(
                {
                    "signal": exc.signal_name,
                    "exit_code": exc.code,
                    "step": exc.step,
                    "checkpoint": exc.checkpoint,
                    "requeued": exc.requeued,
                    "run_dir": str(self.dir.path),
                    **job,
                    "resume": resume_command(exc.checkpoint),
                },
                sweep_dir,
            )
        return exc

    def trainer(self, model) -> L.Trainer:
        """The Trainer of the run: config callbacks and loggers, and the run's own callbacks (cost, signals)."""
        cfg = self.cfg
        choose_strategy(cfg.trainer)
        use_run_dir_wandb_id(cfg, self.dir, self.rank0)
        loggers = instantiate_group(cfg.get("logger"))
        extra = [self.cost, Preemption(self.guard, self.dir.last_checkpoint), ContinueLogs(self.resumed_at)]
        if cfg.get("speed") is not None:
            extra.append(instantiate(cfg.speed))
        trainer = build_trainer(cfg, loggers, extra_callbacks=extra)
        for lg in loggers:
            if self.ckpt_path and isinstance(lg, CSVLogger):
                continue_csv_logger(lg)
            lg.log_hyperparams(model.suite_config)
        return trainer

    @contextlib.contextmanager
    def job(self, trainer: L.Trainer) -> Iterator[None]:
        try:
            with ddp_job(trainer):
                yield
        finally:
            finish_wandb()

    def stop_if_signalled(self, trainer: L.Trainer) -> None:
        """A signal that arrived after the last training step (no checkpoint is due): the run stops here."""
        if self.guard.received is not None:
            raise RunInterrupted(self.guard.received, trainer.global_step, None)

    def result(self, trainer: L.Trainer, datamodule, model, tested: Optional[str], compute: dict) -> RunResult:
        """metrics.json's content (call on every process: the bad-file count is summed over them); ``compute``:
        what :func:`src.runs.compute.apply_compute` did to the schedule."""
        cfg, info = self.cfg, dict(self.cfg.run_info)
        n_bad = count_bad_files(trainer, model)
        result = RunResult(
            task=cfg.task,
            experiment=cfg.get("experiment_name"),
            model=info.pop("model", None),
            data=info.pop("data", None),
            schedule=info.pop("schedule", None),
            extra=info,
            seed=cfg.seed,
            test_ckpt=cfg.get("test_ckpt", "best"),
            ckpt_path=tested,
            global_step=trainer.global_step,
            max_steps=trainer.max_steps,
            shortened_on_purpose=shortened_on_purpose(trainer),
            bad_files={"skipped": n_bad, "first": list(dict.fromkeys(model.bad_files))[:20]},
            val=model.reports.get("val"),
            val_input=model.reports.get("val_input"),
            test=model.reports.get("test"),
            test_input=model.reports.get("test_input"),
            test_note=NO_TEST_SPLIT if cfg.get("test") and datamodule.test_set is None else None,
            cost=self.cost.report(trainer),
            compute=compute,
            resumed_from=self.ckpt_path,
            interruptions=self.dir.interruptions(),
            started=self.cost.started(),
        )
        sizes = {"val": datamodule.val_set, "test": datamodule.test_set or datamodule.val_set}
        status = trainer.state.status.value if trainer.interrupted else "stopped"
        result.incomplete = incomplete_reasons(result, {k: v and len(v) for k, v in sizes.items()}, status)
        result.complete = not result.incomplete
        return result

    def finish(self, result: RunResult, trainer: L.Trainer) -> None:
        """metrics.json and the console tables (the process of rank 0)."""
        if trainer.is_global_zero:
            self.dir.finish(result)
            print_report(result, title=f"{result.model} on {result.data}")


def raise_if_incomplete(result: RunResult, run_dir: str) -> None:
    """A run that did less than asked (and not on purpose) ends with an error, after metrics.json says so."""
    if result.incomplete and not result.shortened_on_purpose:
        raise IncompleteRunError(
            f"the run did not do all it was configured to do ({'; '.join(result.incomplete)}); "
            f"metrics.json in {run_dir} records this as complete: false"
        )


def picture_line(run_dir: str) -> Optional[str]:
    """The line that ends a run's console output: where its before/after picture is (when the run wrote one)."""
    picture = Path(run_dir) / "images" / "before_after.png"
    return f"before/after picture: {picture}" if picture.is_file() and process_rank() == 0 else None
