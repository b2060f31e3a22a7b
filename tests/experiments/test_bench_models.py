"""experiments/bench_models.py on CPU, tiny: each row's numbers against independent counts (not a timing test)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tests.conftest import load_experiment_script


@pytest.mark.slow  # one model in its own process: 15-40 s on a shared 2-core machine
def test_bench_models_rows(tmp_path, capsys):
    bench = load_experiment_script("bench_models")
    out = tmp_path / "bench.json"
    rows = bench.main(["--models", "ddn", "--side", "32", "--repeats", "1", "--warmup", "0", "--json", str(out)])
    (row,) = rows
    module = bench.build("ddn", [])
    assert row["params"] == sum(p.numel() for p in module.net.parameters()) == 57369
    # MACs: torch's own FLOP counter (2 per multiply-accumulate, biases not counted) as the reference
    x = torch.rand(1, 3, 32, 32)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    macs = counter.get_total_flops() / 2
    assert macs <= row["macs_g"] * 1e9 <= macs * 1.05
    for name in ("fwd", "fwd_bwd"):
        assert row[f"{name}_s_per_mp"] == pytest.approx(row[f"{name}_s"] / (32 * 32 / 1e6))
        assert row[f"{name}_peak_gib"] is None or row[f"{name}_peak_gib"] >= 0
    assert json.loads(out.read_text())["rows"] == rows
    printed = capsys.readouterr().out
    assert "| ddn | 57,369 |" in printed and "batch 1 at 32x32" in printed


def test_default_models_and_failed_rows():
    bench = load_experiment_script("bench_models")
    names = bench.default_models()
    assert {"spanet", "b_a", "ddn", "jorder", "rescan", "didmdn", "clear"} <= set(names)
    assert not set(names) & set(bench.SAME_NETWORK)
    assert "| nope | failed: KeyError: x |" in bench.table([{"model": "nope", "error": "KeyError: x"}])
