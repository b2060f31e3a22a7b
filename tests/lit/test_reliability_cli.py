"""The entry points as users run them (subprocesses): a finished run dir is refused before Hydra writes into
it, and a sweep runs every job, then lists every failed one (error.txt in each failed job dir, exit 1)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

from tests.conftest import ROOT, TINY, TINY_SYNTHETIC


def _run(args, cwd, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", WANDB_MODE="offline", HYDRA_FULL_ERROR="0")
    flags = [a for a in args if a == "-m"]
    keys = {a.split("=", 1)[0] for a in args}
    tiny = [a for a in TINY_SYNTHETIC + TINY if a.split("=", 1)[0] not in keys]
    return subprocess.run(
        [sys.executable, "-m", "src.train", *flags, *tiny, "model=b_a", *[a for a in args if a != "-m"]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _digests(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_finished_run_dir_refused_and_failed_sweep_jobs_listed(tmp_path):
    ok = _run(["hydra.run.dir=run"], tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    before = _digests(tmp_path / "run")
    again = _run(["hydra.run.dir=run", "seed=7"], tmp_path)
    assert again.returncode == 2 and "Traceback" not in again.stderr  # a refusal: one line, exit status 2
    assert "already holds a train run (metrics.json, checkpoints, csv, images, .hydra)" in again.stderr
    after = _digests(tmp_path / "run")
    assert {k: v for k, v in after.items() if k != "train.log"} == {k: v for k, v in before.items() if k != "train.log"}

    # three jobs, two of them fail (fewer training pairs than one batch): all listed, each with error.txt
    sweep = _run(["-m", "data.train_length=1,2,16", "schedule.batch_size=4", "hydra.sweep.dir=sw"], tmp_path)
    assert sweep.returncode == 1
    assert "2 of 3 jobs of the sweep failed" in sweep.stderr
    for job, n in ((0, 1), (1, 2)):
        line = next(ln for ln in sweep.stderr.splitlines() if ln.strip().startswith(f"job {job} ("))
        assert f"data.train_length={n} " in line and "fewer than one batch per process" in line
        error = (tmp_path / "sw" / str(job) / "error.txt").read_text()
        assert error.startswith(f"ValueError: the training set has {n} pairs, fewer than one batch per process")
        assert "Traceback (most recent call last)" in error and "require_train_batch" in error
    assert (tmp_path / "sw" / "2" / "metrics.json").is_file() and not (tmp_path / "sw" / "2" / "error.txt").exists()
    summary = json.loads((tmp_path / "sw" / "sweep_summary.json").read_text())
    assert (summary["n_jobs"], summary["n_failed"]) == (3, 2)
    assert [j["status"] for j in summary["jobs"]] == ["failed", "failed", "completed"]
    assert summary["jobs"][2]["dir"] == str(tmp_path / "sw" / "2") and summary["jobs"][2]["error"] is None

    again = _run(["-m", "seed=1", "hydra.sweep.dir=sw"], tmp_path)
    assert again.returncode == 1 and "already holds a sweep (multirun.yaml)" in again.stderr
