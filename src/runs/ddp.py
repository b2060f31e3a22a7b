"""DDP that works under Hydra, including multirun sweeps.

Lightning's script launcher starts ranks 1..N-1 by re-running ``sys.argv``. Under Hydra that argv may be a
whole sweep (``-m model=b_a,b_b seed=1,2,3``), so every child would start its own sweep, and each child
computes its own timestamped run dir. :class:`HydraDDPStrategy` instead starts every child with exactly the
overrides of the CURRENT job (``HydraConfig.overrides.task``), pinned to the current job's output dir, with
Hydra's own output (config copy, log file) switched off in the children. :func:`ddp_job` cleans up after a job
(process group, launcher env vars) so the next job of a sweep starts a fresh group with fresh children.
:func:`choose_strategy` picks this strategy for every run with more than one process (``trainer.devices`` read
by :func:`src.runs.devices.count_devices`, as the launchers read it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from typing import Iterator

import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import DictConfig, OmegaConf, open_dict

import __main__
from src.runs.compat import SubprocessScriptLauncher
from src.runs.devices import count_devices, gpu_count
from src.utils.errors import ConfigValueError

log = logging.getLogger(__name__)

_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def child_command(local_rank: int) -> list[str]:
    """The command line that starts rank ``local_rank`` of the current Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    module = getattr(__main__.__spec__, "name", None)
    if module and module.startswith("submitit."):  # a job of hydra/launcher=local_parallel|slurm
        module = f"src.{hc.job.name}"  # the entry point's job name is its module's (src/train.py: "train")
    entry = ["-m", module] if module else [os.path.abspath(sys.argv[0])]
    return [
        sys.executable,
        *entry,
        *hc.overrides.task,
        f"hydra.run.dir={hc.runtime.output_dir}",
        "hydra.output_subdir=null",
        f"hydra.job.name={hc.job.name}_rank{local_rank}",
        f"hydra.job_logging.handlers.file.filename={hc.runtime.output_dir}/rank{local_rank}.log",
    ]


class _HydraJobLauncher(SubprocessScriptLauncher):
    def _call_children_scripts(self) -> None:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():  # plain script: Lightning's own way is right
            return super()._call_children_scripts()
        self._check_can_spawn_children()
        self.procs = []
        env = self.cluster_environment
        os.environ.update(
            MASTER_ADDR=env.main_address,
            MASTER_PORT=str(env.main_port),
            NODE_RANK=str(env.node_rank()),
            LOCAL_RANK=str(env.local_rank()),
            WORLD_SIZE=str(self.num_processes * self.num_nodes),
        )
        for local_rank in range(1, self.num_processes):
            child_env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            self.procs.append(subprocess.Popen(child_command(local_rank), env=child_env))


class HydraDDPStrategy(DDPStrategy):
    """``DDPStrategy`` whose child processes run the current Hydra job, not the original command line."""

    strategy_name = "hydra_ddp"

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if isinstance(self._launcher, SubprocessScriptLauncher):
            self._launcher = _HydraJobLauncher(self.cluster_environment, self.num_processes, self.num_nodes)

    def wait_for_children(self, timeout: float = 600.0) -> None:
        for proc in getattr(self._launcher, "procs", []):
            proc.wait(timeout=timeout)
            if proc.returncode:
                raise RuntimeError(f"DDP rank process {proc.args} exited with status {proc.returncode}")


@contextlib.contextmanager
def ddp_job(trainer) -> Iterator[None]:
    """Run one job's fit/test; afterwards tear down DDP state so a sweep's next job starts clean."""
    before = {k: os.environ.get(k) for k in _LAUNCH_ENV}
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        strategy = trainer.strategy
        if isinstance(strategy, HydraDDPStrategy) and trainer.is_global_zero:
            try:
                strategy.wait_for_children()
            except RuntimeError:
                if not failed:  # the ranks stopped with this one (e.g. after a signal): keep its exception
                    raise
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def processes_per_node(trainer_cfg: DictConfig) -> tuple[int, bool]:
    """(processes per node, on GPUs) that ``cfg.trainer`` runs on this machine: what ``hydra/launcher=slurm`` asks
    SLURM for as tasks (and GPUs) per node, through the same :func:`~src.runs.devices.count_devices`."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    gpus = gpu_count()
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus > 0)
    return count_devices(trainer_cfg.get("devices", "auto"), gpus if on_gpu else 0), on_gpu


def choose_strategy(trainer_cfg: DictConfig) -> DictConfig:
    """Complete ``cfg.trainer`` in place for the machine at hand; returns it.

    * ``accelerator: auto`` takes the GPUs when there are any, else the CPU.
    * More than one process (``devices > 1`` or ``num_nodes > 1``) on any accelerator gets
      :class:`HydraDDPStrategy` (unless ``strategy`` was set), so a Hydra job keeps one run dir and one logger
      run; on GPUs with BatchNorm in the model, ``sync_batchnorm`` too.
    * ``devices > 1`` with ``accelerator: auto`` on a machine without a GPU is an error that names
      ``trainer.accelerator=cpu``, the way to ask for several CPU processes on purpose.
    """
    accelerator, devices = str(trainer_cfg.get("accelerator", "auto")), trainer_cfg.get("devices", "auto")
    n, on_gpu = processes_per_node(trainer_cfg)
    nodes = int(trainer_cfg.get("num_nodes", 1) or 1)
    if accelerator == "auto" and not on_gpu and n > 1:
        raise ConfigValueError(
            f"trainer.devices={devices} asks for {n} devices, but this machine has no GPU (trainer."
            f"accelerator=auto found only the CPU). To run {n} CPU processes with DDP on purpose, "
            "add trainer.accelerator=cpu"
        )
    with open_dict(trainer_cfg):
        if n > 1 or nodes > 1:
            if trainer_cfg.get("strategy") in (None, "auto"):
                trainer_cfg.strategy = {"_target_": "src.runs.ddp.HydraDDPStrategy", "find_unused_parameters": False}
            if on_gpu and "sync_batchnorm" not in trainer_cfg:
                trainer_cfg.sync_batchnorm = True
            where = f"{n} GPU(s)" if on_gpu else f"{n} CPU processes"
            log.info(
                "trainer: DDP over %s x %d node(s) (%s)",
                where,
                nodes,
                trainer_cfg.strategy.get("_target_")
                if OmegaConf.is_dict(trainer_cfg.strategy)
                else trainer_cfg.strategy,
            )
    return trainer_cfg
