"""Learning-rate schedules that chain torch's own schedulers, built from config.

``torch.optim.lr_scheduler.SequentialLR`` takes scheduler OBJECTS made for one optimizer, which a config cannot
hold before the optimizer exists. :func:`sequential` takes them as partials (``_partial_: true`` in
``conf/schedule``) and builds each for the optimizer first::

    scheduler:
      _target_: src.lit.schedulers.sequential
      _partial_: true
      schedulers:
        - {_target_: torch.optim.lr_scheduler.ConstantLR, _partial_: true, factor: 1.0, total_iters: 92000}
        - {_target_: torch.optim.lr_scheduler.CosineAnnealingLR, _partial_: true, T_max: 208000, eta_min: 1.0e-6}
      milestones: [92000]

The result is a plain ``SequentialLR`` (its state in checkpoints is torch's).
"""

from __future__ import annotations

from typing import Callable, Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, SequentialLR

from src.utils.errors import ConfigValueError


def sequential(
    optimizer: Optimizer, schedulers: Sequence[Callable[..., LRScheduler]], milestones: Sequence[int]
) -> SequentialLR:
    """``SequentialLR(optimizer, [make(optimizer=optimizer) for make in schedulers], milestones)``."""
    if len(milestones) != len(schedulers) - 1:
        raise ConfigValueError(
            f"schedule.scheduler.milestones={list(milestones)}: expected {len(schedulers) - 1} "
            f"milestone(s) between the {len(schedulers)} schedulers"
        )
    return SequentialLR(optimizer, [make(optimizer=optimizer) for make in schedulers], list(milestones))
