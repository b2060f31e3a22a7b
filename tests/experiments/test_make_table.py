"""experiments/make_table.py end to end on a fake sweep folder, and its W&B reader on a mocked API."""

from __future__ import annotations

import json
import statistics
import sys
import types
from pathlib import Path

import pytest

from tests.conftest import load_experiment_script


make_table = load_experiment_script("make_table")

# made-up test PSNR / SSIM (protocol spanet) of 3 models x 2 seeds on SPA-Data, and y_matlab = spanet + 1 dB
SCORES = {
    ("b_a", 1): (37.00, 0.9850), ("b_a", 2): (37.20, 0.9860),
    ("spanet", 1): (38.10, 0.9870), ("spanet", 2): (37.90, 0.9866),
    ("ddn", 1): (34.50, 0.9700), ("ddn", 2): (34.80, 0.9710),
}  # fmt: skip


def _report(psnr: float, ssim: float) -> dict:
    mean = {
        "spanet": {"psnr": psnr, "ssim": ssim},
        "y_matlab": {"psnr": psnr + 1.0, "ssim": ssim - 0.01},
        "rgb_uint8": {"psnr": psnr - 0.01, "ssim": ssim - 0.02},
    }
    return {"n_images": 2, "mean": mean, "per_image": {"x": mean, "y": mean}}


def _write_run(folder: Path, model: str, data: str, seed: int, psnr: float, ssim: float) -> None:
    folder.mkdir(parents=True)
    record = {
        "task": "train", "experiment": "table2", "model": model, "data": data, "schedule": "spanet_paper",
        "seed": seed, "ckpt_path": str(folder / "best.ckpt"), "val": _report(psnr - 0.5, ssim),
        "test": _report(psnr, ssim), "test_input": _report(32.6 + 0.0 * seed, 0.9310),
    }  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(record))


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "multirun" / "2026-01-01"
    for i, ((model, seed), (psnr, ssim)) in enumerate(SCORES.items()):
        _write_run(root / str(i), model, "realrain", seed, psnr, ssim)
    _write_run(root / "smoke", "b_a", "synthetic", 1, 20.0, 0.7)  # no paper counterpart
    (root / "eval").mkdir()
    (root / "eval" / "metrics.json").write_text(json.dumps(_report(30.0, 0.9)))  # a src.eval file: skipped
    return root


def _row(markdown: str, data: str, label: str) -> list[str]:
    section = markdown.split(f"### {data} ")[1].split("###")[0]
    line = next(ln for ln in section.splitlines() if ln.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_sweep_table(sweep, capsys):
    markdown = make_table.main([str(sweep)])
    assert capsys.readouterr().out.strip() == markdown.strip()
    assert (sweep / "table.md").read_text() == markdown
    tex = (sweep / "table.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and r"b\_a" in tex
    png = (sweep / "bars.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    for model, paper in (("b_a", ("37.43", "0.9856", "Table 4")), ("spanet", ("38.06", "0.9867", "Table 2")),
                         ("ddn", ("34.88", "0.9727", "Table 2"))):  # fmt: skip
        psnrs = [SCORES[(model, s)][0] for s in (1, 2)]
        ssims = [SCORES[(model, s)][1] for s in (1, 2)]
        row = _row(markdown, "realrain", model)
        assert row == [
            model, "2",
            f"{statistics.mean(psnrs):.2f} ± {statistics.stdev(psnrs):.2f}",
            f"{statistics.mean(ssims):.4f} ± {statistics.stdev(ssims):.4f}",
            *paper,
        ]  # fmt: skip
    assert _row(markdown, "realrain", "b_a")[2] == "37.10 ± 0.14"  # written out once, by hand
    assert _row(markdown, "realrain", "rain input") == ["rain input", "6", "32.60 ± 0.00", "0.9310 ± 0.0000",
                                                        "32.64", "0.9315", "Table 2"]  # fmt: skip
    assert _row(markdown, "synthetic", "b_a") == ["b_a", "1", "20.00", "0.7000", "-", "-", "-"]
    # order: rain input, b_a..b_f, spanet, baselines
    section = markdown.split("### realrain")[1].split("###")[0]
    assert section.index("| rain input") < section.index("| b_a") < section.index("| spanet") < section.index("| ddn")
    assert "protocol spanet" in markdown and "2 seeds" in markdown and "synthetic smoke data" in markdown
    assert "protocol spanet" in tex


def test_other_protocol_split_and_out(sweep, tmp_path):
    out = tmp_path / "tables"
    markdown = make_table.main([str(sweep), "--protocol", "y_matlab", "--out", str(out)])
    assert (out / "table.md").is_file() and (out / "table.tex").is_file() and (out / "bars.png").is_file()
    assert _row(markdown, "realrain", "b_a")[2:] == ["38.10 ± 0.14", "0.9755 ± 0.0007", "-", "-", "-"]
    assert "protocol y_matlab" in markdown and "protocol spanet only" in markdown
    val = make_table.main([str(sweep), "--split", "val", "--out", str(out)])
    assert _row(val, "realrain", "spanet")[2] == "37.50 ± 0.14"


def test_duplicate_seed_is_an_error(sweep):
    _write_run(sweep / "again", "ddn", "realrain", 2, 30.0, 0.9)
    with pytest.raises(SystemExit, match=r"ddn on realrain \(schedule spanet_paper\), seed 2"):
        make_table.main([str(sweep)])


class _FakeRun:
    def __init__(self, run_id, config, summary):
        self.id, self.config, self.summary = run_id, config, summary


class _FakeApi:
    def __init__(self, runs):
        self._runs = runs
        self.asked = []

    def runs(self, project, filters=None):
        self.asked.append(project if filters is None else (project, filters))
        if filters is None:
            return self._runs
        return [r for r in self._runs if getattr(r, "group", None) == filters["group"]]


def test_wandb_reader_with_mocked_api(monkeypatch, tmp_path):
    runs = [
        _FakeRun(f"r{i}", {"run_info": {"model": m, "data": "realrain", "schedule": "x"}, "seed": s,
                           "model": {"_target_": "src.lit.module.DerainModule"}},
                 {"test/psnr_spanet": p, "test/ssim_spanet": q, "test/input_psnr_spanet": 32.6,
                  "test/input_ssim_spanet": 0.931})
        for i, ((m, s), (p, q)) in enumerate(SCORES.items())
    ] + [_FakeRun("crashed", {"run_info": {"model": "b_b"}}, {})]  # fmt: skip
    api = _FakeApi(runs)
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Api=lambda: api))  # no real wandb import
    markdown = make_table.main(["--wandb", "me/spanet", "--out", str(tmp_path)])
    assert api.asked == ["me/spanet"]
    assert _row(markdown, "realrain", "b_a")[:4] == ["b_a", "2", "37.10 ± 0.14", "0.9855 ± 0.0007"]
    assert "| b_b |" not in markdown
    assert (tmp_path / "bars.png").is_file()
    # flattened config keys ("run_info/model") are understood too
    flat = [_FakeRun("f", {"run_info/model": "b_c", "run_info/data": "didmdn", "seed": 1},
                     {"test/psnr_spanet": 29.0, "test/ssim_spanet": 0.93})]  # fmt: skip
    rows = make_table.summarize(make_table.runs_from_wandb("p", "test", "spanet", api=_FakeApi(flat)), "spanet")
    assert [(r.data, r.model, r.paper_psnr) for r in rows] == [("didmdn", "b_c", None)]


def test_extra_rows_from_folder_scoring(sweep, tmp_path):
    """--extra adds methods scored by src.eval pred_dir=... (e.g. the Matlab-only DSC) beside trained models,
    with their paper numbers (Table 2: DSC 32.33 / 0.9335 on SPA-Data)."""
    dsc, other = tmp_path / "dsc.json", tmp_path / "other.json"
    dsc.write_text(json.dumps(_report(32.10, 0.9301)))
    other.write_text(json.dumps(_report(25.00, 0.8000)))
    markdown = make_table.main([str(sweep), "--out", str(tmp_path / "t"), "--extra", f"DSC@realrain={dsc}",
                                "--extra", f"MyMethod@synthetic={other}"])
    assert _row(markdown, "realrain", "DSC")[:6] == ["DSC", "1", "32.10", "0.9301", "32.33", "0.9335"]
    assert _row(markdown, "synthetic", "MyMethod")[:4] == ["MyMethod", "1", "25.00", "0.8000"]
    # without @DATA: the sweep has two data sets, so the user must say which
    with pytest.raises(SystemExit, match=r"say which data set .* \['realrain', 'synthetic'\]"):
        make_table.main([str(sweep), "--out", str(tmp_path / "t"), "--extra", f"DSC={dsc}"])
    train_record = next(sweep.rglob("0/metrics.json"))
    for spec, message in [(f"DSC@realrain={train_record}", "training run's metrics.json"),
                          (f"DSC@realrain={tmp_path / 'missing.json'}", "cannot read"), ("DSC", "expected LABEL=FILE")]:
        with pytest.raises(SystemExit, match=message):
            make_table.main([str(sweep), "--out", str(tmp_path / "t"), "--extra", spec])


def test_wandb_group_filter(monkeypatch, tmp_path):
    def run(i, model, group):
        r = _FakeRun(f"r{i}", {"run_info": {"model": model, "data": "realrain"}, "seed": 1},
                     {"test/psnr_spanet": 30.0 + i, "test/ssim_spanet": 0.9})
        r.group = group
        return r

    api = _FakeApi([run(0, "b_a", "table4"), run(1, "ddn", "table2"), run(2, "rescan", "table2")])
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Api=lambda: api))
    markdown = make_table.main(["--wandb", "me/p", "--wandb-group", "table2", "--out", str(tmp_path)])
    assert api.asked == [("me/p", {"group": "table2"})]
    assert "| ddn |" in markdown and "| rescan |" in markdown and "| b_a |" not in markdown
    with pytest.raises(SystemExit, match="no runs with test/psnr_spanet in W&B project me/p, group nope"):
        make_table.main(["--wandb", "me/p", "--wandb-group", "nope", "--out", str(tmp_path)])
