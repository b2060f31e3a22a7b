"""Equal-compute training: a recipe's schedule stretched or shrunk in time to a given budget (``compute=...``).

``conf/compute/``:

* ``authors`` (default): every recipe as its authors wrote it.
* ``equal_samples``: every recipe sees ``compute.samples`` training samples (iterations x global batch;
  default SPANet's paper schedule, 60K x 32 = 1.92M).
* ``equal_gpu_hours``: every recipe gets ``compute.gpu_hours``, converted with the cost ledger of a finished
  ``compute=authors`` sweep on the same kind of GPU (``compute.ledger``: its metrics.json ``cost.gpu_hours``).

The schedule keeps its shape: every iteration count in it (``max_steps``, ``val_every``, the lr schedulers'
milestones / periods, the progressive stages' ``until``) is multiplied by one factor, and batches, patches, lrs
and the loss stay the authors'. So each model is trained by its own recipe, only for longer or shorter, and the
learning-rate schedule stays in iterations: a run is reproducible and resumes exactly (a schedule defined over
wall-clock time would depend on the machine's load). The factor is ``budget / what the authors' schedule costs``:
its samples (exact), or its GPU-hours as the ledger measured them (the time of a step does not change when the
schedule is stretched, so the cost scales with the iterations, validation included since ``val_every`` scales
too). Under ``equal_gpu_hours`` ``trainer.max_time`` is set to the budget's wall time plus ``compute.slack``: a
run that would overrun it stops there and is recorded as incomplete (metrics.json), never reported as if it had
finished. The factor and the budget go into metrics.json (``run_info.compute``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from src.data.progressive import parse_stages, samples_before
from src.runs.devices import count_devices, gpu_count
from src.runs.result import RunResult, read_result
from src.utils.errors import ConfigValueError

# keys of torch's lr schedulers that count iterations, by class name (the last part of ``_target_``)
_ITERATION_KEYS = {
    "MultiStepLR": ("milestones",),
    "CosineAnnealingLR": ("T_max",),
    "LinearLR": ("total_iters",),
    "ConstantLR": ("total_iters",),
    "StepLR": ("step_size",),
    "sequential": ("milestones",),
    "SequentialLR": ("milestones",),
}


def schedule_samples(schedule: DictConfig) -> int:
    """Training samples the schedule draws: iterations x global batch (per stage for a progressive one)."""
    stages = schedule.get("progressive")
    if not stages:
        return int(schedule.max_steps) * int(schedule.batch_size)
    return samples_before(parse_stages(OmegaConf.to_container(stages)), int(schedule.max_steps))


def _scale(value: int, factor: float) -> int:
    return max(1, int(round(value * factor)))


def _scale_scheduler(node: Any, factor: float, where: str) -> None:
    if node is None:
        return
    name = str(node.get("_target_", "")).rsplit(".", 1)[-1]
    if name not in _ITERATION_KEYS:
        raise ConfigValueError(
            f"{where}._target_={node.get('_target_')}: compute= cannot rescale this scheduler "
            f"(known: {', '.join(sorted(_ITERATION_KEYS))}); use compute=authors"
        )
    for key in _ITERATION_KEYS[name]:
        value = node.get(key)
        if value is not None:
            node[key] = [_scale(v, factor) for v in value] if OmegaConf.is_list(value) else _scale(value, factor)
    for i, child in enumerate(node.get("schedulers") or []):
        _scale_scheduler(child, factor, f"{where}.schedulers[{i}]")


def rescale_schedule(schedule: DictConfig, factor: float) -> None:
    """Multiply every iteration count of ``schedule`` by ``factor`` (rounded, at least 1), in place."""
    with open_dict(schedule):
        schedule.max_steps = _scale(int(schedule.max_steps), factor)
        schedule.val_every = min(_scale(int(schedule.val_every), factor), schedule.max_steps)
        _scale_scheduler(schedule.get("scheduler"), factor, "schedule.scheduler")
        for stage in schedule.get("progressive") or []:
            stage.until = _scale(int(stage.until), factor)


def ledger_gpu_hours(ledger: str, model: str, schedule: str) -> tuple[float, str]:
    """GPU-hours and device of the finished, complete ``compute=authors`` run of ``model`` / ``schedule`` found
    under the sweep dir ``ledger`` (mean over its seeds)."""
    root = Path(str(ledger)).expanduser()
    if not root.is_dir():
        raise ConfigValueError(
            f"compute.ledger={ledger}: folder not found (a finished sweep dir of the recipes "
            f"under compute=authors, on the GPUs these runs will use)"
        )
    hours, devices = [], set()
    for path in sorted(root.rglob("metrics.json")):
        run = read_result(path)
        if not isinstance(run, RunResult) or (run.model, run.schedule) != (model, schedule) or not run.complete:
            continue
        cost = run.cost or {}
        if (run.compute or {}).get("factor", 1.0) != 1.0 or cost.get("gpu_hours") is None:
            continue
        hours.append(float(cost["gpu_hours"]))
        devices.add(f"{cost.get('device_count')} x {cost.get('device')}")
    if not hours:
        raise ConfigValueError(
            f"compute.ledger={ledger}: no complete GPU run of model={model} schedule={schedule} "
            f"under its authors' schedule (metrics.json with cost.gpu_hours)"
        )
    return math.fsum(hours) / len(hours), ", ".join(sorted(devices))


def apply_compute(cfg: DictConfig) -> dict:
    """Rescale ``cfg.schedule`` for ``cfg.compute`` (see the module docstring); returns what metrics.json records."""
    compute = cfg.get("compute")
    mode = compute.get("mode", "authors") if compute is not None else "authors"
    if mode == "authors":
        return {"mode": "authors", "factor": 1.0}
    authors = schedule_samples(cfg.schedule)
    if mode == "equal_samples":
        factor = float(compute.samples) / authors
        record = {"samples": int(compute.samples), "authors_samples": authors}
    elif mode == "equal_gpu_hours":
        hours, device = ledger_gpu_hours(compute.ledger, cfg.run_info.model, cfg.run_info.schedule)
        factor = float(compute.gpu_hours) / hours
        record = {"gpu_hours": float(compute.gpu_hours), "authors_gpu_hours": hours, "ledger_device": device}
        accelerator = str(cfg.trainer.get("accelerator") or "auto")
        devices = count_devices(cfg.trainer.get("devices"), 0 if accelerator == "cpu" else gpu_count())
        devices *= int(cfg.trainer.get("num_nodes") or 1)
        with open_dict(cfg):
            cfg.trainer.max_time = {"seconds": int(float(compute.gpu_hours) * 3600 / devices * (1 + compute.slack))}
    else:
        raise ConfigValueError(f"compute.mode={mode!r}: choose authors, equal_samples or equal_gpu_hours")
    rescale_schedule(cfg.schedule, factor)
    return {"mode": mode, "factor": factor, **record, "max_steps": int(cfg.schedule.max_steps)}
