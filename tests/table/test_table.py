"""python -m src.table (src/table/) end to end on a fake sweep folder, and its W&B reader on a mocked API.

Numbers are checked against values computed here independently: means and stds with ``statistics``, bootstrap
intervals against an exact enumeration, a loop written out here and scipy.stats.bootstrap, paired differences
by hand."""

from __future__ import annotations

import itertools
import json
import os
import statistics
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

import src.table as make_table
from src.table import read, stats

# made-up test PSNR / SSIM (protocol spanet) of 3 models x 2 seeds on SPA-Data, and y_matlab = spanet + 1 dB
SCORES = {
    ("b_a", 1): (37.00, 0.9850), ("b_a", 2): (37.20, 0.9860),
    ("spanet", 1): (38.10, 0.9870), ("spanet", 2): (37.90, 0.9866),
    ("ddn", 1): (34.50, 0.9700), ("ddn", 2): (34.80, 0.9710),
}  # fmt: skip
IMAGES = ("img_a", "img_b", "img_c", "img_d")
# per-image deviations from a run's mean (each sums to 0, so the run's mean is its SCORES value)
OFFSETS = {
    "b_a": (-0.9, -0.3, 0.4, 0.8), "spanet": (-0.5, -0.4, 0.2, 0.7), "ddn": (-1.5, 0.1, 0.3, 1.1),
    "input": (-2.0, -1.0, 1.0, 2.0),
}  # fmt: skip
SSIM_OFFSETS = (-0.002, -0.001, 0.001, 0.002)


def _report(psnr: float, ssim: float, offsets=(0.0, 0.0, 0.0, 0.0), images=IMAGES) -> dict:
    def scores(p, s):
        return {"spanet": {"psnr": p, "ssim": s}, "y_matlab": {"psnr": p + 1.0, "ssim": s - 0.01},
                "rgb_uint8": {"psnr": p - 0.01, "ssim": s - 0.02}}  # fmt: skip

    per_image = {n: scores(psnr + o, ssim + so) for n, o, so in zip(images, offsets, SSIM_OFFSETS)}
    return {"n_images": len(per_image), "mean": scores(psnr, ssim), "per_image": per_image}


def _write_run(folder: Path, model: str, data: str, seed: int, psnr: float, ssim: float, **extra) -> dict:
    folder.mkdir(parents=True)
    record = {
        "task": "train", "experiment": "table2", "model": model, "data": data, "schedule": "spanet_paper",
        "seed": seed, "ckpt_path": str(folder / "best.ckpt"), "global_step": 100,
        "val": _report(psnr - 0.5, ssim, OFFSETS.get(model, OFFSETS["b_a"])),
        "test": _report(psnr, ssim, OFFSETS.get(model, OFFSETS["b_a"])),
        "test_input": _report(32.6, 0.9310, OFFSETS["input"]), **extra,
    }  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(record))
    return record


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


def _header(markdown: str, data: str) -> list[str]:
    section = markdown.split(f"### {data} ")[1]
    line = next(ln for ln in section.splitlines() if ln.startswith("| model |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def reference_bootstrap(values, n_resamples, seed, level=0.95):
    """The percentile bootstrap written out: one resample at a time from numpy's default_rng(seed)."""
    x = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = [x[rng.integers(0, len(x), size=len(x))].mean() for _ in range(n_resamples)]
    return tuple(np.quantile(means, [(1 - level) / 2, (1 + level) / 2]))


# --- the table ----------------------------------------------------------------------------------------


def test_sweep_table(sweep, capsys):
    markdown = make_table.main([str(sweep), "--bootstrap", "2000"])
    assert capsys.readouterr().out.strip() == markdown.strip()
    assert (sweep / "table.md").read_text() == markdown
    tex = (sweep / "table.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and r"b\_a" in tex
    assert r"$\Delta$ PSNR vs spanet" in tex and r"37.10 $\pm$ 0.14" in tex
    png = (sweep / "chart.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    assert _header(markdown, "realrain") == [
        "model", "seeds", "PSNR (dB)", "95% CI", "Δ PSNR vs spanet", "SSIM", "95% CI", "Δ SSIM vs spanet",
        "paper PSNR", "paper SSIM", "paper table"]  # fmt: skip
    for model, paper in (("b_a", ("37.43", "0.9856", "Table 4")), ("spanet", ("38.06", "0.9867", "Table 2")),
                         ("ddn", ("34.88", "0.9727", "Table 2"))):  # fmt: skip
        psnrs = [SCORES[(model, s)][0] for s in (1, 2)]
        ssims = [SCORES[(model, s)][1] for s in (1, 2)]
        row = _row(markdown, "realrain", model)
        assert row[:3] == [model, "2", f"{statistics.mean(psnrs):.2f} ± {statistics.stdev(psnrs):.2f}"]
        assert row[5] == f"{statistics.mean(ssims):.4f} ± {statistics.stdev(ssims):.4f}"
        assert row[8:] == list(paper)
        # the interval: over the 4 images' scores averaged over the 2 seeds
        per_image = statistics.mean(psnrs) + np.array(OFFSETS[model])
        low, high = reference_bootstrap(per_image, 2000, 0)
        assert row[3] == f"[{low:.2f}, {high:.2f}]"
    assert _row(markdown, "realrain", "b_a")[2] == "37.10 ± 0.14"  # written out once, by hand
    assert _row(markdown, "realrain", "spanet")[4] == _row(markdown, "realrain", "spanet")[7] == "(reference)"
    # the rain input: the same scores in all 6 runs, so one value and no seed count
    assert _row(markdown, "realrain", "rain input")[:3] == ["rain input", "-", "32.60"]
    assert _row(markdown, "realrain", "rain input")[8:] == ["32.64", "0.9315", "Table 2"]
    low, high = reference_bootstrap(20.0 + np.array(OFFSETS["b_a"]), 2000, 0)
    s_low, s_high = reference_bootstrap(0.7 + np.array(SSIM_OFFSETS), 2000, 0)
    assert _row(markdown, "synthetic", "b_a") == ["b_a", "1", "20.00", f"[{low:.2f}, {high:.2f}]", "0.7000",
                                                  f"[{s_low:.4f}, {s_high:.4f}]", "-", "-", "-"]  # fmt: skip
    assert "Δ" not in _header(markdown, "synthetic")  # no spanet / b_f run on synthetic data
    # order: rain input, b_a..b_f, spanet, baselines
    section = markdown.split("### realrain")[1].split("###")[0]
    assert section.index("| rain input") < section.index("| b_a") < section.index("| spanet") < section.index("| ddn")
    assert "protocol spanet" in markdown and "2 seeds" in markdown and "synthetic smoke data" in markdown
    assert "2000 resamples" in markdown and "the 4 test images" in markdown
    assert "protocol spanet" in tex


def test_paired_difference_by_hand(sweep):
    """Δ of b_a vs spanet: per image, the seed-averaged b_a score minus the seed-averaged spanet score."""
    markdown = make_table.main([str(sweep), "--bootstrap", "3000", "--seed", "7"])
    b_a = 37.10 + np.array([-0.9, -0.3, 0.4, 0.8])  # (37.00 + 37.20) / 2 plus OFFSETS["b_a"]
    spanet = 38.00 + np.array([-0.5, -0.4, 0.2, 0.7])
    diff = b_a - spanet  # -1.3, -0.8, -0.7, -0.8: mean -0.9
    assert diff.mean() == pytest.approx(-0.9)
    low, high = reference_bootstrap(diff, 3000, 7)
    assert _row(markdown, "realrain", "b_a")[4] == f"-0.90 [{low:+.2f}, {high:+.2f}]"
    # SSIM: both have the same per-image deviations, so the difference is constant and its interval a point
    d_ssim = statistics.mean([0.9850, 0.9860]) - statistics.mean([0.9870, 0.9866])
    assert _row(markdown, "realrain", "b_a")[7] == f"{d_ssim:+.4f} [{d_ssim:+.4f}, {d_ssim:+.4f}]"
    # the rain input against spanet too (does the model beat the input?)
    inp = 32.6 + np.array(OFFSETS["input"]) - spanet
    assert _row(markdown, "realrain", "rain input")[4].startswith(f"{inp.mean():+.2f} [")

    # pairing matters: the paired interval is much narrower than the two means' intervals suggest
    rows = make_table.summarize(
        make_table.runs_from_dir(sweep, "test", "spanet"), "spanet", make_table.Bootstrap(3000, 7)
    )
    row = next(r for r in rows if r.model == "b_a" and r.data == "realrain")
    ref = next(r for r in rows if r.model == "spanet")
    assert ref.is_reference and row.d_psnr == pytest.approx(-0.9)
    assert row.d_psnr_ci[1] - row.d_psnr_ci[0] < 0.5 * (row.psnr_ci[1] - row.psnr_ci[0])


def test_reference_option_and_b_f_default(sweep, tmp_path):
    markdown = make_table.main([str(sweep), "--reference", "ddn", "--out", str(tmp_path)])
    assert "Δ PSNR vs ddn" in _header(markdown, "realrain") and _row(markdown, "realrain", "ddn")[4] == "(reference)"
    assert _row(markdown, "realrain", "spanet")[4].startswith("+3.35 [")  # 38.00 - 34.65
    # the ablation sweep has no "spanet" row: B_f (SPANet) is the reference
    root = tmp_path / "ablation"
    for model, psnr in (("b_a", 30.0), ("b_f", 31.0)):
        _write_run(root / model, model, "synthetic", 1, psnr, 0.9)
    markdown = make_table.main([str(root)])
    assert "Δ PSNR vs b_f" in _header(markdown, "synthetic") and _row(markdown, "synthetic", "b_a")[4].startswith(
        "-1.00"
    )


def test_other_protocol_split_and_out(sweep, tmp_path):
    out = tmp_path / "tables"
    markdown = make_table.main([str(sweep), "--protocol", "y_matlab", "--out", str(out)])
    assert (out / "table.md").is_file() and (out / "table.tex").is_file() and (out / "chart.png").is_file()
    row = _row(markdown, "realrain", "b_a")
    assert (row[2], row[5], row[8:]) == ("38.10 ± 0.14", "0.9755 ± 0.0007", ["-", "-", "-"])
    assert "protocol y_matlab" in markdown and "only where they were computed under protocol y_matlab" in markdown
    val = make_table.main([str(sweep), "--split", "val", "--out", str(out)])
    assert _row(val, "realrain", "spanet")[2] == "37.50 ± 0.14"
    two = make_table.main([str(sweep), "--resample-seeds", "--level", "0.9", "--out", str(out)])
    assert _header(two, "realrain")[3] == "90% CI" and "two-level percentile bootstrap" in two
    spanet = 38.00 + np.array(OFFSETS["spanet"])
    seeds_b_a = [37.00 + np.array(OFFSETS["b_a"]), 37.20 + np.array(OFFSETS["b_a"])]
    assert _row(two, "realrain", "b_a")[3] != _row(markdown, "realrain", "b_a")[3]
    low, high = make_table.bootstrap_ci(np.array(seeds_b_a), 10000, 0, 0.9, minus=np.array([spanet + 0.1, spanet - 0.1]),
                                        resample_seeds=True)  # fmt: skip
    assert _row(two, "realrain", "b_a")[4] == f"-0.90 [{low:+.2f}, {high:+.2f}]"
    none = make_table.main([str(sweep), "--bootstrap", "0", "--out", str(out)])
    assert _row(none, "realrain", "b_a")[3] == "-" and _row(none, "realrain", "b_a")[4] == "-0.90"


def test_duplicate_seed_is_an_error(sweep):
    _write_run(sweep / "again", "ddn", "realrain", 2, 30.0, 0.9)
    with pytest.raises(SystemExit, match=r"ddn on realrain \(schedule spanet_paper\), seed 2"):
        make_table.main([str(sweep)])


# --- bootstrap ----------------------------------------------------------------------------------------


def test_bootstrap_matches_the_loop_written_out():
    values = np.random.default_rng(3).normal(30.0, 2.0, size=37)
    assert make_table.bootstrap_ci(values, 1500, 11) == pytest.approx(reference_bootstrap(values, 1500, 11), abs=1e-12)
    # chunking (several draws of many resamples) consumes the generator as the loop does
    big = np.random.default_rng(4).normal(size=200_000)
    assert make_table.bootstrap_ci(big, 25, 5) == pytest.approx(reference_bootstrap(big, 25, 5), abs=1e-12)
    assert make_table.bootstrap_ci([1.0], 100, 0) is None and make_table.bootstrap_ci([1.0, 2.0], 0, 0) is None


def test_two_level_bootstrap():
    """--resample-seeds: each resample draws images, then each row's seeds; checked against the loop written
    out, and against two cases whose answer is known exactly."""
    rng = np.random.default_rng(5)
    a, b = rng.normal(30, 1, size=(3, 9)), rng.normal(29, 1, size=(2, 9))  # 3 and 2 seeds x 9 images
    images, seeds, stats = np.random.default_rng(4), np.random.default_rng([4, 1]), []
    for _ in range(700):
        index = images.integers(0, 9, size=9)
        mix_a, mix_b = a[seeds.integers(0, 3, size=3)].mean(0), b[seeds.integers(0, 2, size=2)].mean(0)
        stats.append((mix_a - mix_b)[index].mean())
    expected = tuple(np.quantile(stats, [0.025, 0.975]))
    assert make_table.bootstrap_ci(a, 700, 4, minus=b, resample_seeds=True) == pytest.approx(expected, abs=1e-12)
    # identical seeds: the same as resampling images only
    same = np.repeat(a[:1], 3, axis=0)
    assert make_table.bootstrap_ci(same, 500, 1, resample_seeds=True) == pytest.approx(
        make_table.bootstrap_ci(a[0], 500, 1), abs=1e-12)  # fmt: skip
    # images all alike within a seed: only the seeds vary; with 2 seeds the resampled mean is the first seed's
    # (p = 1/4), the average (1/2) or the second's (1/4), so the 95% interval is [low seed, high seed]
    flat = np.array([[20.0] * 6, [22.0] * 6])
    assert make_table.bootstrap_ci(flat, 4000, 0, resample_seeds=True) == pytest.approx((20.0, 22.0))
    assert make_table.bootstrap_ci(flat, 4000, 0) == pytest.approx((21.0, 21.0))  # images only: no spread


def test_bootstrap_against_the_exact_distribution_and_scipy():
    # n = 5: all 5**5 equally likely resamples enumerated; the interval is their 2.5% / 97.5% quantiles
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    exact = np.sort([x[list(i)].mean() for i in itertools.product(range(5), repeat=5)])
    low, high = make_table.bootstrap_ci(x, 200_000, 0)
    assert low == pytest.approx(np.quantile(exact, 0.025), abs=0.1)
    assert high == pytest.approx(np.quantile(exact, 0.975), abs=0.1)
    # three values: all-equal resamples have probability 1/27 > 2.5%, so the interval is [min, max]
    assert make_table.bootstrap_ci([3.0, 5.0, 10.0], 20_000, 1) == pytest.approx((3.0, 10.0))
    # scipy's percentile bootstrap (its own resampling) agrees within Monte Carlo error
    scipy_stats = pytest.importorskip("scipy.stats")
    values = np.random.default_rng(8).gamma(2.0, 3.0, size=60)
    ours = make_table.bootstrap_ci(values, 40_000, 2)
    res = scipy_stats.bootstrap((values,), np.mean, n_resamples=40_000, method="percentile", vectorized=True,
                                **{("rng" if "rng" in scipy_stats.bootstrap.__code__.co_varnames else
                                    "random_state"): np.random.default_rng(9)})  # fmt: skip
    assert ours == pytest.approx(tuple(res.confidence_interval), abs=0.05)


# --- refusals and the sweep's jobs --------------------------------------------------------------------


def test_refuses_untrained_and_mismatched_runs(sweep):
    bad = json.loads((sweep / "3" / "metrics.json").read_text())
    bad["global_step"] = 0
    (sweep / "3" / "metrics.json").write_text(json.dumps(bad))
    with pytest.raises(SystemExit, match=r"3/metrics.json: the run trained 0 steps \(global_step 0\)"):
        make_table.main([str(sweep)])
    bad["global_step"] = 50
    bad["test"] = _report(37.9, 0.9866, images=IMAGES[:3])  # a run that scored 3 of the 4 test images
    (sweep / "3" / "metrics.json").write_text(json.dumps(bad))
    with pytest.raises(
        SystemExit,
        match=r"(?s)runs on realrain were scored on different test images \(most on 4\)"
        r".*3/metrics.json \(spanet\): 3 images, missing img_d",
    ):
        make_table.main([str(sweep)])
    bad["test"]["n_images"] = 4  # n_images that disagrees with the per-image scores
    (sweep / "3" / "metrics.json").write_text(json.dumps(bad))
    with pytest.raises(SystemExit, match=r"n_images is 4 but per_image holds 3 images"):
        make_table.main([str(sweep)])
    # a run that src.train marked incomplete (stopped before max_steps, or scored part of a split)
    bad = json.loads((sweep / "1" / "metrics.json").read_text())
    (sweep / "3" / "metrics.json").unlink()
    bad.update(complete=False, incomplete=["training stopped at step 40 of max_steps=100"])
    (sweep / "1" / "metrics.json").write_text(json.dumps(bad))
    with pytest.raises(
        SystemExit,
        match=r"1/metrics.json: the run is marked incomplete \(training stopped at step "
        r"40 of max_steps=100\)",
    ):
        make_table.main([str(sweep)])


def _multirun(root: Path, params: dict, task: list[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    spec = {"hydra": {"sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                                  "max_batch_size": None, "params": params},
                      "overrides": {"hydra": [], "task": task}}, "task": "train"}  # fmt: skip
    (root / "multirun.yaml").write_text(yaml.safe_dump(spec))


def _job(root: Path, num: int, overrides: list[str], model: str, seed: int, metrics=True, error=None) -> None:
    folder = root / str(num)
    if metrics:
        _write_run(folder, model, "synthetic", seed, 20.0 + seed, 0.8)
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if error:
        (folder / "error.txt").write_text(error)


def test_missing_and_failed_jobs_are_listed(tmp_path, capsys):
    root = tmp_path / "sweep"
    # 2 models x 3 seeds: the seeds come from the command line, the models from the experiment's params
    _multirun(root, {"model": "b_a,b_f"}, ["experiment=table4_smoke", "seed=1,2,3"])
    _job(root, 0, ["model=b_a", "experiment=table4_smoke", "seed=1"], "b_a", 1)
    _job(root, 1, ["model=b_a", "experiment=table4_smoke", "seed=2"], "b_a", 2)
    _job(root, 2, ["model=b_a", "experiment=table4_smoke", "seed=3"], "b_a", 3, metrics=False,
         error="RuntimeError: CUDA out of memory\nTraceback (most recent call last):\n  File ...\nRuntimeError: "
               "CUDA out of memory\n")  # fmt: skip
    _job(root, 3, ["model=b_f", "experiment=table4_smoke", "seed=1"], "b_f", 1)
    _job(root, 4, ["model=b_f", "experiment=table4_smoke", "seed=2"], "b_f", 2, metrics=False)
    # job 5 (b_f, seed 3) never started
    jobs, notes = make_table.sweep_jobs(root)
    assert notes == [] and [(j.num, j.status) for j in jobs] == [
        (0, "done"),
        (1, "done"),
        (2, "failed"),
        (3, "done"),
        (4, "no metrics.json"),
        (5, "not started"),
    ]
    assert jobs[5].overrides == ["model=b_f", "experiment=table4_smoke", "seed=3"]

    markdown = make_table.main([str(root)])
    assert f"**Incomplete sweep** `{root}`: 3 of 6 jobs finished" in markdown
    assert (
        f"- job 2 (model=b_a experiment=table4_smoke seed=3): failed in `{root / '2'}`: "
        "RuntimeError: CUDA out of memory (traceback in error.txt)"
    ) in markdown
    assert f"- job 4 (model=b_f experiment=table4_smoke seed=2): no metrics.json in `{root / '4'}`" in markdown
    assert "- job 5 (model=b_f experiment=table4_smoke seed=3): never started" in markdown
    assert "CUDA out of memory" in capsys.readouterr().err
    assert _row(markdown, "synthetic", "b_a")[1] == "2" and _row(markdown, "synthetic", "b_f")[1] == "1"

    # job 2 resumed to the end after its failure: its metrics.json is newer than its error.txt
    _write_run(root / "2" / "resumed", "b_a", "synthetic", 3, 23.0, 0.8)
    (root / "2" / "resumed" / "metrics.json").replace(root / "2" / "metrics.json")
    os.utime(root / "2" / "error.txt", (1_000_000, 1_000_000))
    assert [j.status for j in make_table.sweep_jobs(root)[0]][2] == "done"

    complete = tmp_path / "complete"
    _multirun(complete, {"seed": "1"}, ["model=b_a"])
    _job(complete, 0, ["seed=1", "model=b_a"], "b_a", 1)
    assert "Incomplete" not in make_table.main([str(complete)])
    spec = yaml.safe_load((complete / "multirun.yaml").read_text())
    spec["hydra"]["sweeper"]["_target_"] = "hydra_plugins.derain_sweeper.listing_sweeper.ListingSweeper"
    (complete / "multirun.yaml").write_text(yaml.safe_dump(spec))  # the suite's sweeper: a basic sweeper
    assert [j.status for j in make_table.sweep_jobs(complete)[0]] == ["done"]
    spec["hydra"]["sweeper"] = {"_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"}
    (complete / "multirun.yaml").write_text(yaml.safe_dump(spec))
    assert "does not expand jobs as Hydra's basic sweeper does" in make_table.main([str(complete)])
    assert read._error_line("Traceback (most recent call last):\n  File x\nValueError: bad\n") == "ValueError: bad"


# --- cost and paper protocols -------------------------------------------------------------------------


def test_gpu_hours_column(tmp_path):
    root = tmp_path / "costs"

    def cost(wall, count, device="NVIDIA H100", accelerator="cuda"):
        return {
            "cost": {
                "device": device,
                "device_count": count,
                "accelerator": accelerator,
                "wall_time_s": wall,
                "it_per_s": 10.0,
                "gpu_hours": None if accelerator == "cpu" else wall * count / 3600,
            }
        }

    _write_run(root / "0", "b_a", "synthetic", 1, 20.0, 0.8, **cost(1800.0, 2))
    _write_run(root / "1", "b_a", "synthetic", 2, 21.0, 0.8, **cost(3600.0, 4))
    _write_run(root / "2", "b_f", "synthetic", 1, 21.0, 0.8)  # no cost recorded
    markdown = make_table.main([str(root)])
    assert _header(markdown, "synthetic")[-1] == "GPU-h"
    assert _row(markdown, "synthetic", "b_a")[-1] == "5.00"  # 0.5 h x 2 + 1 h x 4
    assert _row(markdown, "synthetic", "b_f")[-1] == "-" and _row(markdown, "synthetic", "rain input")[-1] == "-"
    assert (
        "GPU-h: training wall time x devices, summed over the row's runs (5.00 in all; NVIDIA H100 (cuda))" in markdown
    )
    # CPU runs: CPU-hours
    cpu = tmp_path / "cpu"
    _write_run(cpu / "0", "b_a", "synthetic", 1, 20.0, 0.8, **cost(360.0, 1, "AMD EPYC 7B13", "cpu"))
    _write_run(cpu / "1", "b_f", "synthetic", 1, 20.0, 0.8, **cost(1.152, 1, "AMD EPYC 7B13", "cpu"))
    markdown = make_table.main([str(cpu)])
    assert _header(markdown, "synthetic")[-1] == "CPU-h" and _row(markdown, "synthetic", "b_a")[-1] == "0.10"
    assert _row(markdown, "synthetic", "b_f")[-1] == "0.00032"  # 1.152 s: two significant digits
    assert make_table.run_cost({"wall_time_s": 360}) is None and make_table.run_cost({"cost": {"device": "x"}}) is None


def test_paper_numbers_only_beside_their_protocol(sweep, monkeypatch, tmp_path):
    """A paper row carries its own protocol (None: unknown) or takes its table's."""
    real = stats.paper_reference
    table = types.SimpleNamespace(name="Table X", protocol="spanet")

    def fake(data, model, protocol=None):  # the same row whatever protocol is asked for
        if model == "ddn":  # a number copied from another paper: protocol unknown
            return table, types.SimpleNamespace(psnr=30.0, ssim=0.9, protocol=None)
        if model == "b_a":  # computed under y_matlab
            return table, types.SimpleNamespace(psnr=31.0, ssim=0.91, protocol="y_matlab")
        if model == "spanet":  # no protocol of its own (before rows had one): the table's
            return table, types.SimpleNamespace(psnr=32.0, ssim=0.92)
        return real(data, model)

    monkeypatch.setattr(stats, "paper_reference", fake)
    spanet = make_table.main([str(sweep), "--out", str(tmp_path)])
    assert _row(spanet, "realrain", "ddn")[8:] == ["-", "-", "-"]
    assert _row(spanet, "realrain", "b_a")[8:] == ["-", "-", "-"]
    # not beside ours, but said under the table, with the protocol it was computed under
    assert (
        "b_a: 31.00 / 0.9100 in Table X, under protocol y_matlab; ddn: 30.00 / 0.9000 in Table X, under an "
        "unstated protocol."
    ) in spanet
    assert _row(spanet, "realrain", "spanet")[8:] == ["32.00", "0.9200", "Table X"]
    y = make_table.main([str(sweep), "--out", str(tmp_path), "--protocol", "y_matlab"])
    assert _row(y, "realrain", "b_a")[8:] == ["31.00", "0.9100", "Table X"]
    assert _row(y, "realrain", "ddn")[8:] == ["-", "-", "-"] and _row(y, "realrain", "spanet")[8:] == ["-", "-", "-"]


# --- other sources ------------------------------------------------------------------------------------


class _FakeRun:
    def __init__(self, run_id, config, summary, files=None):
        self.id, self.config, self.summary, self.files = run_id, config, summary, files or {}

    def file(self, path):  # wandb.apis.public.File: download(root, replace) writes root/path
        def download(root, replace=False):
            if path not in self.files:
                raise ValueError(f"no file {path}")
            target = Path(root) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(self.files[path]))
            return open(target)

        return types.SimpleNamespace(download=download)


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
    # no per-image scores in W&B summaries: no intervals, differences of the means
    assert _row(markdown, "realrain", "b_a")[:6] == ["b_a", "2", "37.10 ± 0.14", "-", "-0.90", "0.9855 ± 0.0007"]
    assert "| b_b |" not in markdown
    assert (tmp_path / "chart.png").is_file()
    # flattened config keys ("run_info/model") are understood too
    flat = [_FakeRun("f", {"run_info/model": "b_c", "run_info/data": "didmdn", "seed": 1},
                     {"test/psnr_spanet": 29.0, "test/ssim_spanet": 0.93})]  # fmt: skip
    rows = make_table.summarize(make_table.runs_from_wandb("p", "test", "spanet", api=_FakeApi(flat)), "spanet")
    assert [(r.data, r.model, r.paper_psnr) for r in rows] == [("didmdn", "b_c", None)]
    untrained = [
        _FakeRun(
            "z",
            {"run_info/model": "b_c", "seed": 1},
            {"test/psnr_spanet": 29.0, "test/ssim_spanet": 0.93, "trainer/global_step": 0},
        )
    ]
    with pytest.raises(SystemExit, match="wandb:p/z: the run trained 0 steps"):
        make_table.runs_from_wandb("p", "test", "spanet", api=_FakeApi(untrained))


def test_wandb_per_image_tables(monkeypatch, tmp_path, capsys):
    """The per-image table src.train logs to W&B (test/per_image) gives W&B rows their intervals."""

    def run(i, model, seed, psnr, broken=False):
        path = f"media/table/test/per_image_{i}.table.json"
        offsets = OFFSETS[model]
        table = {
            "columns": ["image", "psnr_spanet", "ssim_spanet", "psnr_y_matlab", "ssim_y_matlab"],
            "data": [[n, psnr + o, 0.98, psnr + o + 1, 0.97] for n, o in zip(IMAGES, offsets)],
        }
        return _FakeRun(f"r{i}", {"run_info": {"model": model, "data": "realrain"}, "seed": seed},
                        {"test/psnr_spanet": psnr, "test/ssim_spanet": 0.98,
                         "test/per_image": {"_type": "table-file", "path": path}},
                        files={} if broken else {path: table})  # fmt: skip

    runs = [
        run(0, "b_a", 1, 37.0),
        run(1, "b_a", 2, 37.2),
        run(2, "spanet", 1, 38.1),
        run(3, "spanet", 2, 37.9),
        run(4, "ddn", 1, 34.5, broken=True),
    ]
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Api=lambda: _FakeApi(runs)))
    markdown = make_table.main(["--wandb", "me/p", "--out", str(tmp_path), "--bootstrap", "2000"])
    low, high = reference_bootstrap(37.10 + np.array(OFFSETS["b_a"]), 2000, 0)
    d_low, d_high = reference_bootstrap(37.10 + np.array(OFFSETS["b_a"]) - 38.0 - np.array(OFFSETS["spanet"]), 2000, 0)
    assert _row(markdown, "realrain", "b_a")[3:5] == [
        f"[{low:.2f}, {high:.2f}]",
        f"-0.90 [{d_low:+.2f}, {d_high:+.2f}]",
    ]
    assert _row(markdown, "realrain", "ddn")[3:5] == ["-", "-3.50"]  # its table is gone: the mean only
    assert "wandb:me/p/r4 (ValueError: no file media/table/test/per_image_4.table.json)" in capsys.readouterr().err


def test_extra_rows_from_folder_scoring(sweep, tmp_path):
    """--extra adds methods scored by src.eval pred_dir=... (e.g. the Matlab-only DSC) beside trained models,
    with their paper numbers (Table 2: DSC 32.33 / 0.9335 on SPA-Data)."""
    dsc, other = tmp_path / "dsc.json", tmp_path / "other.json"
    # src.eval names the prediction files: img_a.png ... pairs with the runs' img_a ...
    dsc.write_text(json.dumps(_report(32.10, 0.9301, (0.1, -0.1, 0.2, -0.2), [f"{n}.png" for n in IMAGES])))
    other.write_text(json.dumps(_report(25.00, 0.8000)))
    markdown = make_table.main(
        [
            str(sweep),
            "--out",
            str(tmp_path / "t"),
            "--extra",
            f"DSC@realrain={dsc}",
            "--extra",
            f"MyMethod@synthetic={other}",
        ]
    )
    row = _row(markdown, "realrain", "DSC")
    assert row[:3] == ["DSC", "-", "32.10"] and row[5] == "0.9301" and row[8:] == ["32.33", "0.9335", "Table 2"]
    assert row[4].startswith("-5.90 [")  # paired with spanet image by image (38.00 - 32.10)
    assert _row(markdown, "synthetic", "MyMethod")[:3] == ["MyMethod", "-", "25.00"]
    # without @DATA: the sweep has two data sets, so the user must say which
    with pytest.raises(SystemExit, match=r"say which data set .* \['realrain', 'synthetic'\]"):
        make_table.main([str(sweep), "--out", str(tmp_path / "t"), "--extra", f"DSC={dsc}"])
    short = tmp_path / "short.json"
    short.write_text(json.dumps(_report(32.10, 0.9301, images=IMAGES[:3])))
    train_record = next(sweep.rglob("0/metrics.json"))
    for spec, message in [(f"DSC@realrain={train_record}", "training run's metrics.json"),
                          (f"DSC@realrain={tmp_path / 'missing.json'}", "cannot read"), ("DSC", "expected LABEL=FILE"),
                          (f"DSC@realrain={short}", r"short.json \(DSC\): 3 images")]:  # fmt: skip
        with pytest.raises(SystemExit, match=message):
            make_table.main([str(sweep), "--out", str(tmp_path / "t"), "--extra", spec])


def test_wandb_group_filter(monkeypatch, tmp_path):
    def run(i, model, group):
        r = _FakeRun(
            f"r{i}",
            {"run_info": {"model": model, "data": "realrain"}, "seed": 1},
            {"test/psnr_spanet": 30.0 + i, "test/ssim_spanet": 0.9},
        )
        r.group = group
        return r

    api = _FakeApi([run(0, "b_a", "table4"), run(1, "ddn", "table2"), run(2, "rescan", "table2")])
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Api=lambda: api))
    markdown = make_table.main(["--wandb", "me/p", "--wandb-group", "table2", "--out", str(tmp_path)])
    assert api.asked == [("me/p", {"group": "table2"})]
    assert "| ddn |" in markdown and "| rescan |" in markdown and "| b_a |" not in markdown
    with pytest.raises(SystemExit, match="no runs with test/psnr_spanet in W&B project me/p, group nope"):
        make_table.main(["--wandb", "me/p", "--wandb-group", "nope", "--out", str(tmp_path)])


def test_files_of_every_version_are_read_and_a_newer_one_is_refused(sweep):
    """metrics.json is read through src.runs.result: version 1 (no version key, the fixture's), version 2 as
    src.train writes it now, and a version this suite does not know is named, not misread."""
    record = json.loads((sweep / "0" / "metrics.json").read_text())
    (sweep / "0" / "metrics.json").write_text(json.dumps({"version": 2, **record, "started": "2026-01-01T00:00:00"}))
    assert _row(make_table.main([str(sweep)]), "realrain", "b_a")[1] == "2"
    (sweep / "0" / "metrics.json").write_text(json.dumps({**record, "version": 99}))
    with pytest.raises(
        SystemExit,
        match=r"0/metrics.json: metrics.json version 99, but this suite reads versions 1 "
        r"to 2; update the suite",
    ):
        make_table.main([str(sweep)])


def render_both(sweep: Path, out: Path, *options: str) -> dict[str, tuple]:
    """``python -m src.table`` and ``experiments/make_table.py`` (the old command) on one sweep, each into its own
    folder: exit status, printed table, table.md and table.tex of each."""
    import subprocess

    from tests.conftest import ROOT

    results = {}
    for name, command in (("package", ["-m", "src.table"]), ("script", ["experiments/make_table.py"])):
        proc = subprocess.run(
            [sys.executable, *command, str(sweep), *options, "--out", str(out / name)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        files = tuple(
            (out / name / f).read_text() if (out / name / f).is_file() else None for f in ("table.md", "table.tex")
        )
        results[name] = (proc.returncode, proc.stdout, *files)
    return results


def test_the_old_script_renders_the_package_table(sweep, tmp_path):
    """experiments/make_table.py is the same table as python -m src.table: same output, same files, same options."""
    both = render_both(sweep, tmp_path, "--reference", "ddn", "--bootstrap", "500", "--seed", "3")
    code, printed, markdown, tex = both["package"]
    assert code == 0 and printed.strip() == markdown.strip() and r"\toprule" in tex
    assert "Δ PSNR vs ddn" in markdown and "| spanet |" in markdown
    assert both["script"] == both["package"]


def test_todays_derainers_paper_numbers_under_their_protocol(tmp_path):
    """The later papers' SPA-Data numbers are y_matlab: beside ours under y_matlab, named under the table
    otherwise; a row a paper copied from an earlier one says so."""
    root = tmp_path / "sota"
    for i, (model, psnr) in enumerate((("restormer", 40.0), ("drsformer_spa", 41.0), ("prenet", 39.0))):
        _write_run(root / str(i), model, "realrain", 1, psnr, 0.98)
    y = make_table.main([str(root), "--protocol", "y_matlab", "--out", str(tmp_path)])
    assert _row(y, "realrain", "restormer")[-3:] == ["47.98", "-", "DRSformer, Table 1"]
    assert _row(y, "realrain", "drsformer_spa")[-3:] == ["48.54", "0.9924", "DRSformer, Table 1"]
    assert _row(y, "realrain", "prenet")[-3:] == ["40.16", "-", "DRSformer, Table 1 (copied)"]
    other = next(ln for ln in y.splitlines() if ln.startswith("Published under another protocol"))
    assert other.endswith(": rain input: 32.64 / 0.9315 in Table 2, under protocol spanet.")  # only that one
    spanet = make_table.main([str(root), "--out", str(tmp_path)])
    assert _row(spanet, "realrain", "restormer")[-3:] == ["-", "-", "-"]
    assert "drsformer_spa: 48.54 / 0.9924 in DRSformer, Table 1, under protocol y_matlab" in spanet
    assert "prenet: 40.16 / - in DRSformer, Table 1 (copied), under protocol y_matlab" in spanet


def test_reference_best_is_the_row_of_highest_mean_psnr(tmp_path):
    root = tmp_path / "best"
    for model, psnr in (("b_f", 30.0), ("ddn", 31.5), ("rescan", 31.0)):
        _write_run(root / model, model, "synthetic", 1, psnr, 0.9)
    markdown = make_table.main([str(root), "--reference", "best"])
    assert _header(markdown, "synthetic")[4] == "Δ PSNR vs ddn"
    assert _row(markdown, "synthetic", "ddn")[4] == "(reference)"
    assert _row(markdown, "synthetic", "b_f")[4].startswith("-1.50 [")
    assert "Δ PSNR vs b_f" in _header(make_table.main([str(root)]), "synthetic")  # the default is unchanged


def _net_runs(root: Path, widths: dict) -> dict:
    """Runs of NAFNet at tiny widths (run -> width), each with the saved config src.train leaves beside its
    metrics.json; returns run -> network built from it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from tests.conftest import CONF

    nets = {}
    for i, (name, width) in enumerate(widths.items()):
        model, seed = name.split("-")
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(
                "train",
                [
                    f"model={model}",
                    f"model.net.width={width}",
                    "model.net.enc_blk_nums=[1,1,1,1]",
                    "model.net.middle_blk_num=1",
                    "model.net.dec_blk_nums=[1,1,1,1]",
                ],
            )
        GlobalHydra.instance().clear()
        _write_run(root / str(i), model, "synthetic", int(seed), 20.0 + i, 0.8)
        (root / str(i) / ".hydra").mkdir()
        OmegaConf.save(cfg, root / str(i) / ".hydra" / "config.yaml")
        nets[name] = instantiate(cfg.model.net)
    return nets


def test_params_and_macs_of_the_networks_the_runs_trained(tmp_path):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    root = tmp_path / "nets"
    nets = _net_runs(root, {"nafnet-1": 4, "nafnet-2": 4})
    markdown = make_table.main([str(root), "--size", "32", "--bootstrap", "100"])
    header, row = _header(markdown, "synthetic"), _row(markdown, "synthetic", "nafnet")
    assert header[-2:] == ["params", "GMACs (32x32)"] and _row(markdown, "synthetic", "rain input")[-2:] == ["-", "-"]
    assert int(row[-2].replace(",", "")) == sum(p.numel() for p in nets["nafnet-1"].parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        nets["nafnet-1"].eval()(torch.rand(1, 3, 32, 32))
    assert float(row[-2 + 1]) * 1e9 == pytest.approx(counter.get_total_flops() / 2, rel=0.1)
    assert "3x32x32 image (ptflops" in markdown and "Note:" not in markdown
    assert "params" not in _header(make_table.main([str(root), "--size", "0"]), "synthetic")  # --size 0: none


def test_runs_of_one_row_with_different_networks_are_noted(tmp_path, capsys):
    root = tmp_path / "nets"
    nets = _net_runs(root, {"nafnet-1": 4, "nafnet-2": 8})
    markdown = make_table.main([str(root), "--size", "32", "--bootstrap", "0"])
    assert "Note: synthetic / nafnet: the runs trained networks of different sizes" in markdown
    row = _row(markdown, "synthetic", "nafnet")
    assert int(row[-2].replace(",", "")) == sum(p.numel() for p in nets["nafnet-1"].parameters())
    assert "different sizes" in capsys.readouterr().err


def test_profile_measures_inference_on_this_machine(tmp_path):
    root = tmp_path / "nets"
    _net_runs(root, {"nafnet-1": 4})
    markdown = make_table.main([str(root), "--size", "32", "--bootstrap", "0", "--profile", "--profile-device", "cpu",
                                "--profile-repeats", "1"])  # fmt: skip
    header, row = _header(markdown, "synthetic"), _row(markdown, "synthetic", "nafnet")
    assert header[-4:] == ["params", "GMACs (32x32)", "s/MP", "peak GiB"]
    assert float(row[-2]) > 0 and float(row[-1]) >= 0
    assert "inference measured when the table was drawn, on " in markdown and "(cpu, " in markdown
    assert "median of 1 forward passes of one 32x32 image" in markdown
