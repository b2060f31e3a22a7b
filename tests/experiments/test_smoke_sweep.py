"""End to end, as a user runs it: the Table 4 smoke sweep from one command, then its table.

    python -m src.train -m experiment=table4_smoke logger=wandb ...   # 12 jobs: B_a..B_f x seeds 1, 2
    python -m src.table <sweep dir>                                   # table.md, table.tex, chart.png

Both run in subprocesses (Hydra's multirun launcher, W&B offline), with fewer steps than the experiment's own
settings (4 iterations instead of 20) and one thread per process: about 75 s of CPU time in all, 70 s of wall
time on a lightly loaded 2-core machine. Checked: every job's metrics.json and offline W&B run (read from the
run's transaction log, see ``wandb_records``: group, tags, config, final scores, per-image table, image grids),
the keys that the W&B view of experiments/wandb_dashboard.py plots, and every number of the Markdown table
against the mean and standard deviation computed here from the metrics.json files.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from itertools import product
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from tests.conftest import load_experiment_script

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("b_a", "b_b", "b_c", "b_d", "b_e", "b_f")
SEEDS = (1, 2)
FAST = ["schedule.max_steps=4", "schedule.val_every=2", "trainer.log_every_n_steps=2",
        "trainer.enable_model_summary=false"]  # fmt: skip


def wandb_records(path: Path):
    """Yield the protobuf records of an offline run's transaction log ``run-<id>.wandb``.

    wandb >= 0.18 ships no Python reader for it (its Go core reads it for ``wandb sync``); the format is a
    7-byte header (b":W&B", magic 0xBEE1, version) followed by LevelDB-log chunks in 32 KiB blocks: each chunk
    has a 7-byte header (crc32 u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last; a block tail shorter
    than 7 bytes is zero padding) and the chunks of one record concatenate to a serialized ``Record``.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B transaction log"
    block, pos, parts = 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:  # padding at the end of the last block
            continue
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            yield record


def offline_run(run_dir: Path) -> dict:
    """What an offline W&B run recorded: its run record (group, tags, name), config and final summary."""
    found = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(found) == 1, f"{run_dir}: expected one wandb/offline-run-*, found {found}"
    logs = list(found[0].glob("run-*.wandb"))
    assert len(logs) == 1, f"{found[0]}: expected one run-*.wandb"
    run, config, summary = None, {}, {}
    for record in wandb_records(logs[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
        elif kind in ("config", "summary"):
            for item in getattr(record, kind).update:  # a key, or a path of keys into nested dicts
                *parents, last = [item.key] if item.key else list(item.nested_key)
                node = config if kind == "config" else summary
                for key in parents:
                    node = node.setdefault(key, {})
                node[last] = json.loads(item.value_json)
    assert run is not None, f"{logs[0]}: no run record"
    return {"dir": found[0], "group": run.run_group, "tags": list(run.tags), "name": run.display_name,
            "job_type": run.job_type, "config": config, "summary": summary}  # fmt: skip


def table_cells(markdown: str, label: str) -> list[str]:
    line = next((ln for ln in markdown.splitlines() if ln.startswith(f"| {label} |")), None)
    assert line is not None, f"no row {label!r} in\n{markdown}"
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def mean_pm_std(cell: str) -> tuple[float, float]:
    mean, std = cell.split("±")
    return float(mean), float(std)


def run(args: list[str], env: dict, timeout: int) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.mark.slow
def test_table4_smoke_sweep_to_table(tmp_path):
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(ROOT))
    # One thread: CI runs two pytest workers on two cores, and with two OpenMP threads per process the tiny
    # convolutions of this sweep wait for a descheduled thread (100+ ms per call instead of 0.5 ms, measured).
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    (tmp_path / "wandb_home").mkdir()
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):  # keep ~ and the repo clean
        env[var] = str(tmp_path / "wandb_home")
    logs = tmp_path / "logs"
    run(["-m", "src.train", "-m", "experiment=table4_smoke", "logger=wandb", f"paths.log_dir={logs}", *FAST], env,
        timeout=900)  # fmt: skip

    sweeps = list((logs / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1, sweeps
    check_sweep(sweeps[0], env)


def check_sweep(sweep: Path, env: dict) -> None:
    jobs = sorted((p for p in sweep.iterdir() if p.is_dir()), key=lambda p: int(p.name))
    assert [p.name for p in jobs] == [str(i) for i in range(12)]

    records, runs = {}, []
    for job in jobs:
        rec = json.loads((job / "metrics.json").read_text())
        assert (rec["experiment"], rec["data"], rec["schedule"], rec["global_step"]) == (
            "table4_smoke", "synthetic", "quick", 4), job  # fmt: skip
        key = (rec["model"], rec["seed"])
        assert key not in records, f"{job}: {key} already ran in another job"
        records[key] = rec

        wb = offline_run(job)
        model, seed = key
        assert (wb["group"], wb["tags"], wb["name"], wb["job_type"]) == (
            "table4_smoke", [model, "synthetic", f"seed{seed}"], f"{model}-s{seed}", "train"), job  # fmt: skip
        assert wb["config"]["run_info"] == {"model": model, "data": "synthetic", "schedule": "quick"}
        assert wb["config"]["seed"] == seed and wb["config"]["experiment_name"] == "table4_smoke"
        # the W&B summary holds the same final scores as metrics.json, every protocol, output and rain input
        for proto, metric in product(("spanet", "y_matlab", "rgb_uint8"), ("psnr", "ssim")):
            assert wb["summary"][f"test/{metric}_{proto}"] == pytest.approx(rec["test"]["mean"][proto][metric])
            assert wb["summary"][f"test/input_{metric}_{proto}"] == pytest.approx(
                rec["test_input"]["mean"][proto][metric])  # fmt: skip
            assert wb["summary"][f"val/{metric}_{proto}"] == pytest.approx(rec["val"]["mean"][proto][metric])
        # the per-image table (one row per test image) and the validation grids (steps 2 and 4)
        table_file = wb["dir"] / "files" / wb["summary"]["test/per_image"]["path"]
        table = json.loads(table_file.read_text())
        rows = {row[0]: dict(zip(table["columns"], row)) for row in table["data"]}
        assert set(rows) == set(rec["test"]["per_image"]) and len(rows) == rec["test"]["n_images"] == 3
        for name, scores in rec["test"]["per_image"].items():
            assert rows[name]["psnr_spanet"] == pytest.approx(scores["spanet"]["psnr"])
            assert rows[name]["ssim_y_matlab"] == pytest.approx(scores["y_matlab"]["ssim"])
        grids = sorted((wb["dir"] / "files" / "media" / "images" / "val").glob("grid_*.png"))
        assert len(grids) == 3, grids  # validations at steps 2 and 4, then of the best checkpoint
        columns = "rain | output | clean" + ("" if model == "b_a" else " | attention")  # b_a has no SAM
        assert wb["summary"]["val/grid"]["captions"] == [
            f"rows: coffee_heavy, coffee_medium, coffee_light; columns: {columns}"]  # fmt: skip
        runs.append(wb)
    assert set(records) == set(product(MODELS, SEEDS))

    # the saved W&B view of experiments/wandb_dashboard.py: this group, and only keys that every run logged
    dashboard = load_experiment_script("wandb_dashboard")
    for wb in runs:
        for key in dashboard.KEYS["summary"] + dashboard.KEYS["history"]:
            assert isinstance(wb["summary"].get(key), float), (wb["name"], key)
        assert [wb["summary"][k]["_type"] for k in dashboard.KEYS["media"]] == ["images/separated"]
        assert [wb["summary"][k]["_type"] for k in dashboard.KEYS["table"]] == ["table-file"]
    view = dashboard.build_workspace("ENTITY", "spanet-suite", "table4_smoke")._to_model().model_dump_json()
    assert '"name":"group"},"op":"=","value":"table4_smoke"' in view
    for key in sum(dashboard.KEYS.values(), []):
        assert f'"{key}"' in view or f'"summary:{key}"' in view, key

    proc = run(["-m", "src.table", str(sweep)], env, timeout=300)
    markdown = (sweep / "table.md").read_text()
    assert proc.stdout.strip() == markdown.strip()
    old = run(["experiments/make_table.py", str(sweep), "--out", str(sweep.parent / "old")], env, timeout=300)
    assert old.stdout == proc.stdout and (sweep.parent / "old" / "table.md").read_text() == markdown  # same table
    assert (sweep.parent / "old" / "table.tex").read_text() == (sweep / "table.tex").read_text()
    assert "Incomplete sweep" not in markdown  # all 12 jobs of multirun.yaml finished
    assert markdown.count("\n| ") == 1 + 1 + len(MODELS)  # header, rain input, six models
    header = table_cells(markdown, "model")
    assert header[4] == "Δ PSNR vs b_f" and header[7] == "Δ SSIM vs b_f"  # B_f is SPANet
    names = sorted(records[("b_f", 1)]["test"]["per_image"])
    per_image = {m: np.array([[records[(m, s)]["test"]["per_image"][n]["spanet"]["psnr"] for n in names]
                              for s in SEEDS]).mean(axis=0) for m in MODELS}  # fmt: skip
    for model in MODELS:
        psnr = np.array([records[(model, s)]["test"]["mean"]["spanet"]["psnr"] for s in SEEDS])
        ssim = np.array([records[(model, s)]["test"]["mean"]["spanet"]["ssim"] for s in SEEDS])
        cells = table_cells(markdown, model)
        assert cells[1] == "2" and cells[8:11] == ["-", "-", "-"]  # no paper numbers for synthetic data
        for cell, values, digits in ((cells[2], psnr, 2), (cells[5], ssim, 4)):
            mean, std = mean_pm_std(cell)
            half_unit = 0.5 * 10**-digits + 1e-12  # the table rounds to `digits` decimals
            assert abs(mean - values.mean()) <= half_unit and abs(std - values.std(ddof=1)) <= half_unit, (model, cell)
        low, high = (float(v) for v in cells[3].strip("[]").split(","))
        assert per_image[model].min() - 0.005 <= low <= psnr.mean() <= high <= per_image[model].max() + 0.005
        if model != "b_f":  # the paired difference, by hand
            diff = float(cells[4].split(" [")[0])
            assert abs(diff - (per_image[model] - per_image["b_f"]).mean()) <= 0.005 + 1e-12, (model, cells[4])
    if header[-1] in ("CPU-h", "GPU-h"):  # runs that record their cost: device-hours summed over the seeds
        for model in MODELS:
            hours = sum(records[(model, s)]["cost"]["wall_time_s"] * records[(model, s)]["cost"]["device_count"]
                        for s in SEEDS) / 3600  # fmt: skip
            assert table_cells(markdown, model)[-1] == (f"{hours:.2f}" if hours >= 0.1 else f"{hours:.2g}")
    rain = np.array([r["test_input"]["mean"]["spanet"]["psnr"] for r in records.values()])
    cells = table_cells(markdown, "rain input")
    assert np.ptp(rain) == 0 and cells[1] == "-" and abs(float(cells[2]) - rain[0]) <= 0.005 + 1e-12
    assert markdown.index("| rain input") < markdown.index("| b_a") < markdown.index("| b_f")

    tex = (sweep / "table.tex").read_text()
    assert r"\begin{tabular}" in tex and all(m.replace("_", r"\_") + " & 2 & " in tex for m in MODELS)
    chart = iio.imread(sweep / "chart.png")
    assert chart.ndim == 3 and chart.shape[0] > 100 and chart.shape[1] > 100
