"""The learning rates of the modern recipes' schedules (conf/schedule/<name>.yaml), iteration by iteration,
against transcriptions of the authors' own schedulers (pure Python, written from their code), and the other
numbers each schedule takes from the authors' configs."""

from __future__ import annotations

import bisect
import math
import warnings

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from tests.conftest import CONF


def _schedule(name: str, overrides: tuple = ()):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("train", [f"schedule={name}", *overrides]).schedule
    finally:
        GlobalHydra.instance().clear()


def _our_lrs(schedule, steps: int) -> list[float]:
    """The lr of global steps 0 .. steps-1 as src.train applies it (the scheduler steps after every iteration;
    the optimiser's own step, which does not change the lr, is left out for speed)."""
    opt = instantiate(schedule.optimizer)(params=[torch.nn.Parameter(torch.zeros(1))])
    sched = instantiate(schedule.scheduler)(optimizer=opt)
    lrs = []
    group = opt.param_groups[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()"
        for _ in range(steps):
            lrs.append(group["lr"])
            sched.step()
    return lrs


# --- transcriptions of the authors' schedulers -------------------------------------------------------------------
def basicsr_cyclic(last_epoch: int, base: float, periods, eta_mins, weights=(1, 1)) -> float:
    """BasicSR's CosineAnnealingRestartCyclicLR.get_lr (Restormer / DRSformer basicsr/models/lr_scheduler.py).
    BasicSR's update_learning_rate steps it from current_iter 2 on, so iteration i (1-based) runs at
    last_epoch = i - 1, i.e. the suite's global step."""
    cumulative = [sum(periods[: i + 1]) for i in range(len(periods))]
    idx = next(i for i, p in enumerate(cumulative) if last_epoch <= p)  # get_position_from_periods
    restart = 0 if idx == 0 else cumulative[idx - 1]
    return eta_mins[idx] + weights[idx] * 0.5 * (base - eta_mins[idx]) * (
        1 + math.cos(math.pi * ((last_epoch - restart) / periods[idx]))
    )


def nerd_rain_epoch_lrs(epochs: int, base: float = 1e-4, eta: float = 1e-6, warm: int = 3) -> list[float]:
    """NeRD-Rain train.py: GradualWarmupScheduler(multiplier=1, total_epoch=warm, after_scheduler=
    CosineAnnealingLR(T_max=epochs - warm, eta_min=eta)), stepped once after each epoch; the lr of each epoch.
    Transcribed from warmup_scheduler/scheduler.py and torch's CosineAnnealingLR (its recursive form)."""
    t_max = epochs - warm
    last, lr, finished, cos_last = 0, base * 0 / warm, False, 0  # __init__ performs step(): last_epoch 0
    out = []
    for _ in range(epochs):
        out.append(lr)
        if finished:  # step() -> after_scheduler.step()
            cos_last += 1
            lr = eta + (1 + math.cos(math.pi * cos_last / t_max)) / (1 + math.cos(math.pi * (cos_last - 1) / t_max)) * (
                lr - eta
            )
        else:
            last += 1
            if last > warm:  # get_lr hands over: the cosine's get_lr at its last_epoch 0 keeps the lr
                finished = True
            else:
                lr = base * last / warm
    return out


def prenet_epoch_lr(epoch: int) -> float:
    """train_PReNet.py: MultiStepLR(milestones=[30, 50, 80], gamma=0.2).step(epoch) at each (0-based) epoch's start."""
    return 1e-3 * 0.2 ** bisect.bisect_right([30, 50, 80], epoch)


# --- tests ---------------------------------------------------------------------------------------------------------
def test_restormer_and_drsformer_share_basicsr_cyclic_schedule():
    restormer, drsformer = _schedule("restormer"), _schedule("drsformer")
    assert restormer.scheduler == drsformer.scheduler and restormer.optimizer == drsformer.optimizer
    assert restormer.max_steps == drsformer.max_steps == 300000


def test_basicsr_schedule_every_iteration():
    s = _schedule("restormer")
    lrs = _our_lrs(s, 300000)
    want = [basicsr_cyclic(i, 3e-4, (92000, 208000), (3e-4, 1e-6)) for i in range(300000)]
    for i in (0, 91999, 92000, 92001, 150000, 299999):
        assert lrs[i] == pytest.approx(want[i], rel=1e-9), i
    worst = max(abs(a - b) / b for a, b in zip(lrs, want))
    assert worst < 1e-9
    assert lrs[92000] == 3e-4 and lrs[-1] < 1.01e-6  # held, then down to the floor


def test_nafnet_cosine():
    s = _schedule("nafnet")
    lrs = _our_lrs(s, 200000)
    for i in (0, 1, 50000, 100000, 199999):  # the authors use torch's CosineAnnealingLR, stepped as BasicSR steps
        assert lrs[i] == pytest.approx(1e-7 + (1e-3 - 1e-7) * (1 + math.cos(math.pi * i / 200000)) / 2, rel=1e-9)
    assert (s.batch_size, s.train_patch, s.gradient_clip_val) == (32, 256, 0.01)
    assert tuple(s.optimizer.betas) == (0.9, 0.9) and s.optimizer.weight_decay == 0


def test_prenet_steps_at_the_epochs():
    s = _schedule("prenet")
    per_epoch = 1045  # ceil(18,810 patches / 18)
    assert s.max_steps == 100 * per_epoch and list(s.scheduler.milestones) == [
        30 * per_epoch,
        50 * per_epoch,
        80 * per_epoch,
    ]
    lrs = _our_lrs(s, s.max_steps)
    for i in range(0, s.max_steps, 97):
        assert lrs[i] == pytest.approx(prenet_epoch_lr(i // per_epoch), rel=1e-9), i
    assert (s.batch_size, s.train_patch) == (18, 100)


def test_nerd_rain_config_is_3000_epochs_of_1800():
    s = _schedule("nerd_rain")
    n = 1800
    warm, const, cosine = s.scheduler.schedulers
    assert (s.max_steps, warm.total_iters, const.total_iters, cosine.T_max) == (3000 * n, 3 * n, n, 2997 * n)
    assert list(s.scheduler.milestones) == [3 * n, 4 * n] and cosine.eta_min == 1e-6
    assert (s.batch_size, s.train_patch, s.optimizer.lr) == (1, 256, 1e-4)


def test_nerd_rain_lr_at_every_epoch_start():
    """The same structure with a 7-iteration epoch (the 1800 of the config, scaled so that all 3000 epochs run
    here): at the first iteration of every epoch our lr is the authors' lr of that epoch; in between it moves
    linearly (warm-up) or along the cosine, where theirs stays constant for the epoch."""
    n, epochs = 7, 3000
    s = _schedule(
        "nerd_rain",
        (
            f"schedule.max_steps={epochs * n}",
            f"schedule.scheduler.schedulers.0.total_iters={3 * n}",
            f"schedule.scheduler.schedulers.1.total_iters={n}",
            f"schedule.scheduler.schedulers.2.T_max={(epochs - 3) * n}",
            f"schedule.scheduler.milestones=[{3 * n},{4 * n}]",
        ),
    )
    lrs = _our_lrs(s, epochs * n)
    want = nerd_rain_epoch_lrs(epochs)
    assert want[:6] == pytest.approx([0, 1e-4 / 3, 2e-4 / 3, 1e-4, 1e-4, want[5]]) and want[5] < 1e-4
    for epoch in range(epochs):
        assert lrs[epoch * n] == pytest.approx(want[epoch], rel=1e-7, abs=1e-9), epoch
    assert want[-1] == pytest.approx(1e-6, rel=1e-3)


@pytest.mark.parametrize(
    "name, batch, patch, clip",
    [
        ("restormer", 64, None, 0.01),
        ("drsformer", 16, 128, 0.01),
        ("nerd_rain", 1, 256, None),
        ("prenet", 18, 100, None),
    ],
)
def test_recipe_batch_patch_flips_and_clipping_reach_the_run(name, batch, patch, clip):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", [f"schedule={name}"])
    finally:
        GlobalHydra.instance().clear()
    assert (cfg.data.batch_size, cfg.data.train_patch, cfg.trainer.gradient_clip_val) == (batch, patch, clip)
    flips = dict(cfg.data.train_flips)
    assert set(flips.values()) == ({False} if name == "prenet" else {True})
    if name == "restormer":
        stages = [tuple(s.values()) for s in cfg.data.progressive]
        assert stages == [
            (92000, 128, 64),
            (156000, 160, 40),
            (204000, 192, 32),
            (240000, 256, 16),
            (276000, 320, 8),
            (300000, 384, 8),
        ]
        per_gpu = [s[2] // 8 for s in stages]  # the authors' mini_batch_sizes on their 8 GPUs
        assert per_gpu == [8, 5, 4, 2, 1, 1]
        assert [b - a for a, b in zip([0] + [s[0] for s in stages], [s[0] for s in stages])] == [
            92000,
            64000,
            48000,
            36000,
            36000,
            24000,
        ]  # the authors' iters
