"""Shared fixtures: compose the real configs with tiny overrides (no network, CPU, seconds per run)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from src.runs.resolvers import register_resolvers

register_resolvers()  # as every entry point does: ${suite_run_dir} & co. in conf/hydra
os.environ["WANDB_MODE"] = "offline"
# pytest runs 2 workers on 2 cores: one thread each avoids oversubscription (5-10x slower otherwise)
torch.set_num_threads(1)
os.environ.setdefault("WANDB_SILENT", "true")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


# --- requirements: one declared skip condition each (``@pytest.mark.<name>``; markers listed in pyproject.toml) ---
def _cuda_device() -> bool:
    return torch.cuda.is_available()


def _triton() -> bool:
    return importlib.util.find_spec("triton") is not None


def _c_scan() -> bool:
    from src.models.irnn import c_backend_available  # builds the C scan once if a compiler is there

    return c_backend_available()


def _authors_weights() -> bool:
    return bool(os.environ.get("SPANET_AUTHORS_WEIGHTS"))


REQUIREMENTS = {
    "gpu": (_cuda_device, "needs a CUDA device"),
    "triton": (_triton, "needs triton (pip install triton)"),
    "c_compiler": (_c_scan, "needs a C compiler: the IRNN 'c' backend falls back to 'torch' (tested separately)"),
    "authors_weights": (
        _authors_weights,
        "needs the authors' released weights: set SPANET_AUTHORS_WEIGHTS to a folder "
        "holding clones of their repositories (docs/models.md, 'Testing with the authors' weights')",
    ),
}


def pytest_runtest_setup(item):
    """Skip a test marked with a requirement this machine lacks (the reason names it)."""
    for name, (available, reason) in REQUIREMENTS.items():
        if item.get_closest_marker(name) is not None and not available():
            pytest.skip(reason)


def load_experiment_script(name: str):
    """Import experiments/<name>.py as the module ``name`` (registered in sys.modules: dataclasses need it)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# the built-in synthetic data, tiny: 32x32 patches, small validation and test images
TINY_SYNTHETIC = [
    "data.train_length=16",
    "data.patch_size=32",
    "data.eval_long_side=40",
    "data.test_photos=[chelsea]",
]
# a run that takes seconds: a few steps of batch 2
TINY = [
    "schedule.batch_size=2",
    "schedule.max_steps=4",
    "schedule.val_every=2",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
]


def compose_cfg(name: str, overrides: list[str], output_dir: Path):
    """Compose conf/<name>.yaml as the entry point would, with HydraConfig set and outputs in output_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = str(ROOT)  # weights/ of this checkout, whatever the current directory
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
        del cfg["hydra"]  # as in a real run: the app sees HydraConfig, not a `hydra` key
    return cfg


@pytest.fixture
def train_cfg(tmp_path):
    """Factory: train_cfg(*overrides) -> composed tiny training config writing into tmp_path."""

    def make(*overrides: str, out: Path | None = None, synthetic: bool = True):
        return compose_cfg("train", (TINY_SYNTHETIC if synthetic else []) + TINY + list(overrides), out or tmp_path)

    yield make
    GlobalHydra.instance().clear()
