"""Guards of the Hydra entry points: nothing is written over, a refused process writes nothing, a failed job
leaves its traceback.

:func:`refuse_existing_run` refuses a run dir that already holds the results of a run (``src.train``: metrics,
checkpoints, logs; ``src.eval``: metrics.json) unless ``overwrite=true`` or, for training, the run resumes
there (``ckpt_path`` inside that run dir, ``resume=auto``, or a job that SLURM requeued) as the same run
(:meth:`src.runs.rundir.RunDir.refuse_changed_resume`). :class:`RunGuard` is the Hydra callback
(``conf/hydra/default.yaml``) that applies it, and takes the run dir's lock, BEFORE Hydra writes ``.hydra/`` or
the job's log file into the run dir: a run dir that another live process writes, or that holds a finished run, is
left byte for byte as it was. It also writes ``error.txt`` (the exception and its traceback) into the dir of every
job that raised. :func:`check_train_config` refuses config values a training run cannot work with. (A multirun
into an existing sweep dir is refused by the ``listing`` sweeper, hydra_plugins/derain_sweeper.)
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any, Mapping, Optional

from hydra.experimental.callback import Callback

from src.runs.rundir import (
    LOCK_FILE,
    ResumeConfigError,
    RunDir,
    RunDirExistsError,
    RunDirInUseError,
    RunDirLock,
    process_rank,
    requeued_by_slurm,
)
from src.utils.errors import ConfigValueError
from src.utils.files import atomic_write, is_inside

__all__ = [
    "RunGuard",
    "RunDirExistsError",
    "RunDirInUseError",
    "ResumeConfigError",
    "refuse_existing_run",
    "check_train_config",
    "write_error_file",
]

#: what a finished run leaves in its run dir, per task
RUN_OUTPUTS = {
    "train": ("metrics.json", "checkpoints", "csv", "tensorboard", "wandb", "images"),
    "eval": ("metrics.json", "csv", "tensorboard", "wandb"),
}
ERROR_FILE = "error.txt"
TEST_CKPTS = ("best", "last")

_refused: Optional[RunDirExistsError] = None  # set by RunGuard.on_run_start, raised by the entry point
_lock: Optional[RunDirLock] = None  # taken by RunGuard.on_run_start, kept until the run ends


def resumes_into(cfg: Mapping[str, Any], run_dir: str | os.PathLike) -> bool:
    """True when a training run continues an earlier run in ``run_dir`` (``resume=auto``, ``ckpt_path`` inside it,
    or a job that SLURM requeued: it continues from its own last.ckpt, src/runs/rundir.py)."""
    if cfg.get("task") == "train" and (cfg.get("resume") == "auto" or requeued_by_slurm()):
        return True  # resume=never starts afresh: it does not lift the guard
    ckpt = cfg.get("ckpt_path")
    return bool(ckpt) and cfg.get("task") == "train" and is_inside(str(ckpt), run_dir)


def refuse_existing_run(run_dir: str | os.PathLike, cfg: Mapping[str, Any], hydra_files: bool = False) -> None:
    """Raise :class:`RunDirExistsError` when ``run_dir`` already holds results of a ``cfg.task`` run (see the
    module docstring); ``hydra_files``: count Hydra's own ``.hydra/`` too (before Hydra has written this run's)."""
    global _refused
    if _refused is not None:  # found by RunGuard before Hydra would have written into the run dir
        exc, _refused = _refused, None
        raise exc
    names = RUN_OUTPUTS.get(str(cfg.get("task")), ())
    if not names or cfg.get("overwrite") or process_rank() > 0:
        return
    if resumes_into(cfg, run_dir):
        if hydra_files and cfg.get("task") == "train":
            RunDir(run_dir).refuse_changed_resume(cfg)
        return
    run_dir = Path(run_dir)
    found = [
        n
        for n in names + ((".hydra",) if hydra_files else ())
        if (run_dir / n).is_file() or ((run_dir / n).is_dir() and any((run_dir / n).iterdir()))
    ]
    if found:
        raise RunDirExistsError(
            f"{run_dir} already holds a {cfg.get('task')} run ({', '.join(found)}); refusing to write over it. "
            f"Choose a new run dir, resume it (ckpt_path=.../checkpoints/last.ckpt), or pass overwrite=true"
        )


def _key_of(trainer_cfg: Any, key: str, schedule_key: str) -> str:
    """The config key a user sets for ``trainer.<key>``: the schedule's, when the trainer takes it from there."""
    from omegaconf import OmegaConf

    bound = OmegaConf.is_config(trainer_cfg) and OmegaConf.is_interpolation(trainer_cfg, key)
    return f"schedule.{schedule_key}" if bound else f"trainer.{key}"


def check_train_config(cfg: Any) -> None:
    """Refuse values a training run cannot work with (:class:`~src.utils.errors.ConfigValueError` naming the key):
    ``max_steps`` 0 (nothing trained, untrained scores reported) or -1 with no epoch limit (trains forever),
    ``val_every`` <= 0, an unknown ``test_ckpt``."""
    if cfg.get("test_ckpt", "best") not in TEST_CKPTS:
        raise ConfigValueError(f"test_ckpt={cfg.test_ckpt!r}: expected one of {TEST_CKPTS}")
    trainer = cfg.trainer
    steps, epochs = trainer.get("max_steps", -1), trainer.get("max_epochs", -1)
    if steps == 0 or (steps is not None and steps < 0 and (epochs is None or epochs < 0)):
        key = _key_of(trainer, "max_steps", "max_steps")
        what = "would train nothing and report untrained scores" if steps == 0 else "would train forever"
        raise ConfigValueError(f"{key}={steps}: a training run needs a number of steps >= 1 ({key}={steps} {what})")
    every = trainer.get("val_check_interval")
    if every is not None and every <= 0:
        key = _key_of(trainer, "val_check_interval", "val_every")
        raise ConfigValueError(f"{key}={every}: validate every N >= 1 steps (or a fraction of an epoch in (0, 1])")


def write_error_file(job_dir: str | os.PathLike, exc: BaseException) -> Path:
    """``<job_dir>/error.txt``: first line ``<ExceptionType>: <message>``, then the full traceback."""
    text = f"{type(exc).__name__}: {exc}\n\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return atomic_write(Path(job_dir) / ERROR_FILE, text)


def _leave_run_dir_alone(config) -> None:
    """Hydra writes nothing into this run's dir: no ``.hydra/`` copy, no job log file."""
    from omegaconf import open_dict, read_write

    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.output_subdir = None
        logging_cfg = config.hydra.job_logging
        if logging_cfg and "file" in (logging_cfg.get("handlers") or {}):
            del logging_cfg.handlers["file"]
            root = logging_cfg.get("root") or {}
            if "handlers" in root:
                root.handlers = [h for h in root.handlers if h != "file"]


class RunGuard(Callback):
    """Hydra callback: takes the run dir's lock and refuses an existing run dir before Hydra writes there; leaves a
    finished run that a resume would only repeat untouched; error.txt for failed jobs.

    Hydra turns exceptions of callbacks into warnings, so a refusal is handed to the entry point:
    :func:`refuse_existing_run` raises it."""

    def on_run_start(self, config, **kwargs: Any) -> None:
        global _refused, _lock
        from hydra.core.hydra_config import HydraConfig

        if config.hydra.output_subdir is None:  # a DDP rank process re-entering its parent's run dir
            return
        HydraConfig.instance().set_config(config)  # so that ${hydra:...} in the run dir resolves
        run_dir = config.hydra.run.dir
        training = config.get("task") == "train" and process_rank() == 0
        try:
            if training and (Path(run_dir) / LOCK_FILE).exists():
                _lock = RunDirLock(run_dir).acquire(note=False)  # a run dir a live process writes: refused here
            refuse_existing_run(run_dir, config, hydra_files=True)
        except RunDirExistsError as exc:  # also RunDirInUseError, ResumeConfigError
            self.on_run_end(config)
            _refused = exc
            _leave_run_dir_alone(config)
            return
        if training and resumes_into(config, run_dir) and RunDir(run_dir).finished(config.trainer.max_steps):
            _leave_run_dir_alone(config)  # src.train finds it finished and does nothing
        elif training:
            _lock = _lock or RunDirLock(run_dir).acquire(note=False)
            _lock.note_holder()

    def on_run_end(self, config, **kwargs: Any) -> None:
        global _lock
        if _lock is not None:
            _lock.release()
            _lock = None

    def on_job_end(self, config, job_return: Optional[Any] = None, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        from src.runs import compat

        if job_return is None or job_return.status != JobStatus.FAILED or process_rank() > 0:
            return
        exc = compat.job_error(job_return)
        if isinstance(exc, BaseException) and not isinstance(exc, RunDirExistsError):
            write_error_file(config.hydra.runtime.output_dir, exc)


def take_guard_lock(run_dir: str | os.PathLike) -> Optional[RunDirLock]:
    """The lock :class:`RunGuard` took on ``run_dir`` before Hydra wrote there, handed over to the run (which
    releases it); None when it took none (a multirun job, a direct call of ``src.train.train``)."""
    global _lock
    lock, ours = _lock, _lock is not None and _lock.path.parent.resolve() == Path(run_dir).resolve()
    if ours:
        _lock = None
    return lock if ours else None
