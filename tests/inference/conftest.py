"""Tiny checkpoints and inputs for src.predict / src.inference tests."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf
from skimage import data as skdata

from tests.conftest import ROOT, compose_cfg

RELEASE = ROOT / "weights" / "spanet_release.pt"
needs_release = pytest.mark.skipif(not RELEASE.is_file(), reason="weights/spanet_release.pt not present")


def make_checkpoint(path: Path, model: str = "spanet", seed: int = 0, channels: int = 8) -> Path:
    """A checkpoint as src.train writes it (state_dict + stored run config) of a small random network."""
    cfg = compose_cfg(
        "predict", [f"model={model}", f"model.net.channels={channels}", "input=x", "output=y"], path.parent
    )
    GlobalHydra.instance().clear()
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    for key in ("optimizer", "scheduler"):
        model_cfg.pop(key, None)
    torch.manual_seed(seed)
    module = instantiate(OmegaConf.create(model_cfg), optimizer=None, scheduler=None)
    state = {f"net.{k}": v for k, v in module.net.state_dict().items()}
    torch.save(
        {
            "state_dict": state,
            "pytorch-lightning_version": "2.6.0",
            "global_step": 0,
            "suite_config": {"model": model_cfg, "run_info": {"model": model}},
        },
        path,
    )
    return path


def load_net(path: Path):
    """The network of a make_checkpoint file, built independently of src.predict."""
    ckpt = torch.load(path, weights_only=True)
    module = instantiate(OmegaConf.create(ckpt["suite_config"]["model"]), optimizer=None, scheduler=None)
    module.net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items()})
    return module.net.eval()


@pytest.fixture
def ckpt(tmp_path):
    return make_checkpoint(tmp_path / "spanet.ckpt")


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    iio.imwrite(d / "a.png", skdata.astronaut()[100:137, 200:251])  # 37 x 51
    iio.imwrite(d / "b.png", skdata.astronaut()[300:337, 100:151])  # same size: one batch with a.png
    iio.imwrite(d / "c.png", skdata.camera()[:29, :33])  # grey, another size
    return d


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float32).transpose(2, 0, 1) / 255)[None]


def run_predict(tmp_path: Path, overrides: list[str]):
    from src.predict import predict

    cfg = compose_cfg("predict", ["progress=false", "device=cpu"] + overrides, tmp_path)
    try:
        return predict(cfg)
    finally:
        GlobalHydra.instance().clear()
