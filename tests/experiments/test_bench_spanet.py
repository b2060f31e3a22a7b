"""experiments/bench_spanet.py: the IRNN rows and the definition of the bandwidth floor (not a timing test)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_experiment_script


def test_irnn_rows_and_floor(tmp_path, capsys):
    """The floor is 11 values of x's size moved (read x, write 4 directions; read their gradient and x, write
    dx) over the copy bandwidth measured in the same run, and the ratio is the scan's time over it."""
    bench = load_experiment_script("bench_spanet")
    out = tmp_path / "bench.json"
    report = bench.main(
        [
            "--irnn-only",
            "--sizes",
            "small",
            "--repeats",
            "1",
            "--irnn-repeats",
            "2",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--json",
            str(out),
        ]
    )
    info, rows = report["info"], report["results"]["B8 64x64"]
    auto = info["irnn_auto_backend"]
    n_bytes = 8 * 32 * 64 * 64 * 4
    assert rows["irnn_floor_ms"] == pytest.approx(11 * n_bytes / (info["copy_bandwidth_GBps"] * 1e9) * 1e3)
    assert rows["irnn_over_floor"] == pytest.approx(rows[f"irnn_{auto}_ms"] / rows["irnn_floor_ms"])
    assert {"irnn_naive_ms", "irnn_floor_ms"} <= set(rows) and "train_b_a_ms" not in rows  # --irnn-only
    assert json.loads(out.read_text())["results"] == report["results"]
    printed = capsys.readouterr().out
    assert f"| IRNN '{auto}' / floor | {rows['irnn_over_floor']:.2f}x |" in printed
    assert "(2 for the IRNN" in printed
