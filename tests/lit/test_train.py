"""End-to-end behaviour of src.train / src.eval on tiny synthetic runs (CPU, seconds each)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from src.runs.evaluation import evaluate_checkpoint
from src.train import train
from tests.conftest import CONF, compose_cfg
from tests.models.small_sizes import small_size

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("model", MODELS)
def test_fast_dev_run_every_model(train_cfg, model):
    cfg = train_cfg(f"model={model}", "debug=fdr", *small_size(model))
    result = train(cfg)
    rep = result["test"]
    assert rep["n_images"] == 1  # fast dev run: one test batch = one image
    for proto in ("spanet", "y_matlab", "rgb_uint8"):
        assert math.isfinite(rep["mean"][proto]["psnr"]) and 0 <= rep["mean"][proto]["ssim"] <= 1


def test_train_writes_run_dir_and_eval_matches(train_cfg, tmp_path):
    cfg = train_cfg("model=b_a", "logger=many")
    train(cfg)
    out = Path(cfg.paths.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["model"] == "b_a" and saved["data"] == "synthetic" and saved["global_step"] == 4
    assert (out / "checkpoints" / "best.ckpt").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    assert saved["test"]["n_images"] == 3 and set(saved["test"]["per_image"]) == {
        "chelsea_heavy",
        "chelsea_medium",
        "chelsea_light",
    }
    # loggers: CSV metrics with train loss and lr per step, TensorBoard events, offline W&B run
    rows = list(csv.DictReader(open(out / "csv" / "metrics.csv")))
    assert any(r.get("train/loss") for r in rows) and any(r.get("lr-Adam") for r in rows)
    assert list((out / "tensorboard").glob("events.*")) and list((out / "wandb").glob("offline-run-*"))
    assert list((out / "images").glob("val_step*.png"))

    # eval of the best checkpoint reproduces train's test report, image by image
    ecfg = compose_cfg("eval", [f"ckpt_path={saved['ckpt_path']}"], tmp_path / "eval")
    reports = evaluate_checkpoint(ecfg)
    for name, scores in saved["test"]["per_image"].items():
        for proto in scores:
            for m in ("psnr", "ssim"):
                assert reports["output"]["per_image"][name][proto][m] == pytest.approx(scores[proto][m], abs=1e-6)
    for proto, scores in saved["test_input"]["mean"].items():
        assert reports["rain input"]["mean"][proto] == pytest.approx(scores)


def test_resume_from_last_continues_step_count(train_cfg, tmp_path):
    first = train_cfg("model=b_a", out=tmp_path / "a")
    train(first)
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 4
    second = train_cfg("model=b_a", f"ckpt_path={last}", "schedule.max_steps=6", out=tmp_path / "b")
    result = train(second)
    assert result["global_step"] == 6
    steps = [
        int(r["step"]) for r in csv.DictReader(open(tmp_path / "b" / "csv" / "metrics.csv")) if r.get("train/loss")
    ]
    assert steps and min(steps) >= 4  # logging continues after the resumed step, not from 0


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    assert cfg.trainer.max_steps == cfg.schedule.max_steps > 0
    assert cfg.model.net._target_.startswith("src.models.")
    for key, value in cfg.hydra.sweeper.params.items() if cfg.hydra.sweeper.params else []:
        for choice in str(value).split(","):  # every swept choice names an existing config
            assert (CONF / key / f"{choice.strip()}.yaml").is_file() or key == "seed", (key, choice)
    GlobalHydra.instance().clear()


# data config -> (fixture tree, sub-root under it, extra overrides) for a fast dev run on look-alike trees
FILE_DATA = {
    "realrain": ("spa", "", ["data.val_scenes=1", "data.train_transform.resized_crop.size=16"]),
    "didmdn": ("didmdn", "", ["data.train_transform.crop=16"]),
    "paired": (
        "layouts",
        "same/train",
        ["data.layout=same_names", "data.rain_dir=small/rain", "data.clean_dir=small/norain"],
    ),
    "rain100h": ("layouts", "rain100", ["data.train_dir=train", "data.test_dir=test"]),
    "rain100l": ("layouts", "rain100", ["data.train_dir=train", "data.test_dir=test"]),
    "rain200h": ("layouts", "rain200", ["data.train_dir=train", "data.test_dir=train"]),
    "rain200l": ("layouts", "rain200", ["data.train_dir=train", "data.test_dir=train"]),
    "rain1400": ("layouts", "rain1400", ["data.train_dir=train", "data.test_dir=train"]),
    "rain800": ("layouts", "rain800", ["data.train_dir=train", "data.test_dir=train"]),
    "test100": ("layouts", "same/train/small", ["data.rain_dir=rain", "data.clean_dir=norain", "data.train_dir=."]),
    "rain100h_repack": ("layouts", "same", ["data.test_dir=train"]),
}


def test_every_schedule_sets_every_schedule_key():
    """A schedule missing a key (e.g. ``progressive``) fails only when something interpolates it, mid-run."""
    keys = {
        name: set(OmegaConf.load(CONF / "schedule" / f"{name}.yaml"))
        for name in (p.stem for p in (CONF / "schedule").glob("*.yaml"))
    }
    expected = keys["quick"]
    assert {name: expected - have for name, have in keys.items() if expected - have} == {}


def test_every_data_config_is_covered():
    assert set(FILE_DATA) | {"synthetic"} == {p.stem for p in (CONF / "data").glob("*.yaml")}


@pytest.mark.parametrize("data", sorted(FILE_DATA))
def test_fast_dev_run_every_data_config(train_cfg, tmp_path, data):
    from tests.data.conftest import build_didmdn, build_layouts, build_spa

    kind, sub, extra = FILE_DATA[data]
    tree = {"spa": build_spa, "didmdn": build_didmdn, "layouts": build_layouts}[kind](tmp_path / kind)
    transform = [] if data in ("realrain", "didmdn") else ["data.train_transform.crop=16"]
    cfg = train_cfg(
        f"data={data}",
        f"data.root={tree.root / sub}",
        "data.num_workers=0",
        "model=b_a",
        "debug=fdr",
        *transform,
        *extra,
        out=tmp_path / "run",
        synthetic=False,
    )
    result = train(cfg)
    assert result["test"]["n_images"] == 1 and math.isfinite(result["test"]["mean"]["spanet"]["psnr"])


@pytest.mark.parametrize("recipe", sorted(p.stem for p in (CONF / "recipe").glob("*.yaml")))
def test_fast_dev_run_every_recipe(train_cfg, recipe):
    """Each model with its authors' own optimiser and scheduler (conf/recipe -> conf/schedule/<model>.yaml);
    a progressive schedule (its first stage's batch is not the tiny run's) gets one tiny stage."""
    model = recipe.removesuffix("_smoke")  # <name>_smoke: the same model, shrunk
    shrink = [] if recipe.endswith("_smoke") else small_size(model)  # the authors' sizes: minutes and GBs
    cfg = train_cfg(f"recipe={recipe}", "debug=fdr", *shrink)
    if cfg.schedule.progressive:
        cfg = train_cfg(f"recipe={recipe}", "debug=fdr", *shrink, "schedule.progressive=[{until:4,patch:32,batch:2}]")
    assert cfg.run_info.model == model
    result = train(cfg)
    assert math.isfinite(result["test"]["mean"]["spanet"]["psnr"])


def test_test_ckpt_last_scores_the_final_weights(train_cfg, tmp_path):
    """test_ckpt=last (the paper experiments' setting, there without a best checkpoint): validation and test
    scores are those of the final weights, which last.ckpt holds here (the run ends on a validation step)."""
    cfg = train_cfg("model=b_a", "test_ckpt=last", "callbacks.model_checkpoint=null")
    result = train(cfg)
    out = Path(cfg.paths.output_dir)
    assert (result["test_ckpt"], result["ckpt_path"], result["global_step"]) == ("last", None, 4)
    assert not (out / "checkpoints" / "best.ckpt").exists()
    last = out / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 4
    reports = evaluate_checkpoint(compose_cfg("eval", [f"ckpt_path={last}"], tmp_path / "eval"))
    for name, scores in result["test"]["per_image"].items():
        for proto in scores:
            assert reports["output"]["per_image"][name][proto]["psnr"] == pytest.approx(scores[proto]["psnr"], abs=1e-6)
    with pytest.raises(ValueError, match="test_ckpt='final'"):
        train(train_cfg("model=b_a", "test_ckpt=final", out=tmp_path / "bad"))


@pytest.mark.parametrize("experiment", ["table2", "table3", "table4"])
def test_paper_experiments_train_on_everything_and_test_the_final_weights(experiment):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}"])
    assert cfg.test_ckpt == "last" and cfg.callbacks.model_checkpoint is None
    held_out = cfg.data.val_holdout if experiment == "table3" else cfg.data.val_scenes
    assert held_out == 0  # no training scene / image held out
    GlobalHydra.instance().clear()
