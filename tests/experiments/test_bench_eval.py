"""experiments/bench_eval.py: its rows, ratios and folder row on a tiny run (not a timing test)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_experiment_script


def test_rows_ratios_and_folder_row(tmp_path, capsys):
    bench = load_experiment_script("bench_eval")
    out = tmp_path / "bench.json"
    work = tmp_path / "pairs"
    report = bench.main(
        [
            "--size",
            "40",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--pairs",
            "3",
            "--distinct",
            "2",
            "--workers",
            "0",
            "--workdir",
            str(work),
            "--json",
            str(out),
        ]
    )
    labels = [row["row"] for row in report["rows"]]
    assert labels == [
        f"{p} {what}" for p in ("spanet", "y_matlab", "rgb_uint8") for what in ("SSIM", "PSNR + SSIM")
    ] + ["all three protocols (score_all)"]
    for row in report["rows"]:
        assert row["speedup"] == pytest.approx(row["skimage_ms"] / row["suite_ms"])
    assert report["all_over_decode"] == pytest.approx(report["rows"][-1]["suite_ms"] / report["decode_pair_ms"])
    # (one repeat: the median of the per-run ratios is the ratio of the medians)
    assert report["folder"]["pairs"] == 3 and report["folder"]["seconds"] > 0 and report["folder"]["cpu_seconds"] > 0
    assert not work.exists()  # the generated pairs are removed (no --keep)
    assert json.loads(out.read_text())["rows"] == report["rows"]
    printed = capsys.readouterr().out
    assert "| all three protocols / decode floor (target <= 4x) |" in printed
    assert "folder scoring end to end: 3 pairs of 40x40" in printed


def test_skimage_pipelines_are_the_protocols():
    """The comparison is fair: scikit-image's pipelines give the suite's scores on a benchmark pair."""
    import numpy as np
    import torch

    from src.metrics.protocols import score_all

    bench = load_experiment_script("bench_eval")
    pred, clean = bench.make_pair(48, seed=3)
    p, c = pred / 255.0, clean / 255.0
    ours = score_all(*(torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None] for a in (p, c)))
    for name, (psnr_fn, ssim_fn) in bench.skimage_protocols().items():
        assert psnr_fn(p, c) == pytest.approx(ours[name]["psnr"].item(), abs=1e-9)
        assert ssim_fn(p, c) == pytest.approx(ours[name]["ssim"].item(), abs=1e-9)
