"""What a training run cost, for metrics.json: device, wall time, iterations per second, peak memory.

:class:`RunCost` measures the ``fit`` of this process (its state goes into checkpoints, so a resumed run adds
the time of every earlier part) and :meth:`RunCost.report` gives the ``cost`` block of metrics.json:

* ``device``: the accelerator's name (``torch.cuda.get_device_name``, or the CPU model), ``device_count``:
  the processes of the run (GPUs under DDP: trainer.world_size), ``accelerator``: "cuda" | "cpu" | ...
* ``wall_time_s``: seconds of ``fit`` over all parts of the run (with validation), ``train_steps``:
  optimiser steps those parts made, ``it_per_s``: train_steps / wall_time_s,
* ``peak_memory_gb``: peak accelerator memory allocated by PyTorch on this process's device (CUDA), or the
  process's peak resident memory on CPU,
* ``gpu_hours``: device_count x wall_time_s / 3600 on GPUs (null on CPU),
* ``parts``: how many processes the run took (1 + resumes).

A part that trains no step (a resume of a run already at ``max_steps``) adds none. :meth:`RunCost.started` is
when the run's first part started (metrics.json's ``started``), carried over resumes like the rest.
"""

from __future__ import annotations

import platform
import resource
import sys
import time
from typing import Optional

import lightning as L
import torch


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return cpu_name()


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**30 if sys.platform == "darwin" else 2**20)


class RunCost(L.Callback):
    """Measures this part of the run; earlier parts come back from the checkpoint it resumes from."""

    def __init__(self) -> None:
        self.previous = {"wall_time_s": 0.0, "train_steps": 0, "parts": 0, "started": None}
        self._start: Optional[float] = None
        self._start_step: Optional[int] = None  # set when training starts (not when fit has nothing to do)
        self._end: Optional[float] = None
        self._end_step = 0
        self._started = time.strftime("%Y-%m-%dT%H:%M:%S")

    def started(self) -> str:
        """When the run's first part started (ISO local time)."""
        return self.previous.get("started") or self._started

    # --- measuring ----------------------------------------------------------------------------
    def on_fit_start(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._start, self._end = time.perf_counter(), None

    def on_train_start(self, trainer, pl_module) -> None:
        self._start_step = trainer.global_step  # after a resume: the checkpoint's step

    def _stop(self, trainer) -> None:
        if self._start is not None and self._end is None:
            self._end, self._end_step = time.perf_counter(), trainer.global_step

    def on_fit_end(self, trainer, pl_module) -> None:
        self._stop(trainer)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._stop(trainer)

    def _this_part(self, trainer) -> tuple[float, int]:
        if self._start is None:
            return 0.0, 0
        end = self._end if self._end is not None else time.perf_counter()
        step = self._end_step if self._end is not None else trainer.global_step
        return end - self._start, 0 if self._start_step is None else step - self._start_step

    # --- checkpoints: a resumed run adds its earlier parts --------------------------------------
    def state_dict(self) -> dict:
        wall, steps = self._this_part(self._trainer) if getattr(self, "_trainer", None) else (0.0, 0)
        return {
            "wall_time_s": self.previous["wall_time_s"] + wall,
            "train_steps": self.previous["train_steps"] + steps,
            "parts": self.previous["parts"] + 1,
            "started": self.started(),
        }

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer

    def load_state_dict(self, state_dict: dict) -> None:
        trainer = getattr(self, "_trainer", None)
        if trainer is not None and trainer.state.fn != "fit":
            return  # validate/test of a checkpoint after fit: not a resume
        self.previous = {k: state_dict.get(k, v) for k, v in self.previous.items()}

    # --- the metrics.json block ------------------------------------------------------------------
    def report(self, trainer) -> dict:
        device = trainer.strategy.root_device
        wall, steps = self._this_part(trainer)
        wall += self.previous["wall_time_s"]
        steps += self.previous["train_steps"]
        gpu = device.type == "cuda"
        return {
            "accelerator": device.type,
            "device": device_name(device),
            "device_count": int(trainer.world_size),
            "wall_time_s": round(wall, 3),
            "train_steps": int(steps),
            "it_per_s": round(steps / wall, 4) if wall > 0 else None,
            "peak_memory_gb": round(peak_memory_gb(device), 4),
            "gpu_hours": round(trainer.world_size * wall / 3600, 5) if gpu else None,
            "parts": self.previous["parts"] + 1,
        }
