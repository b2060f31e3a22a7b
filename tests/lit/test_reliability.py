"""Nothing lost, nothing silently wrong: checkpoint writes, diverged runs, short runs, loggers, overrides, guards.

Each test reproduces a way users broke the suite and asserts the behaviour that replaced it."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from src.runs.checkpoint_io import AtomicCheckpointIO, NonFiniteError
from src.runs.evaluation import check_result, evaluate_checkpoint
from src.runs.guards import RunDirExistsError, refuse_existing_run
from src.train import IncompleteRunError, train
from src.train import main as train_main
from tests.conftest import ROOT, compose_cfg


def _state(value: float) -> dict:
    return {"state_dict": {"net.w": torch.full((64, 64), value)}, "global_step": int(value)}


# --- checkpoint writes ------------------------------------------------------------------------------------
_SLOW_WRITER = """
import sys, time, torch
from src.runs.checkpoint_io import AtomicCheckpointIO

def slow_save(obj, f, *args, **kwargs):  # half a checkpoint on disk, then stuck: the parent kills us here
    f.write(b"PK" + b"x" * 100000)
    f.flush()
    print("writing", flush=True)
    time.sleep(60)

torch.save = slow_save
AtomicCheckpointIO().save_checkpoint({"state_dict": {"net.w": torch.zeros(3)}, "global_step": 9}, sys.argv[1])
"""


def test_checkpoint_write_killed_midway_leaves_previous_loadable(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_state(2.0), path)
    before = path.read_bytes()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout.readline().strip() == "writing"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    loaded = torch.load(path, weights_only=True)
    assert loaded["global_step"] == 2 and torch.equal(loaded["state_dict"]["net.w"], torch.full((64, 64), 2.0))
    leftovers = [p.name for p in path.parent.iterdir() if p.name != "last.ckpt"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.ckpt.") and leftovers[0].endswith(".tmp")


def test_checkpoint_write_that_raises_keeps_previous_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint(_state(1.0), path)
    mode = path.stat().st_mode & 0o777

    def failing_save(obj, f, *a, **k):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint(_state(3.0), path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # temporary file removed
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert mode == 0o666 & ~_umask()  # permissions of a plain open(), not mkstemp's 0600


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_nonfinite_weights_are_never_saved(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_state(1.0), path)
    bad = _state(5.0)
    bad["state_dict"]["net.w"][3, 4] = float("nan")
    with pytest.raises(NonFiniteError, match=r"step 5: not saving .*last.ckpt: non-finite weights .* net.w"):
        AtomicCheckpointIO().save_checkpoint(bad, path)
    assert torch.load(path, weights_only=True)["global_step"] == 1


class PoisonWeights(L.Callback):
    """Turns one weight into NaN after optimizer step ``at_step``, as a diverging run would."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if trainer.global_step == self.at_step:
            with torch.no_grad():
                next(pl_module.net.parameters()).view(-1)[0] = float("nan")


def test_diverged_run_stops_before_saving_and_keeps_last_good(train_cfg, tmp_path):
    cfg = train_cfg(
        "model=b_a",
        "+callbacks.poison._target_=tests.lit.test_reliability.PoisonWeights",
        "+callbacks.poison.at_step=4",
    )
    with pytest.raises(NonFiniteError, match=r"step 4, val: non-finite weights"):
        train(cfg)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 2  # the validation at step 2 saved it; step 4 saved nothing
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert not (tmp_path / "metrics.json").exists()

    # src.eval of a NaN checkpoint fails instead of reporting NaN next to a finite bogus y_matlab
    last["state_dict"]["net.conv_in.weight"].view(-1)[0] = float("nan")
    torch.save(last, tmp_path / "nan.ckpt")
    ecfg = compose_cfg("eval", [f"ckpt_path={tmp_path / 'nan.ckpt'}"], tmp_path / "eval")
    with pytest.raises(NonFiniteError, match=r"nan.ckpt: non-finite weights .*conv_in.weight"):
        evaluate_checkpoint(ecfg)


def test_eval_result_checks():
    ok = {"n_images": 3, "n_expected": 3, "mean": {"spanet": {"psnr": 30.0, "ssim": 0.9}}}
    assert check_result(ok, "x") == []
    nan = {"n_images": 3, "n_expected": 3, "mean": {"spanet": {"psnr": float("nan"), "ssim": 0.9}}}
    assert check_result(nan, "x") == ["x: spanet psnr is nan"]
    assert check_result({**ok, "n_images": 2}, "x") == ["x: scored 2 of 3 images"]


# --- runs that did less than asked ------------------------------------------------------------------------
def test_training_set_smaller_than_one_batch_per_process_fails_before_fit(train_cfg, tmp_path):
    cfg = train_cfg("model=b_a", "data.train_length=6", "schedule.batch_size=8")
    with pytest.raises(
        ValueError,
        match=r"the training set has 6 pairs, fewer than one batch per process: "
        r"data.batch_size=8 \(the global batch\) over 1 process\(es\)",
    ):
        train(cfg)
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "checkpoints").exists()


def test_run_ending_before_max_steps_is_marked_and_fails(train_cfg, tmp_path):
    # 4 samples / batch 2 = 2 steps per epoch; max_epochs=1 ends the run at step 2 of max_steps=4
    cfg = train_cfg("model=b_a", "data.train_length=4", "trainer.max_epochs=1")
    with pytest.raises(IncompleteRunError, match="training stopped at step 2 of max_steps=4"):
        train_main(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["complete"] is False and saved["global_step"] == 2 and saved["max_steps"] == 4
    assert saved["incomplete"] == ["training stopped at step 2 of max_steps=4"]


def test_complete_and_deliberately_shortened_runs(train_cfg, tmp_path):
    result = train(train_cfg("model=b_a", out=tmp_path / "full"))
    assert (result["complete"], result["incomplete"], result["shortened_on_purpose"]) == (True, [], False)
    # a run that tests on part of its test set says so; asked for (limit_test_batches), so it does not fail
    cfg = train_cfg("model=b_a", "+trainer.limit_test_batches=1", out=tmp_path / "limited")
    train_main(cfg)
    saved = json.loads((tmp_path / "limited" / "metrics.json").read_text())
    assert saved["complete"] is False and saved["shortened_on_purpose"] is True
    assert saved["incomplete"] == ["test: scored 1 of 3 images"] and saved["test"]["n_images"] == 1


# --- loggers ----------------------------------------------------------------------------------------------
def test_no_logger_runs_without_logs(train_cfg, tmp_path):
    result = train(train_cfg("model=b_a", "logger=[]"))
    assert result["complete"] and result["test"]["n_images"] == 3
    assert not (tmp_path / "csv").exists() and (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_tensorboard_logger_reports_real_scores(train_cfg, tmp_path):
    train(train_cfg("model=b_a", "logger=tensorboard"))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["val"]["n_images"] == 3 and saved["test"]["n_images"] == 3
    assert math.isfinite(saved["test"]["mean"]["spanet"]["psnr"])
    assert list((tmp_path / "tensorboard").glob("events.*"))


def test_spawn_strategies_are_refused_up_front(train_cfg, tmp_path):
    with pytest.raises(
        ValueError,
        match=r"trainer.strategy=DDPStrategy starts its processes by spawning.*"
        r"Use trainer=ddp",
    ):
        train(train_cfg("model=b_a", "+trainer.strategy=ddp_spawn"))
    assert not (tmp_path / "checkpoints").exists()


# --- eval: loggers, overrides on top of the stored config, guards -----------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tests.conftest import TINY, TINY_SYNTHETIC

    out = tmp_path_factory.mktemp("trained")
    result = train(compose_cfg("train", TINY_SYNTHETIC + TINY + ["model=b_a"], out))
    return Path(result["ckpt_path"])


def test_eval_logs_to_csv_and_composes_every_logger(trained, tmp_path):
    out = tmp_path / "eval"
    cfg = compose_cfg("eval", [f"ckpt_path={trained}", "logger=csv"], out)
    report = evaluate_checkpoint(cfg)["output"]
    rows = list(csv.DictReader(open(out / "csv" / "metrics.csv")))
    logged = [float(r["test/psnr_spanet"]) for r in rows if r.get("test/psnr_spanet")]
    assert logged == [pytest.approx(report["mean"]["spanet"]["psnr"])]
    for logger in ("wandb", "many", "tensorboard"):  # `Interpolation key 'tags' not found` before
        cfg = compose_cfg("eval", [f"ckpt_path={trained}", f"logger={logger}"], tmp_path / logger)
        assert cfg.logger


def test_eval_overrides_apply_on_top_of_the_stored_config(trained, tmp_path):
    cfg = compose_cfg("eval", [f"ckpt_path={trained}", "data.test_photos=[coffee]"], tmp_path / "a")
    report = evaluate_checkpoint(cfg)["output"]
    assert set(report["per_image"]) == {"coffee_heavy", "coffee_medium", "coffee_light"}  # stored: chelsea
    assert report["n_expected"] == 3
    assert cfg.data.eval_long_side == 40  # the rest still comes from the checkpoint
    cfg = compose_cfg("eval", [f"ckpt_path={trained}", "~data.test_photos"], tmp_path / "b")
    from src.utils.checkpoint import read_checkpoint
    from src.utils.config import stored_with_overrides

    stored = read_checkpoint(trained).run_config["data"]
    assert stored["test_photos"] == ["chelsea"]
    assert "test_photos" not in stored_with_overrides(cfg, stored, "data", str(trained))  # removed on top
    cfg = compose_cfg("eval", [f"ckpt_path={trained}", "model.net.variant=b_b"], tmp_path / "c")
    with pytest.raises(ValueError, match="its weights do not fit SPANet; this checkpoint is model=b_a"):
        evaluate_checkpoint(cfg)  # b_a weights into a b_b network: the override reached the model


def test_eval_override_of_a_key_the_stored_config_lacks_fails_saying_why(tmp_path):
    from src.data.synthetic import SyntheticRainDataModule  # noqa: F401  (the stored config's target)
    from src.utils.config import stored_with_overrides

    cfg = compose_cfg("eval", ["ckpt_path=x.ckpt", "data.patch_size=16", "+data.extra=1"], tmp_path)
    stored = {"_target_": "src.data.paired_module.PairedDataModule", "root": "/a", "layout": "rain100"}
    with pytest.raises(
        ValueError,
        match=r"data.patch_size: the data config stored in x.ckpt has no key "
        r"'patch_size' \(its keys: _target_, layout, root\)",
    ):
        stored_with_overrides(cfg, stored, "data", "x.ckpt")
    cfg = compose_cfg("eval", ["ckpt_path=x.ckpt", "+data.root=/b", "+data.extra=1"], tmp_path)
    node = stored_with_overrides(cfg, stored, "data", "x.ckpt")
    assert (node.root, node.layout, node.extra) == ("/b", "rain100", 1)


def test_eval_refuses_existing_metrics_file_and_run_dir(trained, tmp_path, capsys):
    from src.eval import main as eval_main

    target = tmp_path / "m.json"
    target.write_text("{}")
    cfg = compose_cfg("eval", [f"ckpt_path={trained}", f"metrics_file={target}"], tmp_path / "e")
    with pytest.raises(SystemExit) as refused:  # a refusal: one line on stderr, exit status 2
        eval_main(cfg)
    assert refused.value.code == 2
    assert re.search("m.json: the metrics_file already exists.*overwrite=true", capsys.readouterr().err)
    assert target.read_text() == "{}"
    cfg = compose_cfg("eval", [f"ckpt_path={trained}", f"metrics_file={target}", "overwrite=true"], tmp_path / "e")
    eval_main(cfg)
    assert json.loads(target.read_text())["complete"] is True
    with pytest.raises(RunDirExistsError, match="already holds a eval run"):
        refuse_existing_run(tmp_path / "e", {"task": "eval"})


def test_train_run_dir_guard(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    cfg = {"task": "train", "ckpt_path": None}
    with pytest.raises(RunDirExistsError, match="already holds a train run \\(checkpoints\\)"):
        refuse_existing_run(run, cfg)
    refuse_existing_run(run, {**cfg, "overwrite": True})
    refuse_existing_run(run, {**cfg, "ckpt_path": str(run / "checkpoints" / "last.ckpt")})  # resume in place
    refuse_existing_run(run, {**cfg, "resume": "auto"})
    with pytest.raises(RunDirExistsError):  # resume=never starts afresh: no licence to write over the run
        refuse_existing_run(run, {**cfg, "resume": "never"})
    (run / "metrics.json").write_text("{}")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # a job that SLURM requeued lifts the guard for training only
    refuse_existing_run(run, cfg)
    with pytest.raises(RunDirExistsError):
        refuse_existing_run(run, {"task": "eval"})
    monkeypatch.delenv("SLURM_RESTART_COUNT")
    with pytest.raises(RunDirExistsError):  # a checkpoint of ANOTHER run does not make this a resume
        refuse_existing_run(run, {**cfg, "ckpt_path": str(tmp_path / "other" / "last.ckpt")})
    refuse_existing_run(tmp_path / "fresh", cfg)


def test_predict_model_overrides_apply_on_top_of_the_stored_config(trained, tmp_path):
    from src.inference.models import build_model

    args = [f"ckpt_path={trained}", f"input={tmp_path}", f"output={tmp_path / 'out'}"]
    cpu = torch.device("cpu")
    model, label = build_model(compose_cfg("predict", args + ["model.net.channels=32"], tmp_path / "p"), trained, cpu)
    assert model.net.variant == "b_a" and label == "b_a"  # from the checkpoint, not predict.yaml's default spanet
    with pytest.raises(ValueError, match="its weights do not fit SPANet; this checkpoint is model=b_a"):
        build_model(compose_cfg("predict", args + ["model.net.variant=b_b"], tmp_path / "q"), trained, cpu)


def test_resume_with_another_config_is_refused(tmp_path):
    """ckpt_path= alone composes the default config: resuming must not silently continue the run as another one."""
    from omegaconf import OmegaConf

    from src.runs.guards import ResumeConfigError

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    ran = {
        "task": "train",
        "seed": 1,
        "model": {"net": {"variant": "b_a"}},
        "data": {"root": "/a", "crop": 32},
        "schedule": {"max_steps": 4, "lr": 0.1},
    }
    OmegaConf.save(OmegaConf.create(ran), run / ".hydra" / "config.yaml")
    ckpt = str(run / "checkpoints" / "last.ckpt")
    now = OmegaConf.create({**ran, "ckpt_path": ckpt})
    refuse_existing_run(run, now, hydra_files=True)  # the same run
    longer = OmegaConf.merge(now, {"schedule": {"max_steps": 40}, "data": {"root": "/b", "num_workers": 4}})
    refuse_existing_run(run, longer, hydra_files=True)  # longer, data moved, other loader: still the same run
    other = OmegaConf.merge(now, {"seed": 2, "data": {"crop": 64}})
    with pytest.raises(ResumeConfigError, match=r"2 difference\(s\): data.crop: 32 in the run, 64 now; seed: 1"):
        refuse_existing_run(run, other, hydra_files=True)
    refuse_existing_run(run, OmegaConf.merge(other, {"overwrite": True}), hydra_files=True)  # asked for
    refuse_existing_run(run, other)  # inside src.train, after Hydra wrote this run's own .hydra/: not checked
