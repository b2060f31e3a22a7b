"""Sweeps on a cluster or on all GPUs of one machine, through Hydra's submitit launcher plugin.

* ``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml): each job of a sweep is one SLURM job (an array).
  The plugin's own launcher; the config sets GPU defaults from the run's config (one task per GPU, which
  Lightning's SLURM environment turns into the DDP ranks; CPUs per task = data workers + 1), asks SLURM for
  SIGUSR1 before the time limit and for a requeueable job. A requeued job runs the same Hydra job again, in its
  own run dir, and continues from its ``last.ckpt`` (src/lit/preemption.py, ``resume`` in conf/train.yaml).
  :func:`sbatch_script` renders the script a config would submit, without submitting.
* ``hydra/launcher=local_parallel`` (conf/hydra/launcher/local_parallel.yaml): ``LocalParallelLauncher``
  (hydra_plugins/suite_launchers/local_parallel.py: Hydra loads launchers only from its ``hydra_plugins``
  package) runs N jobs of a sweep at once on this machine, each in its own process, and gives each job its own
  GPU(s) (``CUDA_VISIBLE_DEVICES``, :func:`gpu_slots`); a job starts when a slot is free.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Sequence

from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

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
    from submitit.slurm.slurm import SlurmExecutor

    params = OmegaConf.to_container(launcher_cfg, resolve=True)
    executor = make_executor("slurm", params)
    slurm = executor._executor
    assert isinstance(slurm, SlurmExecutor)
    return slurm._make_submission_file_text(command, "job")


def visible_gpus() -> list[int]:
    """The GPU ids this process may hand out: CUDA_VISIBLE_DEVICES (integer ids) or all the driver sees."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [x.strip() for x in env.split(",") if x.strip()]
        if not all(x.isdigit() for x in ids):
            raise ValueError(f"CUDA_VISIBLE_DEVICES={env!r}: local_parallel needs integer GPU ids")
        return [int(x) for x in ids]
    try:
        import torch

        return list(range(torch.cuda.device_count()))
    except Exception:  # no CUDA build
        return []


def gpu_slots(gpus: Sequence[int], gpus_per_job: int, n_parallel: Optional[int]) -> list[tuple[int, ...]]:
    """Disjoint groups of ``gpus_per_job`` GPUs, one per parallel job; without GPUs, ``n_parallel`` empty slots."""
    if gpus_per_job < 0:
        raise ValueError(f"hydra.launcher.gpus_per_job={gpus_per_job} must be >= 0")
    if not gpus or gpus_per_job == 0:
        return [()] * max(1, n_parallel or 1)
    if gpus_per_job > len(gpus):
        raise ValueError(f"hydra.launcher.gpus_per_job={gpus_per_job} but only {len(gpus)} GPU(s) are visible")
    slots = [tuple(gpus[i * gpus_per_job:(i + 1) * gpus_per_job]) for i in range(len(gpus) // gpus_per_job)]
    if n_parallel:
        if n_parallel > len(slots):
            raise ValueError(f"hydra.launcher.n_parallel={n_parallel} jobs x gpus_per_job={gpus_per_job} needs "
                             f"{n_parallel * gpus_per_job} GPUs; {len(gpus)} are visible")
        slots = slots[:n_parallel]
    return slots
