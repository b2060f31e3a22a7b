"""experiments/bench_train.py on CPU, tiny: its table's numbers are consistent with each other."""

from __future__ import annotations

import pytest

from tests.conftest import load_experiment_script


def test_bench_train_rows_split_the_step_and_project_the_schedule(capsys):
    bench = load_experiment_script("bench_train")
    rows = bench.main(
        [
            "--batch",
            "2",
            "--crop",
            "32",
            "--steps",
            "2",
            "--warmup",
            "0",
            "--pairs",
            "4",
            "--workers",
            "0",
            "--threads",
            "1",
            "--options",
            "default",
            "bf16",
            "cudnn_benchmark",
        ]
    )
    assert [r["option"] for r in rows] == ["default", "bf16"]  # cudnn_benchmark: CUDA only, said so
    for r in rows:
        assert (r["batch"], r["crop"], r["max_steps"]) == (2, 32, 60000)  # recipe=spanet: schedule spanet_paper
        parts = r["data_wait_ms"] + r["fwd_bwd_ms"] + r["optimizer_ms"]
        assert r["step_ms"] == pytest.approx(parts, rel=1e-6)  # 2 steps: median = mean, parts add up
        assert r["it_per_s"] == pytest.approx(1e3 / r["step_ms"])
        assert r["projected_h"] == pytest.approx(60000 * r["step_ms"] / 1e3 / 3600)
    assert rows[0]["ratio"] == 1.0 and rows[1]["ratio"] == pytest.approx(rows[0]["step_ms"] / rows[1]["step_ms"])
    out = capsys.readouterr().out
    assert "| default |" in out and "| bf16 |" in out and "not run on cpu: cudnn_benchmark" in out
