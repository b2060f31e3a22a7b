"""experiment=sota_spa / sota_spa_smoke: what each job of the sweeps composes to, and the smoke sweep end to end
(every job trained, then ``python -m src.table`` on its sweep dir, its numbers checked against the runs'
metrics.json and networks)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from tests.conftest import CONF, ROOT

SOTA = ["spanet", "restormer", "drsformer_spa", "nerd_rain", "nerd_rain_s", "nafnet", "prenet"]
# recipe -> (model, schedule) of each job
JOBS = {
    "spanet": ("spanet", "spanet_paper"),
    "restormer": ("restormer", "restormer"),
    "drsformer_spa": ("drsformer_spa", "drsformer"),
    "nerd_rain": ("nerd_rain", "nerd_rain"),
    "nerd_rain_s": ("nerd_rain_s", "nerd_rain"),
    "nafnet": ("nafnet", "nafnet"),
    "prenet": ("prenet", "prenet"),
}


def _compose(*overrides):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("train", list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def test_sweeps_list_spanet_and_the_five_families_with_their_recipes():
    cfg = _compose("experiment=sota_spa", "data.root=/data")
    params = cfg.hydra.sweeper.params
    assert params.recipe.split(",") == SOTA and params.seed == "1,2,3"
    smoke = _compose("experiment=sota_spa_smoke").hydra.sweeper.params
    assert smoke.recipe.split(",") == ["spanet"] + [f"{r}_smoke" for r in SOTA[1:]]
    for recipe in SOTA[1:]:
        assert (CONF / "recipe" / f"{recipe}.yaml").is_file() and (CONF / "recipe" / f"{recipe}_smoke.yaml").is_file()


@pytest.mark.parametrize("recipe", SOTA)
def test_each_sota_spa_job_trains_its_recipe_on_spa_data_and_tests_the_final_weights(recipe):
    cfg = _compose("experiment=sota_spa", f"recipe={recipe}", "data.root=/data")
    choices = cfg.hydra.runtime.choices
    assert (choices.model, choices.schedule, choices.data, choices.compute) == (*JOBS[recipe], "realrain", "authors")
    assert cfg.test_ckpt == "last" and cfg.data.val_scenes == 0 and cfg.callbacks.model_checkpoint is None
    assert cfg.data.batch_size == cfg.schedule.batch_size and cfg.trainer.max_steps == cfg.schedule.max_steps


@pytest.mark.parametrize("recipe", SOTA)
def test_each_smoke_job_is_cpu_sized(recipe):
    job = recipe if recipe == "spanet" else f"{recipe}_smoke"
    cfg = _compose("experiment=sota_spa_smoke", f"recipe={job}")
    assert (cfg.hydra.runtime.choices.model, cfg.hydra.runtime.choices.data) == (JOBS[recipe][0], "synthetic")
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.max_steps == 20 and cfg.data.train_patch is None
    if cfg.data.progressive:
        assert cfg.data.batch_size == cfg.data.progressive[0].batch and cfg.data.progressive[-1].until == 20
    else:
        assert (cfg.data.batch_size, cfg.data.patch_size) == (4, 32)


# --- end to end: the smoke sweep, then its table --------------------------------------------------------------

# 4 iterations instead of 20, one seed, test images of 40 pixels; the table counts MACs at 64x64
FAST = ["seed=1", "schedule.max_steps=4", "schedule.val_every=4", "trainer.log_every_n_steps=2",
        "trainer.enable_model_summary=false", "data.eval_long_side=40"]  # fmt: skip


def _network(config: Path):
    """The network a run trained, built here from its saved config (independently of src/table/complexity.py)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    return instantiate(OmegaConf.load(config).model.net)


def _flop_counter_macs(net, side: int) -> float:
    """torch's own FLOP counter of one forward pass of one image, halved (a multiply-accumulate is 2 FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 3, side, side)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net.eval()
        net(x, label=torch.zeros(1, dtype=torch.long)) if getattr(net, "uses_label", False) else net(x)
    return counter.get_total_flops() / 2


@pytest.mark.slow
def test_smoke_sweep_to_table_with_intervals_and_complexity(tmp_path):
    from tests.experiments.test_smoke_sweep import run, table_cells

    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", WANDB_DIR=str(tmp_path))  # fmt: skip
    logs = tmp_path / "logs"
    run(["-m", "src.train", "-m", "experiment=sota_spa_smoke", f"paths.log_dir={logs}", *FAST], env, timeout=600)
    (sweep,) = list((logs / "train" / "multiruns").iterdir())
    records, configs = {}, {}
    for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
        rec = json.loads((job / "metrics.json").read_text())
        assert (rec["experiment"], rec["data"], rec["global_step"], rec["complete"]) == (
            "sota_spa_smoke", "synthetic", 4, True), job  # fmt: skip
        records[rec["model"]], configs[rec["model"]] = rec, job / ".hydra" / "config.yaml"
    assert sorted(records) == sorted(JOBS[r][0] for r in SOTA)
    assert {m: r["schedule"] for m, r in records.items()} == {JOBS[r][0]: JOBS[r][1] for r in SOTA}

    proc = run(["-m", "src.table", str(sweep), "--protocol", "y_matlab", "--reference", "best", "--size", "64",
                "--bootstrap", "2000"], env, timeout=300)  # fmt: skip
    markdown = (sweep / "table.md").read_text()
    assert proc.stdout.strip() == markdown.strip() and "Incomplete sweep" not in markdown
    header = table_cells(markdown, "model")
    assert header[-3:] == ["params", "GMACs (64x64)", "CPU-h"] and header[8:11] == ["paper PSNR", "paper SSIM",
                                                                                    "paper table"]  # fmt: skip
    psnr = {m: r["test"]["mean"]["y_matlab"]["psnr"] for m, r in records.items()}
    best = max(psnr, key=psnr.get)
    assert header[4] == f"Δ PSNR vs {best}"
    names = sorted(records[best]["test"]["per_image"])
    per_image = {m: np.array([r["test"]["per_image"][n]["y_matlab"]["psnr"] for n in names])
                 for m, r in records.items()}  # fmt: skip
    for model, rec in records.items():
        cells = table_cells(markdown, model)
        assert cells[1] == "1" and abs(float(cells[2]) - psnr[model]) <= 0.005 + 1e-12, (model, cells[2])
        low, high = (float(v) for v in cells[3].strip("[]").split(","))
        assert low < high and per_image[model].min() - 0.005 <= low <= psnr[model] <= high
        assert high <= per_image[model].max() + 0.005
        if model == best:
            assert cells[4] == "(reference)"
        else:  # the paired difference, by hand, and its interval around it
            diff = (per_image[model] - per_image[best]).mean()
            value, interval = cells[4].split(" [")
            d_low, d_high = (float(v) for v in interval.strip("]").split(","))
            assert abs(float(value) - diff) <= 0.005 + 1e-12 and d_low - 0.005 <= diff <= d_high + 0.005, cells[4]
        assert cells[8:11] == ["-", "-", "-"]  # synthetic data: no published counterpart
        net = _network(configs[model])
        assert int(cells[-3].replace(",", "")) == sum(p.numel() for p in net.parameters()), model
        macs, reference = float(cells[-2]) * 1e9, _flop_counter_macs(net, 64)
        assert macs == pytest.approx(reference, rel=0.1), (model, macs, reference)  # ptflops vs torch's counter
        hours = rec["cost"]["wall_time_s"] * rec["cost"]["device_count"] / 3600
        assert cells[-1] == (f"{hours:.2f}" if hours >= 0.1 else f"{hours:.2g}"), model
    assert table_cells(markdown, "rain input")[-3:] == ["-", "-", "-"]
    assert "3x64x64 image (ptflops" in markdown and "built from each run's saved config" in markdown
    assert (sweep / "chart.png").is_file() and r"\begin{tabular}" in (sweep / "table.tex").read_text()
