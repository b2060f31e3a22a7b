"""Guards of the Hydra entry points: a finished run is not written over, a failed job leaves its traceback.

:func:`refuse_existing_run` refuses a run dir that already holds the results of a run (``src.train``: metrics,
checkpoints, logs; ``src.eval``: metrics.json) unless ``overwrite=true`` or, for training, the run resumes
there (``ckpt_path`` inside that run dir, ``resume=auto``, or a job that SLURM requeued). :class:`RunGuard` is
the Hydra callback (``conf/hydra/default.yaml``) that applies it BEFORE Hydra writes ``.hydra/`` into the run dir
and writes ``error.txt`` (the exception and its traceback) into the dir of every job that raised; the listing
sweeper (``hydra_plugins/derain_sweeper``) refuses a multirun into an existing sweep dir.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any, Mapping, Optional

from hydra.experimental.callback import Callback

from src.utils.errors import OutputExistsError
from src.utils.files import atomic_write, is_inside
from src.utils.resume import process_rank, requeued_by_slurm

#: what a finished run leaves in its run dir, per task
RUN_OUTPUTS = {
    "train": ("metrics.json", "checkpoints", "csv", "tensorboard", "wandb", "images"),
    "eval": ("metrics.json", "csv", "tensorboard", "wandb"),
}
ERROR_FILE = "error.txt"


class RunDirExistsError(OutputExistsError):
    """The run dir (or sweep dir) already holds a run; nothing was written there."""


_refused: Optional[RunDirExistsError] = None  # set by RunGuard.on_run_start, raised by the entry point


def resumes_into(cfg: Mapping[str, Any], run_dir: str | os.PathLike) -> bool:
    """True when a training run continues an earlier run in ``run_dir`` (``resume=auto``, ``ckpt_path`` inside it,
    or a job that SLURM requeued: it continues from its own last.ckpt, src/utils/resume.py)."""
    if cfg.get("task") == "train" and (cfg.get("resume") == "auto" or requeued_by_slurm()):
        return True  # resume=never starts afresh: it does not lift the guard
    ckpt = cfg.get("ckpt_path")
    return bool(ckpt) and cfg.get("task") == "train" and is_inside(str(ckpt), run_dir)


def refuse_existing_run(run_dir: str | os.PathLike, cfg: Mapping[str, Any], hydra_files: bool = False) -> None:
    """Raise ``FileExistsError`` when ``run_dir`` already holds results of a ``cfg.task`` run (see the module
    docstring); ``hydra_files``: count Hydra's own ``.hydra/`` too (before Hydra has written this run's)."""
    global _refused
    if _refused is not None:  # found by RunGuard before Hydra would have written .hydra/ there
        exc, _refused = _refused, None
        raise exc
    names = RUN_OUTPUTS.get(str(cfg.get("task")), ())
    if not names or cfg.get("overwrite") or process_rank() > 0:
        return
    if resumes_into(cfg, run_dir):
        if hydra_files and cfg.get("task") == "train":
            refuse_changed_resume(run_dir, cfg)
        return
    run_dir = Path(run_dir)
    found = [n for n in names + ((".hydra",) if hydra_files else ())
             if (run_dir / n).is_file() or ((run_dir / n).is_dir() and any((run_dir / n).iterdir()))]
    if found:
        raise RunDirExistsError(
            f"{run_dir} already holds a {cfg.get('task')} run ({', '.join(found)}); refusing to write over it. "
            f"Choose a new run dir, resume it (ckpt_path=.../checkpoints/last.ckpt), or pass overwrite=true")


#: what a resumed run may change: where the data lie, how they are loaded, how long the run goes on
RESUME_MAY_CHANGE = ("schedule.max_steps", "data.root", "data.num_workers", "data.pin_memory",
                     "data.persistent_workers", "data.on_bad_file")
#: what must stay as the interrupted run had it (its .hydra/config.yaml)
RESUME_MUST_MATCH = ("model", "data", "schedule", "seed", "compute")


class ResumeConfigError(RunDirExistsError):
    """A resume into a run dir whose run was configured differently; nothing was written there."""


def _flat(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}.{key}"))
        return out
    return {prefix: node}


def refuse_changed_resume(run_dir: str | os.PathLike, cfg: Mapping[str, Any]) -> None:
    """Refuse to resume a run with another model, data, schedule or seed than the run had (compared, unresolved,
    with the run dir's ``.hydra/config.yaml``): ``ckpt_path=`` alone composes the DEFAULT config, which would
    silently continue the run as something else. Only :data:`RESUME_MAY_CHANGE` may differ."""
    from omegaconf import DictConfig, OmegaConf

    saved = Path(run_dir) / ".hydra" / "config.yaml"
    if not saved.is_file():
        return
    before, now = OmegaConf.load(saved), cfg
    flat_before, flat_now = {}, {}
    for group in RESUME_MUST_MATCH:
        for conf, flat in ((before, flat_before), (now, flat_now)):
            node = conf.get(group) if hasattr(conf, "get") else None
            if isinstance(node, DictConfig):
                node = OmegaConf.to_container(node, resolve=False)
            flat.update(_flat(node, group))
    diffs = [f"{k}: {flat_before.get(k, '<unset>')!r} in the run, {flat_now.get(k, '<unset>')!r} now"
             for k in sorted(set(flat_before) | set(flat_now))
             if k not in RESUME_MAY_CHANGE and flat_before.get(k) != flat_now.get(k)]
    if diffs:
        overrides = Path(run_dir) / ".hydra" / "overrides.yaml"
        raise ResumeConfigError(
            f"{run_dir}: this command would resume that run with another configuration ({len(diffs)} difference(s): "
            + "; ".join(diffs[:6]) + ("; ..." if len(diffs) > 6 else "")
            + f"). Resume with the run's own overrides (listed in {overrides}; interrupted.json, when the run was "
            "interrupted, holds the whole command), or start a new run with model.init_from=<its checkpoint>")


def write_error_file(job_dir: str | os.PathLike, exc: BaseException) -> Path:
    """``<job_dir>/error.txt``: first line ``<ExceptionType>: <message>``, then the full traceback."""
    text = f"{type(exc).__name__}: {exc}\n\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return atomic_write(Path(job_dir) / ERROR_FILE, text)


class RunGuard(Callback):
    """Hydra callback: refuses an existing run dir before Hydra writes there; error.txt for failed jobs.

    Hydra turns exceptions of callbacks into warnings, so the refusal is handed to the entry point: Hydra's
    own output (``.hydra/``) is switched off for this run and :func:`refuse_existing_run` raises it.
    (A multirun into an existing sweep dir is refused by the ``listing`` sweeper.)"""

    def on_run_start(self, config, **kwargs: Any) -> None:
        global _refused
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import open_dict, read_write

        if config.hydra.output_subdir is None:  # a DDP rank process re-entering its parent's run dir
            return
        HydraConfig.instance().set_config(config)  # so that ${hydra:...} in the run dir resolves
        try:
            refuse_existing_run(config.hydra.run.dir, config, hydra_files=True)
        except RunDirExistsError as exc:
            _refused = exc
            with read_write(config.hydra), open_dict(config.hydra):
                config.hydra.output_subdir = None

    def on_job_end(self, config, job_return: Optional[Any] = None, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        if job_return is None or job_return.status != JobStatus.FAILED or process_rank() > 0:
            return
        exc = job_return._return_value
        if isinstance(exc, BaseException) and not isinstance(exc, RunDirExistsError):
            write_error_file(config.hydra.runtime.output_dir, exc)
