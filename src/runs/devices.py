"""``trainer.devices`` read one way everywhere: the DDP strategy choice, the SLURM and local_parallel launchers.

:func:`count_devices` is the one parser. ``auto`` (and ``-1``) means every GPU this process can see when there are
GPUs, else one process: so ``hydra/launcher=slurm`` asks SLURM for as many GPUs and tasks as DDP will start
ranks, and ``local_parallel`` gives each job as many GPUs. (A SLURM sweep is composed where the command runs: on a
login node without GPUs ``auto`` asks for one GPU; give ``trainer.devices=N`` there.)
"""

from __future__ import annotations

import os
from typing import Any


def gpu_count() -> int:
    """The CUDA devices this process can use (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def count_devices(devices: Any, gpus: int) -> int:
    """How many processes per node ``trainer.devices`` asks for, on a machine with ``gpus`` usable GPUs (pass 0 when
    the run does not use GPUs): an int, a list of ids ([0, 1] or "0,1"), or ``auto`` / -1 / None for every GPU
    (1 without GPUs)."""
    if devices is None or str(devices).strip() in ("auto", "-1"):
        return gpus if gpus > 0 else 1
    if isinstance(devices, (list, tuple)) or (hasattr(devices, "__len__") and not isinstance(devices, str)):
        return len(devices)
    text = str(devices).strip()
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"trainer.devices={devices!r}: expected a number, a list of GPU ids or auto") from None


def visible_gpus() -> list[int]:
    """The GPU ids this process may hand out: CUDA_VISIBLE_DEVICES (integer ids) or all the driver sees."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [x.strip() for x in env.split(",") if x.strip()]
        if not all(x.isdigit() for x in ids):
            raise ValueError(f"CUDA_VISIBLE_DEVICES={env!r}: local_parallel needs integer GPU ids")
        return [int(x) for x in ids]
    try:
        return list(range(gpu_count()))
    except Exception:  # noqa: BLE001 - a torch without CUDA support
        return []
