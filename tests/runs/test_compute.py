"""compute=authors|equal_samples|equal_gpu_hours (src/runs/compute.py): a recipe's schedule stretched in time to
a common budget, its shape kept."""

from __future__ import annotations

import json

import pytest

from src.runs.compute import apply_compute, schedule_samples
from src.train import train
from src.utils.errors import ConfigValueError
from tests.conftest import compose_cfg

RESTORMER_SAMPLES = 92000 * 64 + 64000 * 40 + 48000 * 32 + 36000 * 16 + 36000 * 8 + 24000 * 8


def _cfg(tmp_path, *overrides):
    return compose_cfg("train", list(overrides), tmp_path)


def test_authors_schedule_is_untouched(tmp_path):
    cfg = _cfg(tmp_path, "schedule=restormer")
    before = dict(cfg.schedule)
    assert apply_compute(cfg) == {"mode": "authors", "factor": 1.0}
    assert dict(cfg.schedule) == before


def test_equal_samples_scales_every_iteration_count_of_a_progressive_schedule(tmp_path):
    cfg = _cfg(tmp_path, "schedule=restormer", "compute=equal_samples")
    assert schedule_samples(cfg.schedule) == RESTORMER_SAMPLES == 11_040_000
    record = apply_compute(cfg)
    k = 1_920_000 / RESTORMER_SAMPLES
    assert record["factor"] == pytest.approx(k) and record["authors_samples"] == RESTORMER_SAMPLES
    s = cfg.schedule
    assert [st.until for st in s.progressive] == [round(u * k) for u in (92000, 156000, 204000, 240000, 276000, 300000)]
    assert [st.batch for st in s.progressive] == [64, 40, 32, 16, 8, 8]  # batches and patches stay the authors'
    assert s.max_steps == round(300000 * k) and s.val_every == round(4000 * k)
    assert list(s.scheduler.milestones) == [round(92000 * k)]
    assert (s.scheduler.schedulers[0].total_iters, s.scheduler.schedulers[1].T_max) == (
        round(92000 * k),
        round(208000 * k),
    )
    assert schedule_samples(s) == pytest.approx(1_920_000, rel=1e-4)
    assert cfg.data.progressive[0].until == s.progressive[0].until and cfg.trainer.max_steps == s.max_steps


def test_equal_samples_keeps_spanet_and_stretches_the_others(tmp_path):
    cfg = _cfg(tmp_path, "schedule=spanet_paper", "compute=equal_samples")
    assert apply_compute(cfg)["factor"] == 1.0 and cfg.schedule.max_steps == 60000  # the reference budget
    cfg = _cfg(tmp_path, "schedule=prenet", "compute=equal_samples")
    apply_compute(cfg)
    k = 1_920_000 / (104500 * 18)
    assert list(cfg.schedule.scheduler.milestones) == [round(m * k) for m in (31350, 52250, 83600)]
    cfg = _cfg(
        tmp_path,
        "schedule=quick",
        "compute=equal_samples",
        "schedule.scheduler._target_=torch.optim.lr_scheduler.OneCycleLR",
    )
    with pytest.raises(ConfigValueError, match="OneCycleLR: compute= cannot rescale this scheduler"):
        apply_compute(cfg)


def _ledger(root, model, schedule, gpu_hours, complete=True, factor=1.0):
    job = root / f"{model}_{gpu_hours}"
    job.mkdir(parents=True)
    (job / "metrics.json").write_text(
        json.dumps(
            {
                "model": model,
                "schedule": schedule,
                "complete": complete,
                "compute": {"factor": factor},
                "cost": {"gpu_hours": gpu_hours, "device": "H100", "device_count": 8},
            }
        )
    )


def test_equal_gpu_hours_converts_the_budget_with_the_ledger(tmp_path):
    ledger = tmp_path / "ledger"
    _ledger(ledger, "spanet", "spanet_paper", 5.0)
    _ledger(ledger, "spanet", "spanet_paper", 7.0)  # two seeds: their mean
    _ledger(ledger, "spanet", "spanet_paper", 100.0, complete=False)  # not counted
    _ledger(ledger, "spanet", "spanet_paper", 50.0, factor=0.5)  # an equal-compute run: not counted
    cfg = _cfg(
        tmp_path,
        "schedule=spanet_paper",
        "compute=equal_gpu_hours",
        "compute.gpu_hours=3",
        f"compute.ledger={ledger}",
        "trainer.devices=2",
    )
    record = apply_compute(cfg)
    assert record["authors_gpu_hours"] == 6.0 and record["factor"] == 0.5 and record["ledger_device"] == "8 x H100"
    assert cfg.schedule.max_steps == 30000 and list(cfg.schedule.scheduler.milestones) == [2500, 7500, 15000, 25000]
    assert cfg.trainer.max_time == {"seconds": int(3 * 3600 / 2 * 1.25)}
    cfg = _cfg(tmp_path, "schedule=quick", "compute=equal_gpu_hours", "compute.gpu_hours=3", f"compute.ledger={ledger}")
    with pytest.raises(ConfigValueError, match="no complete GPU run of model=spanet schedule=quick"):
        apply_compute(cfg)


def test_a_run_records_its_compute_budget(train_cfg, tmp_path):
    """TINY runs 4 steps of batch 2 (8 samples); a budget of 16 samples doubles the schedule."""
    cfg = train_cfg("model=b_a", "logger=[]", "compute=equal_samples", "compute.samples=16", "test=false")
    result = train(cfg)
    assert result["global_step"] == result["max_steps"] == 8
    assert result["compute"] == {
        "mode": "equal_samples",
        "factor": 2.0,
        "samples": 16,
        "authors_samples": 8,
        "max_steps": 8,
    }
    assert json.loads((tmp_path / "metrics.json").read_text())["compute"]["factor"] == 2.0
