"""experiments/bench_predict.py on a tiny image: its rows, the before/after comparison with an exported revision,
the memory timeline (not a timing test: no number here depends on speed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import load_experiment_script


@pytest.mark.slow
def test_before_after_rows_and_timeline(tmp_path, capsys):
    from src.inference.tiling import auto_overlap
    from src.models.spanet import SPANet

    bench = load_experiment_script("bench_predict")
    timeline = tmp_path / "timeline.csv"
    overlap = auto_overlap(SPANet("b_a"))
    tile = overlap + 32
    rows = bench.main(
        [
            "--baseline",
            "HEAD",
            "--models",
            "b_a",
            "--megapixels",
            "0.03",
            "--tile",
            str(tile),
            "--timeline",
            str(timeline),
            "--json",
            str(tmp_path / "bench.json"),
        ]
    )
    assert [(r["code"], r["mode"]) for r in rows] == [("old", "whole"), ("new", "whole"), ("new", "tiled")]
    old, new, tiled = rows
    assert new["size"] == old["size"] == [150, 200] and new["max_abs_vs_old"] <= 1e-6
    assert all(r["bytes_per_px"] > 0 and r["s_per_mp"] > 0 for r in rows)
    assert new["psnr_clean"] == pytest.approx(old["psnr_clean"], abs=1e-3)
    assert tiled["overlap"] == overlap and tiled["tile"] == tile and tiled["psnr_vs_whole"] > 30
    assert tiled["delta_vs_clean_db"] == pytest.approx(tiled["psnr_clean"] - new["psnr_clean"], abs=1e-9)
    printed = capsys.readouterr().out
    assert "| b_a | 0.03 | new | whole | 1 |" in printed
    assert f"| b_a | 0.03 | new | tiled {tile}/{overlap} | 1 |" in printed
    for label in ("old", "new"):  # resident memory above the baseline, sampled during the whole-image runs
        data = np.loadtxt(tmp_path / f"timeline_{label}.csv", delimiter=",", skiprows=1, ndmin=2)
        assert len(data) >= 2 and (np.diff(data[:, 0]) > 0).all()
    assert f"b_a 0.0 MP tiles {tile}, overlap {overlap}: tiled - whole against the clean image" in printed
    assert f"| {'new'} (" in printed and json.loads((tmp_path / "bench.json").read_text())["rows"] == rows


def test_psnr_and_table_ratios():
    bench = load_experiment_script("bench_predict")
    a = np.zeros((3, 4, 4), np.float32)
    assert bench.psnr(a, a + 0.1) == pytest.approx(20.0)
    assert bench.psnr(a, a) == float("inf")
    base = {
        "model": "spanet",
        "mp": 4.0,
        "mode": "whole",
        "threads": 1,
        "user_s": 10.0,
        "sys_s": 1.0,
        "psnr_clean": 20.0,
        "tile": None,
        "overlap": None,
    }
    rows = [
        dict(base, code="old", bytes_per_px=1200.0, s_per_mp=40.0, cpu_s_per_mp=44.0),
        dict(base, code="new", bytes_per_px=450.0, s_per_mp=16.0, cpu_s_per_mp=22.0, max_abs_vs_old=0.0),
    ]
    line = bench.table(rows).splitlines()[-1]
    assert line.endswith("| 0.40 | 0.50 | 0.38 | 0.0e+00 |")
    tiled = dict(base, code="new", mode="tiled", tile=512, overlap=128, bytes_per_px=60.0, s_per_mp=20.0)
    tiled.update(cpu_s_per_mp=20.0, psnr_clean=20.05, psnr_vs_whole=41.0, delta_vs_clean_db=0.05)
    assert bench.verdicts(rows + [tiled]).splitlines() == [
        "spanet 4.0 MP whole: 450 B/px (<= 500), time 0.40x the baseline (<= 0.5), max |new - old| 0.0e+00 (<= 1e-06)",
        "spanet 4.0 MP tiles 512, overlap 128: tiled - whole against the clean image +0.050 dB (within 0.1 dB)",
    ]
    assert "(> 500)" in bench.verdicts([dict(rows[1], bytes_per_px=501.0)])
