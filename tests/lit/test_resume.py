"""Exact resume, signals and the run-dir lock, as users meet them: real processes, killed and started again.

Every run is the tiny synthetic set-up (32x32 crops, batch 2, 8 batches per epoch, 1 thread) for 20 steps with a
validation (and last.ckpt) every 3 steps, so kills land mid-epoch and resumes cross epoch boundaries. The
uninterrupted reference runs in-process; interrupted runs are subprocesses of ``python -m src.train``.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src.runs.rundir import RunDirLock
from src.train import train
from tests.conftest import ROOT, TINY_SYNTHETIC

RUN = [
    *TINY_SYNTHETIC,
    "model=b_a",
    "logger=csv",
    "schedule.batch_size=2",
    "schedule.max_steps=20",
    "schedule.val_every=3",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
    "~callbacks.image_grid",
]


def run_train(*overrides: str, env: dict | None = None, multirun: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "src.train", *(["-m"] if multirun else []), *RUN, *overrides]
    full_env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300)


def signal_at(step: int, name: str) -> list[str]:
    return [
        "+callbacks.signal._target_=tests.lit.signal_helpers.SignalAt",
        f"+callbacks.signal.step={step}",
        f"+callbacks.signal.signal_name={name}",
    ]


def scores(run_dir: Path) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    return {"global_step": m["global_step"], "val": m["val"]["per_image"], "test": m["test"]["per_image"]}


def train_losses(run_dir: Path) -> dict[int, str]:
    rows = csv.DictReader(open(run_dir / "csv" / "metrics.csv"))
    return {int(r["step"]): r["train/loss"] for r in rows if r.get("train/loss")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (in-process, same config)."""
    from tests.conftest import compose_cfg

    out = tmp_path_factory.mktemp("reference")
    train(compose_cfg("train", RUN, out))
    return out


@pytest.mark.slow
def test_sigkill_at_any_step_then_resume_equals_uninterrupted_run(tmp_path, reference):
    run = tmp_path / "run"
    killed = run_train(f"hydra.run.dir={run}", *signal_at(13, "SIGKILL"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 12  # the last validation's checkpoint: mid-epoch (epoch 1, batch 4 of 8)
    assert not (run / "metrics.json").exists()

    resumed = run_train(f"hydra.run.dir={run}", "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert scores(run) == scores(reference)  # exactly: every image's every score
    # the CSV log is one continuous log: every step once, with the uninterrupted run's losses
    assert train_losses(run) == train_losses(reference)
    assert json.loads((run / "metrics.json").read_text())["resumed_from"].endswith("last.ckpt")


def val_rows(run_dir: Path) -> list[dict]:
    rows = csv.DictReader(open(run_dir / "csv" / "metrics.csv"))
    return [
        {k: v for k, v in r.items() if k.startswith("val/") or k == "step"} for r in rows if r.get("val/psnr_spanet")
    ]


# SIGTERM at step 7: saved at the end of that step. SIGINT at step 9, a validation step: the run stops after
# that validation (its scores, best.ckpt and last.ckpt written), so the resumed run skips nothing.
@pytest.mark.slow
@pytest.mark.parametrize("name, code, step", [("SIGTERM", 143, 7), ("SIGINT", 130, 9)])
def test_signal_saves_checkpoint_exits_nonzero_and_sweep_records_job(tmp_path, reference, name, code, step):
    sweep = tmp_path / "sweep"
    stopped = run_train(f"hydra.sweep.dir={sweep}", *signal_at(step, name), multirun=True)
    assert stopped.returncode == code, stopped.stderr[-3000:]
    job = sweep / "0"
    ckpt = torch.load(job / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == step
    record = json.loads((job / "interrupted.json").read_text())
    assert record["signal"] == name and record["exit_code"] == code and record["step"] == step
    assert "model=b_a" in record["resume"] and record["resume"].endswith(f"ckpt_path={job}/checkpoints/last.ckpt")
    lines = [json.loads(x) for x in (sweep / "interrupted.jsonl").read_text().splitlines()]
    assert [(x["job"], x["signal"]) for x in lines] == [(0, name)]

    # the same sweep started again with resume=auto continues job 0 in its own dir, exactly
    again = run_train(f"hydra.sweep.dir={sweep}", "resume=auto", multirun=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert scores(job) == scores(reference)
    assert val_rows(job) == val_rows(reference)  # every validation, once, with the same scores
    assert not (job / "interrupted.json").exists()
    assert [x["signal"] for x in json.loads((job / "metrics.json").read_text())["interruptions"]] == [name]


@pytest.mark.slow
def test_sigusr1_on_slurm_requeues_and_requeued_job_continues_in_its_run_dir(tmp_path, reference):
    """SLURM simulated: its job variables, and an ``scontrol`` on PATH that records what it was asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol_calls.txt"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": "1",
        "SLURM_JOB_NAME": "train",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost",
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    run = tmp_path / "job"
    first = run_train(f"hydra.run.dir={run}", "logger=many", *signal_at(10, "SIGUSR1"), env=slurm)
    assert first.returncode == 138, first.stderr[-3000:]
    assert calls.read_text().split() == ["requeue", "4242"]
    assert json.loads((run / "interrupted.json").read_text())["requeued"] is True

    # SLURM starts the same job again (same command, same run dir) with SLURM_RESTART_COUNT=1: no resume flag
    requeued = run_train(f"hydra.run.dir={run}", "logger=many", env={**slurm, "SLURM_RESTART_COUNT": "1"})
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert scores(run) == scores(reference)
    # one W&B run: both parts logged to the run id kept in the run dir
    run_id = (run / "wandb_run_id.txt").read_text().strip()
    parts = sorted(p.name for p in (run / "wandb").glob("offline-run-*"))
    assert len(parts) == 2 and all(p.endswith(f"-{run_id}") for p in parts), (run_id, parts)


def test_two_processes_never_write_one_run_dir(train_cfg, tmp_path):
    cfg = train_cfg("model=b_a", "logger=csv")
    with RunDirLock(tmp_path):
        with pytest.raises(RuntimeError, match=r"is in use by host .* pid \d+"):
            train(cfg)
    assert not (tmp_path / "checkpoints").exists()


def test_ckpt_path_of_a_runs_last_checkpoint_continues_in_that_run_dir(tmp_path):
    from src.runs.rundir import hydra_run_dir

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    assert hydra_run_dir("train", str(run / "checkpoints" / "last.ckpt"), "new") == str(run)
    assert hydra_run_dir("train", str(run / "checkpoints" / "best.ckpt"), "new") == "new"  # a new run
    assert hydra_run_dir("eval", str(run / "checkpoints" / "last.ckpt"), "new") == "new"
    assert hydra_run_dir("train", None, "new") == "new"


def test_augmentation_is_a_function_of_seed_epoch_index_whatever_workers_or_resume(tmp_path):
    """File data sets: a sample's random crop/flips come from (seed, epoch, index), so a resumed epoch and any
    number of worker processes draw exactly what the uninterrupted single-process epoch drew."""
    import imageio.v3 as iio
    import numpy as np
    from torch.utils.data import DataLoader

    from src.data.base import ResumableSampler
    from src.data.paired import PairedDataset
    from src.data.readers import Pair
    from src.data.transforms import build_train_transform

    rng = np.random.default_rng(0)
    pairs = []
    for i in range(6):
        for kind in ("rain", "clean"):
            iio.imwrite(tmp_path / f"{kind}{i}.png", rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
        pairs.append(Pair(str(tmp_path / f"rain{i}.png"), str(tmp_path / f"clean{i}.png"), str(i)))
    ds = PairedDataset(pairs, build_train_transform(crop=12, hflip=True, vflip=True, transpose=True))

    def epoch(workers: int, resume_at: int | None = None) -> list[torch.Tensor]:
        sampler = ResumableSampler(ds, num_replicas=1, rank=0, seed=3, with_seeds=True)
        sampler.set_epoch(2)
        if resume_at is not None:
            sampler.resume(2, resume_at)
        loader = DataLoader(ds, batch_size=1, sampler=sampler, num_workers=workers)
        return [b["rain"] for b in loader]

    full = epoch(0)
    assert len(full) == len(ds) >= 4
    assert len({tuple(t.flatten()[:20].tolist()) for t in full}) == len(full)  # distinct crops
    for got in (epoch(2), epoch(0, resume_at=3)):
        want = full[-len(got) :]
        assert len(got) in (len(full), len(full) - 3)
        assert all(torch.equal(a, b) for a, b in zip(got, want))
