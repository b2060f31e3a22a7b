"""DDP under Hydra multirun, on CPU (gloo): each sweep job runs its own 2-process group in its own run dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_multirun_sweep_with_ddp_makes_one_dir_per_job(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "src.train",
        "-m",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "seed=1,2",
        "model=b_a",
        "debug=limit",
        "data.test_photos=[chelsea]",
        "data.eval_long_side=40",
        "data.patch_size=32",
        "data.train_length=16",
        "schedule.batch_size=4",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        f"paths.log_dir={tmp_path}",
    ]
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweeps = list((tmp_path / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1, sweeps  # the children did not start sweeps of their own
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    assert not (tmp_path / "train" / "runs").exists()  # no stray single-run dirs from the children
    for job, seed in zip(jobs, (1, 2)):
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["seed"] == seed and metrics["global_step"] == 6
        # the 3 validation images were split over 2 ranks, each scored exactly once
        assert metrics["val"]["n_images"] == 3 and len(metrics["val"]["per_image"]) == 3
        assert (job / "rank1.log").exists() and (job / "checkpoints" / "last.ckpt").exists()
