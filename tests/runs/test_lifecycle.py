"""A run's life under misuse, as users meet it (real processes): a second process into a live run dir, a kill -9
while data loader workers run, a sweep job killed by SIGKILL, a resume of a finished run, impossible values, and
what a run prints.

Runs are the tiny synthetic set-up (32x32 crops, batch 2, one thread)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import lightning as L
import numpy as np
import pytest

from src.runs.guards import ResumeConfigError, check_train_config, refuse_existing_run
from src.runs.rundir import RunDirInUseError, RunDirLock
from src.utils.errors import ConfigValueError
from tests.conftest import ROOT, TINY_SYNTHETIC

RUN = [
    *TINY_SYNTHETIC,
    "model=b_a",
    "logger=csv",
    "schedule.batch_size=2",
    "schedule.max_steps=6",
    "schedule.val_every=3",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "~callbacks.model_summary",
    "~callbacks.image_grid",
]
ENV = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0"}


def train_cmd(*overrides: str, multirun: bool = False) -> list[str]:
    return [sys.executable, "-m", "src.train", *(["-m"] if multirun else []), *RUN, *overrides]


def run_train(*overrides: str, multirun: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        train_cmd(*overrides, multirun=multirun), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )


def signal_at(step: int, name: str) -> list[str]:
    return [
        "+callbacks.signal._target_=tests.lit.signal_helpers.SignalAt",
        f"+callbacks.signal.step={step}",
        f"+callbacks.signal.signal_name={name}",
    ]


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def wait_for(condition, what: str, timeout: float = 180.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


# --- a live run dir is not touched -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_process_into_a_live_run_writes_nothing_and_the_run_resumes(tmp_path):
    run = tmp_path / "run"
    live = subprocess.Popen(
        train_cmd(f"hydra.run.dir={run}", *signal_at(2, "SIGSTOP")),
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: live.poll() is not None or stopped(live.pid), "the run to stop itself at step 2")
        assert live.poll() is None, live.communicate()[1][-3000:]
        before = digests(run)
        assert {".hydra/config.yaml", ".lock", "train.log"} <= set(before)
        for extra in ("overwrite=true", "resume=auto"):
            second = run_train(f"hydra.run.dir={run}", *signal_at(2, "SIGSTOP"), extra)
            assert second.returncode == 2, second.stderr[-3000:]
            assert "Traceback" not in second.stderr
            assert f"error: run dir {run} is in use by host " in second.stderr and f"pid {live.pid} " in second.stderr
            assert digests(run) == before  # byte for byte: .hydra/, train.log, no error.txt
        live.send_signal(signal.SIGTERM)  # the live run, woken up, saves last.ckpt and records its interruption
        live.send_signal(signal.SIGCONT)
        _, err = live.communicate(timeout=300)
    finally:
        if live.poll() is None:
            live.kill()
    assert live.returncode == 143, err[-3000:]
    assert "weights_only" not in err  # the checkpoint saved on SIGTERM is a full one on purpose, and says nothing
    record = json.loads((run / "interrupted.json").read_text())
    resumed = subprocess.run(
        [sys.executable, *shlex.split(record["resume"])[1:]],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]  # its own resume command: no ResumeConfigError
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 6


@pytest.mark.slow
def test_orphaned_loader_workers_of_a_killed_run_do_not_hold_its_lock(tmp_path):
    """kill -9 leaves the data loader workers alive for seconds; the lock died with the main process."""
    run = tmp_path / "run"
    killed = subprocess.Popen(
        train_cmd(f"hydra.run.dir={run}", "data.num_workers=2", *signal_at(3, "SIGKILL")),
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # its own process group: the workers are found by it
    _, err = killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, err[-3000:]
    orphans = [pid for pid in process_group(killed.pid)]
    try:
        assert orphans, "no loader worker outlived the killed run: the case is not reproduced"
        RunDirLock(run).acquire().release()  # with flock: refused while the workers live ("in use by pid <dead>")
        assert process_group(killed.pid), "the workers ended before the lock was taken: the case is not reproduced"
    finally:
        for pid in process_group(killed.pid):
            os.kill(pid, signal.SIGKILL)


def process_group(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    found.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return found


# --- sweeps ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_local_parallel_job_killed_by_sigkill_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train(
        "hydra/launcher=local_parallel",
        "hydra.launcher.n_parallel=2",
        "hydra.launcher.gpus_per_job=0",
        "hydra.launcher.poll_s=0.2",
        f"hydra.sweep.dir={sweep}",
        "~callbacks.progress_bar",
        "+callbacks.signal._target_=tests.lit.signal_helpers.SignalAt",
        "+callbacks.signal.step=2,1000",
        "+callbacks.signal.signal_name=SIGKILL",
        multirun=True,
    )  # job 0 kills itself at step 2
    assert proc.returncode == 1, proc.stderr[-3000:]  # the sweep's failed job, listed; not UncompletedJobError
    assert "UncompletedJobError" not in proc.stderr.splitlines()[-1]
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert (summary["n_jobs"], summary["n_failed"]) == (2, 1)
    killed, done = summary["jobs"]
    assert (killed["status"], done["status"]) == ("failed", "completed")
    assert killed["dir"] == str(sweep / "0")
    assert killed["error"].startswith("JobDiedError: job 0 ended without a result")
    stderr = Path(killed["error"].rsplit(", ", 1)[1])  # its output is named
    assert stderr.name.endswith("_log.err") and stderr.is_file()
    assert (sweep / "0" / "error.txt").read_text().startswith("JobDiedError: job 0 ended without a result")
    assert json.loads((sweep / "1" / "metrics.json").read_text())["complete"] is True


def test_a_sweep_dir_whose_job_is_running_is_refused(tmp_path):
    from hydra_plugins.derain_sweeper.listing_sweeper import refuse_used_sweep_dir

    job = tmp_path / "sweep" / "3"
    job.mkdir(parents=True)
    (tmp_path / "sweep" / "multirun.yaml").write_text("{}")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time; from src.runs.rundir import RunDirLock; "
            f"RunDirLock({str(job)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            RunDirInUseError,
            match=rf"a job of this sweep is still running \(run dir {job} is in use "
            rf"by host \S+ pid {holder.pid} ",
        ):
            refuse_used_sweep_dir(tmp_path / "sweep", {"resume": "auto"})
    finally:
        holder.kill()
        holder.wait()
    refuse_used_sweep_dir(tmp_path / "sweep", {"resume": "auto"})  # its holder is gone: the lock is gone


# --- resuming a finished run, a resume with no step left -------------------------------------------------------


@pytest.mark.slow
def test_resuming_a_finished_run_does_nothing(tmp_path):
    run = tmp_path / "run"
    first = run_train(f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr[-3000:]
    before = digests(run)
    for resume in ("resume=auto", f"ckpt_path={run}/checkpoints/last.ckpt"):
        again = run_train(f"hydra.run.dir={run}", resume)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "already finished at step 6 (its metrics.json): nothing to do" in again.stdout + again.stderr
        assert digests(run) == before  # no second part: not in metrics.json, not in the CSV, not in .hydra/
    refused = run_train(f"hydra.run.dir={run}", "seed=7")  # another run into it: refused, nothing written
    assert refused.returncode == 2 and "already holds a train run" in refused.stderr
    assert digests(run) == before  # train.log included


def test_a_resume_with_no_step_left_counts_no_step_and_logs_no_row_twice(train_cfg, tmp_path):
    """Interrupted during the final test (last.ckpt at max_steps, no metrics.json): the resumed part validates and
    tests again, and adds no training step and no duplicate CSV row."""
    import csv

    from src.train import train

    train(train_cfg("model=b_a", "logger=csv"))
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    (tmp_path / "metrics.json").unlink()
    result = train(train_cfg("model=b_a", "logger=csv", "resume=auto"))
    assert (result["cost"]["train_steps"], result["cost"]["parts"], result["global_step"]) == (4, 2, 4)
    again = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))

    def kinds(table):  # how many rows of training losses, validation and test scores
        return Counter(next((k.split("/")[0] for k, v in r.items() if v and "/" in k), "other") for r in table)

    assert kinds(again) == kinds(rows) and (kinds(rows)["val"], kinds(rows)["test"]) == (3, 1)
    assert again[:-2] == rows[:-2]  # the training part as it was; the final validation and test logged once


# --- impossible values -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["schedule.max_steps=0"],
            r"schedule.max_steps=0: a training run needs a number of steps >= 1 .*train nothing",
        ),
        (["schedule.max_steps=-1"], r"schedule.max_steps=-1: .*would train forever"),
        (["trainer.max_steps=0"], r"trainer.max_steps=0: a training run needs"),
        (["schedule.val_every=0"], r"schedule.val_every=0: validate every N >= 1 steps"),
        (["trainer.val_check_interval=-2"], r"trainer.val_check_interval=-2: validate every"),
        (["test_ckpt=worst"], r"test_ckpt='worst': expected one of \('best', 'last'\)"),
    ],
)
def test_impossible_values_are_refused_naming_the_key(train_cfg, tmp_path, overrides, message):
    from src.train import train

    with pytest.raises(ConfigValueError, match=message):
        train(train_cfg("model=b_a", *overrides))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written
    check_train_config(train_cfg("model=b_a", "schedule.max_steps=-1", "trainer.max_epochs=2"))  # epochs bound it


def test_a_resume_that_changes_the_numerics_is_refused(tmp_path):
    from omegaconf import OmegaConf

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    ran = {
        "task": "train",
        "seed": 1,
        "model": {"net": {"variant": "b_a"}},
        "schedule": {"max_steps": 4},
        "matmul_precision": "high",
        "trainer": {"precision": "32-true", "max_steps": 4, "deterministic": False},
    }
    OmegaConf.save(OmegaConf.create(ran), run / ".hydra" / "config.yaml")
    now = OmegaConf.create({**ran, "resume": "auto"})
    refuse_existing_run(run, now, hydra_files=True)  # the same run
    refuse_existing_run(run, OmegaConf.merge(now, {"trainer": {"devices": 4}}), hydra_files=True)  # other hardware
    for change, key in [
        ({"trainer": {"precision": "bf16-mixed"}}, "trainer.precision: '32-true' in the run, 'bf16-mixed' now"),
        ({"trainer": {"gradient_clip_val": 1.0}}, "trainer.gradient_clip_val: None in the run, 1.0"),
        ({"trainer": {"accumulate_grad_batches": 2}}, "trainer.accumulate_grad_batches"),
        ({"trainer": {"deterministic": True}}, "trainer.deterministic"),
        ({"matmul_precision": "highest"}, "matmul_precision: 'high' in the run, 'highest' now"),
    ]:
        with pytest.raises(ResumeConfigError, match=re_escape(key)):
            refuse_existing_run(run, OmegaConf.merge(now, change), hydra_files=True)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.slow
def test_a_refusal_on_the_command_line_is_one_line_and_exit_status_2(tmp_path):
    proc = run_train(f"hydra.run.dir={tmp_path / 'run'}", "schedule.val_every=0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: schedule.val_every=0: validate every N >= 1 steps (or a fraction of an epoch in (0, 1])"
    )


# --- what a run prints -----------------------------------------------------------------------------------------


class WritePicture(L.Callback):
    """Stands in for the callback that writes the run's before/after picture during test."""

    def on_test_end(self, trainer, pl_module) -> None:
        import imageio.v3 as iio

        folder = Path(trainer.default_root_dir) / "images"
        folder.mkdir(parents=True, exist_ok=True)
        iio.imwrite(folder / "before_after.png", np.zeros((4, 8, 3), np.uint8))


@pytest.mark.slow
def test_a_smoke_run_prints_no_noise_and_ends_with_its_picture(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.train",
            "experiment=smoke",
            "model=b_a",
            "schedule.max_steps=2",
            "schedule.val_every=2",
            f"hydra.run.dir={run}",
            "+callbacks.picture._target_=tests.runs.test_lifecycle.WritePicture",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for noise in ("litlogger", "LeafSpec", "/-2", "weights_only"):
        assert noise not in proc.stderr + proc.stdout, noise
    assert proc.stdout.rstrip().splitlines()[-1] == f"before/after picture: {run / 'images' / 'before_after.png'}"
