"""Sweep launchers: local_parallel end to end (2 jobs at once through submitit's local executor), the SLURM
launcher's sbatch script rendered from the composed config (nothing submitted), GPU slots per job."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from src.runs.launchers import gpu_slots, sbatch_script
from tests.conftest import CONF, ROOT, TINY_SYNTHETIC


@pytest.mark.slow
def test_local_parallel_runs_a_two_job_sweep_each_job_its_own_dir_metrics_and_logger_run(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "src.train",
        "-m",
        "seed=1,2",
        "hydra/launcher=local_parallel",
        "hydra.launcher.n_parallel=2",
        "hydra.launcher.gpus_per_job=0",
        f"hydra.sweep.dir={tmp_path}",
        "model=b_a",
        "logger=many",
        "schedule.batch_size=2",
        "schedule.max_steps=4",
        "schedule.val_every=2",
        *TINY_SYNTHETIC,
        "~callbacks.progress_bar",
        "~callbacks.model_summary",
        "trainer.enable_model_summary=false",
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_ids = set()
    for job, seed in (("0", 1), ("1", 2)):
        d = tmp_path / job
        metrics = json.loads((d / "metrics.json").read_text())
        assert metrics["seed"] == seed and metrics["global_step"] == 4
        assert metrics["cost"]["device_count"] == 1 and metrics["cost"]["train_steps"] == 4
        assert (d / "csv" / "metrics.csv").is_file() and list((d / "tensorboard").glob("events.*"))
        (offline,) = list((d / "wandb").glob("offline-run-*"))  # one W&B run per job
        run_id = (d / "wandb_run_id.txt").read_text().strip()
        assert offline.name.endswith(run_id)
        run_ids.add(run_id)
        # each job ran in its own process (submitit's local executor), which logged its GPUs (none here)
    logs = sorted((tmp_path / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2
    assert len(run_ids) == 2


def compose_launcher(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    GlobalHydra.instance().clear()
    return cfg


def test_slurm_launcher_renders_the_expected_sbatch_parameters(tmp_path, monkeypatch):
    # submitit's SLURM executor insists on finding srun; the script is only rendered, never submitted
    (tmp_path / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    cfg = compose_launcher(
        "hydra/launcher=slurm",
        "trainer=ddp",
        "trainer.devices=4",
        "data.num_workers=7",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.account=proj",
        f"hydra.sweep.dir={tmp_path}/sweep",
    )
    script = sbatch_script(cfg.hydra.launcher)
    flags = dict(
        line[len("#SBATCH --") :].partition("=")[::2] for line in script.splitlines() if line.startswith("#SBATCH")
    )
    assert flags["gpus-per-node"] == "4" and flags["ntasks-per-node"] == "4"  # one task (DDP rank) per GPU
    assert flags["cpus-per-task"] == "8"  # 7 loader workers + the training process
    assert flags["nodes"] == "1" and flags["time"] == "1440"
    assert flags["partition"] == "gpu" and flags["account"] == "proj"
    assert flags["signal"] == "USR1@120" and "requeue" in flags  # Lightning's requeue signal, requeueable
    assert flags["output"].startswith(f"{tmp_path}/sweep/.submitit/")
    # everything is overridable; a plain GPU run gets one GPU, one task
    cfg = compose_launcher(
        "hydra/launcher=slurm",
        "trainer=gpu",
        "hydra.launcher.timeout_min=60",
        "hydra.launcher.signal_delay_s=300",
        "hydra.launcher.mem_gb=64",
        "hydra.launcher.qos=high",
        f"hydra.sweep.dir={tmp_path}/s2",
    )
    flags = dict(
        line[len("#SBATCH --") :].partition("=")[::2]
        for line in sbatch_script(cfg.hydra.launcher).splitlines()
        if line.startswith("#SBATCH")
    )
    assert (flags["gpus-per-node"], flags["ntasks-per-node"], flags["time"]) == ("1", "1", "60")
    assert flags["signal"] == "USR1@300" and flags["mem"] == "64GB" and flags["qos"] == "high"
    assert flags["cpus-per-task"] == str(cfg.data.num_workers + 1)


def test_gpu_slots_give_each_parallel_job_its_own_gpus():
    assert gpu_slots([0, 1, 2, 3], 1, None) == [(0,), (1,), (2,), (3,)]
    assert gpu_slots([0, 1, 2, 3], 2, None) == [(0, 1), (2, 3)]
    assert gpu_slots([4, 5, 6], 2, None) == [(4, 5)]  # CUDA_VISIBLE_DEVICES=4,5,6: physical ids handed on
    assert gpu_slots([0, 1, 2, 3], 1, 2) == [(0,), (1,)]
    assert gpu_slots([], 1, 3) == [(), (), ()]  # CPU-only: 3 jobs at once, no GPU
    with pytest.raises(ValueError, match="gpus_per_job=2 but only 1 GPU"):
        gpu_slots([0], 2, None)
    with pytest.raises(ValueError, match="n_parallel=3 jobs x gpus_per_job=1 needs 3 GPUs; 2 are visible"):
        gpu_slots([0, 1], 1, 3)
