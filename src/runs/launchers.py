"""Sweeps on a cluster or on all GPUs of one machine, through Hydra's submitit launcher plugin.

* ``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml): each job of a sweep is one SLURM job (an array).
  The plugin's own launcher; the config sets GPU defaults from the run's config (one task per GPU, which
  Lightning's SLURM environment turns into the DDP ranks; CPUs per task = data workers + 1), asks SLURM for
  SIGUSR1 before the time limit and for a requeueable job. A requeued job runs the same Hydra job again, in its
  own run dir, and continues from its ``last.ckpt`` (src/runs/preemption.py, ``resume`` in conf/train.yaml).
  :func:`sbatch_script` renders the script a config would submit, without submitting. GPUs and tasks per node
  come from ``trainer.devices`` read by :func:`src.runs.devices.count_devices` (the resolver ``suite_count``),
  as DDP reads it.
* ``hydra/launcher=local_parallel`` (conf/hydra/launcher/local_parallel.yaml): ``LocalParallelLauncher``
  (hydra_plugins/suite_launchers/local_parallel.py: Hydra loads launchers only from its ``hydra_plugins``
  package) runs N jobs of a sweep at once on this machine, each in its own process, and gives each job its own
  GPU(s) (``CUDA_VISIBLE_DEVICES``, :func:`gpu_slots`); a job starts when a slot is free. A job whose process
  dies without a result (SIGKILL, out of memory) is recorded like any failed job (:func:`killed_job_return`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import OmegaConf

from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from src.runs import compat

log = logging.getLogger(__name__)


def make_executor(cluster: str, params: dict):
    """The submitit executor for launcher ``params`` (hydra.launcher's keys), mapped as the plugin maps them."""
    import submitit

    params = dict(params)
    params.pop("_target_", None)
    folder = params.pop("submitit_folder")
    init = {}
    if "max_num_timeout" in params:
        init[f"{cluster}_max_num_timeout"] = params.pop("max_num_timeout")
    executor = submitit.AutoExecutor(cluster=cluster, folder=folder, **init)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"{cluster}_{k}": v for k, v in params.items()})
    return executor


def sbatch_script(launcher_cfg, command: str = "python -u -m submitit.core._submit FOLDER") -> str:
    """The sbatch script ``hydra/launcher=slurm`` would submit for one job (nothing is submitted).

    ``launcher_cfg``: the resolved ``hydra.launcher`` node of a composed config."""
    params = OmegaConf.to_container(launcher_cfg, resolve=True)
    return compat.sbatch_text(make_executor("slurm", params), command)


def gpu_slots(gpus: Sequence[int], gpus_per_job: int, n_parallel: Optional[int]) -> list[tuple[int, ...]]:
    """Disjoint groups of ``gpus_per_job`` GPUs, one per parallel job; without GPUs, ``n_parallel`` empty slots."""
    if gpus_per_job < 0:
        raise ValueError(f"hydra.launcher.gpus_per_job={gpus_per_job} must be >= 0")
    if not gpus or gpus_per_job == 0:
        return [()] * max(1, n_parallel or 1)
    if gpus_per_job > len(gpus):
        raise ValueError(f"hydra.launcher.gpus_per_job={gpus_per_job} but only {len(gpus)} GPU(s) are visible")
    slots = [tuple(gpus[i * gpus_per_job : (i + 1) * gpus_per_job]) for i in range(len(gpus) // gpus_per_job)]
    if n_parallel:
        if n_parallel > len(slots):
            raise ValueError(
                f"hydra.launcher.n_parallel={n_parallel} jobs x gpus_per_job={gpus_per_job} needs "
                f"{n_parallel * gpus_per_job} GPUs; {len(gpus)} are visible"
            )
        slots = slots[:n_parallel]
    return slots


class JobDiedError(RuntimeError):
    """A job of a sweep ended without a result: its process was killed (SIGKILL, out of memory) or crashed."""


def job_dir(launcher, overrides: Sequence[str], num: int) -> str:
    """The run dir Hydra gives job ``num`` of ``launcher``'s sweep (``hydra.sweep.dir`` / ``hydra.sweep.subdir``)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(config.hydra.job):
        config.hydra.job.num = num
        config.hydra.job.id = f"job_id_for_{num}"
    before = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(config)
    try:
        return str(Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir))
    finally:
        HydraConfig.instance().cfg = before


def died_job_return(launcher, overrides: Sequence[str], num: int, job: Any, err: BaseException):
    """The failed ``JobReturn`` of a job whose process left no result, recorded like any failed job: ``error.txt``
    in its job dir (created if the job died before making it) and its line in ``sweep_summary.json``."""
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    from src.runs.guards import write_error_file

    folder = job_dir(launcher, overrides, num)
    output = ", ".join(str(p) for p in (getattr(job.paths, "stdout", None), getattr(job.paths, "stderr", None)) if p)
    exc = JobDiedError(
        f"job {num} ended without a result: its process stopped before it could return one (killed "
        f"by a signal such as SIGKILL, out of memory, or a crash of Python; submitit: "
        f"{type(err).__name__}, state {job.state}); its output: {output}"
    )
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_error_file(folder, exc)
    ret = JobReturn(overrides=list(overrides), working_dir=folder, task_name=str(launcher.config.hydra.job.name))
    ret.hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": folder}}})
    ret.status = JobStatus.FAILED
    ret.return_value = exc
    return ret
