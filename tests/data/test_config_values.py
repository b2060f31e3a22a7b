"""Impossible data sizes are refused when the config is built, naming the key: a ConfigValueError (one 'error:'
line and exit status 2 from the entry points), before any training starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from src.data.paired_module import PairedDataModule
from src.data.realrain import RealRainDataModule
from src.data.synthetic import SyntheticRainDataModule
from src.utils.errors import ConfigValueError, refusals_exit
from tests.data.conftest import build_spa

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"patch_size": 0}, "data.patch_size=0: expected an integer >= 1"),  # was: full photos as training samples
        ({"patch_size": -8}, "data.patch_size=-8"),
        ({"patch_size": 32.5}, "data.patch_size=32.5"),
        ({"train_patch": 0}, "schedule.train_patch must be a positive int"),
        ({"train_length": 0}, "data.train_length=0"),
        ({"eval_long_side": 0}, "data.eval_long_side=0: expected an integer >= 1 or null"),
        ({"haze_prob": 1.5}, "data.haze_prob=1.5"),
        ({"batch_size": 0}, r"data.batch_size \(src.train: schedule.batch_size\)=0"),
        ({"eval_batch_size": 0}, "data.eval_batch_size=0"),
        ({"num_workers": -1}, "data.num_workers=-1: expected an integer >= 0"),
        ({"train_flips": {"hflip": 1}}, "schedule.train_flips.hflip must be true or false"),
    ],
)
def test_synthetic_sizes(kwargs, message):
    with pytest.raises(ConfigValueError, match=message):
        SyntheticRainDataModule(**kwargs)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"train_transform": {"crop": 0}}, r"data.train_transform.crop=0: size 0: expected a positive integer"),
        ({"train_transform": {"crop": [16, -1]}}, r"data.train_transform.crop=\[16, -1\]"),
        ({"train_transform": {"resized_crop": {"size": 0}}}, r"data.train_transform.resized_crop="),
        ({"train_transform": {"scale": [0, 1]}}, r"data.train_transform.scale="),
        ({"train_patch": 0}, "schedule.train_patch must be a positive int"),
        ({"val_scenes": -1}, "data.val_scenes=-1: must be >= 0"),
    ],
)
def test_file_data_sizes(tmp_path, kwargs, message):
    root = build_spa(tmp_path / "spa").root
    with pytest.raises(ConfigValueError, match=message):
        RealRainDataModule(str(root), **kwargs)
    if "train_transform" in kwargs:
        with pytest.raises(ConfigValueError, match=message):
            PairedDataModule(str(root), "same_names", **kwargs)


def test_a_refusal_inside_hydra_instantiate_is_one_line(capsys):
    """hydra.utils.instantiate wraps a constructor's ConfigValueError in its InstantiationException: the entry
    points still print one 'error:' line and exit with status 2."""
    from hydra.utils import instantiate

    @refusals_exit
    def task():
        instantiate({"_target_": "src.data.synthetic.SyntheticRainDataModule", "patch_size": 0})

    with pytest.raises(SystemExit) as exit_:
        task()
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: data.patch_size=0: expected an integer >= 1\n"


@pytest.mark.slow
def test_train_refuses_patch_size_zero_before_training(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", WANDB_MODE="offline")
    proc = subprocess.run(
        [sys.executable, "-m", "src.train", "data.patch_size=0", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == "error: data.patch_size=0: expected an integer >= 1"
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.json").exists()
