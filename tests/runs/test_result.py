"""metrics.json as a type (src/runs/result.py): files written before the version field still read (version 1),
a newer version is refused by name, eval's file fits ScoreResult, and the reasons a run is incomplete."""

from __future__ import annotations

import json
import os

import pytest

from src.runs.result import (
    VERSION,
    ResultVersionError,
    RunResult,
    ScoreResult,
    incomplete_reasons,
    newest_run,
    read_result,
)


def _report(n: int, psnr: float = 30.0) -> dict:
    per_image = {f"img{i}": {"spanet": {"psnr": psnr + i, "ssim": 0.9}} for i in range(n)}
    return {"n_images": n, "mean": {"spanet": {"psnr": psnr + (n - 1) / 2, "ssim": 0.9}}, "per_image": per_image}


# a training run's metrics.json as src.train wrote it before the version field (key order included)
VERSION_1 = {
    "task": "train", "experiment": "table4_smoke", "model": "b_a", "data": "synthetic", "schedule": "quick",
    "seed": 1, "test_ckpt": "best", "ckpt_path": "/r/checkpoints/best.ckpt", "global_step": 4, "max_steps": 4,
    "complete": True, "incomplete": [], "shortened_on_purpose": False, "bad_files": {"skipped": 0, "first": []},
    "val": _report(3), "val_input": _report(3, 20.0), "test": _report(3, 31.0), "test_input": _report(3, 21.0),
    "cost": {"accelerator": "cpu", "device": "x", "device_count": 1, "wall_time_s": 1.5, "train_steps": 4,
             "it_per_s": 2.6, "peak_memory_gb": 0.5, "gpu_hours": None, "parts": 1},
    "resumed_from": None, "interruptions": [],
}  # fmt: skip


def test_a_file_without_version_is_version_1_and_reads_back_unchanged(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(VERSION_1))
    result = read_result(tmp_path)
    assert isinstance(result, RunResult) and result.version == 1 and result.started is None
    assert (result.model, result.global_step, result.complete, result.test["n_images"]) == ("b_a", 4, True, 3)
    assert result["test"] == VERSION_1["test"] and result.objective() == VERSION_1["test"]["mean"]["spanet"]["psnr"]
    written = result.to_dict()
    new = ("version", "started", "test_note", "compute")  # fields version 1 did not have
    assert [k for k in written if k not in new[2:]] == ["version", *VERSION_1, "started"]  # same keys, same order
    assert (written["test_note"], written["compute"]) == (None, None)
    assert {k: v for k, v in written.items() if k not in new} == VERSION_1


def test_what_src_train_writes_now_reads_back_equal(tmp_path):
    result = RunResult.from_dict({**VERSION_1, "run_note": "kept", "started": "2026-01-02T03:04:05"})
    assert result.extra == {"run_note": "kept"}
    result.version = VERSION
    result.write(tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["version"] == VERSION == 2 and saved["run_note"] == "kept"
    assert list(saved).index("run_note") == list(saved).index("schedule") + 1  # more run_info after schedule
    assert read_result(tmp_path / "metrics.json") == result


def test_a_newer_version_is_refused_with_a_clear_message(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({**VERSION_1, "version": VERSION + 1}))
    with pytest.raises(
        ResultVersionError,
        match=rf"metrics.json version {VERSION + 1}, but this suite reads "
        rf"versions 1 to {VERSION}",
    ):
        read_result(tmp_path)


def test_an_eval_file_fits_score_result(tmp_path):
    """src.eval's metrics.json (a report at the top, n_expected, complete, problems) as ScoreResult."""
    body = {**_report(2), "n_expected": 3, "complete": False, "problems": ["x: scored 2 of 3 images"]}
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(body))
    result = read_result(path)
    assert isinstance(result, ScoreResult) and result.version == 1 and result.complete is False
    assert result.report == {**_report(2), "n_expected": 3} and result.problems == body["problems"]
    assert {k: v for k, v in result.to_dict().items() if k != "version"} == body


def test_incomplete_reasons():
    result = RunResult.from_dict({**VERSION_1, "global_step": 3, "max_steps": 4})
    assert incomplete_reasons(result, {"val": 3, "test": 5}, "interrupted") == [
        "training interrupted at step 3 of max_steps=4",
        "test: scored 3 of 5 images",
    ]
    assert incomplete_reasons(RunResult.from_dict(VERSION_1), {"val": 3, "test": None}) == []


def test_newest_run_is_the_one_started_last_not_the_last_name(tmp_path):
    for name, started in (("b_first_by_name", "2026-01-01T10:00:00"), ("a_started_later", "2026-01-01T11:00:00")):
        (tmp_path / name).mkdir()
        RunResult.from_dict({**VERSION_1, "started": started}).write(tmp_path / name)
    (tmp_path / "zz_eval").mkdir()
    ScoreResult(report=_report(1)).write(tmp_path / "zz_eval" / "metrics.json")  # not a run
    assert newest_run(tmp_path) == tmp_path / "a_started_later"
    old = tmp_path / "c_version_1"  # no start time recorded: when its metrics.json was written
    old.mkdir()
    (old / "metrics.json").write_text(json.dumps(VERSION_1))
    os.utime(old / "metrics.json", (1_000_000_000, 1_000_000_000))  # 2001
    assert newest_run(tmp_path) == tmp_path / "a_started_later"
    os.utime(old / "metrics.json")  # now
    assert newest_run(tmp_path) == old
    assert newest_run(tmp_path / "zz_eval") is None
