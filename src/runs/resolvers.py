"""The OmegaConf resolvers the suite's configs use; every entry point calls :func:`register_resolvers` before
Hydra composes its config.

* ``${suite_run_dir:task,ckpt_path,default}`` (conf/hydra/default.yaml): training from a run's last.ckpt
  continues in that run's dir (:func:`src.runs.rundir.hydra_run_dir`).
* ``${suite_count:devices}`` (conf/hydra/launcher/*.yaml): the GPUs / tasks ``trainer.devices`` asks for, read as
  DDP reads it (:func:`src.runs.devices.count_devices`).
* ``${suite_add:a,b}`` (conf/hydra/launcher/*.yaml): a + b (CPUs = data workers + 1).
"""

from __future__ import annotations

from omegaconf import OmegaConf


def _count(devices) -> int:
    from src.runs.devices import count_devices, gpu_count

    return count_devices(devices, gpu_count())


def register_resolvers() -> None:
    """Register the resolvers above (once; calling again is harmless)."""
    from src.runs.rundir import hydra_run_dir

    resolvers = {"suite_run_dir": hydra_run_dir, "suite_count": _count, "suite_add": lambda a, b: int(a) + int(b)}
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
