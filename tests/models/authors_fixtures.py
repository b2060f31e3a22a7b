"""The fixtures that tests/fixtures/make_official_<model>.py wrote with the authors' own code
(tests/fixtures/official/<model>/: weights in the authors' file format, input images, the authors' outputs,
meta.json), and src.predict run on them the way a user runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from hydra.core.global_hydra import GlobalHydra

from src.predict import predict
from tests.conftest import ROOT, compose_cfg

OFFICIAL = ROOT / "tests" / "fixtures" / "official"


def meta(model: str) -> dict:
    return json.loads((OFFICIAL / model / "meta.json").read_text())


def net_overrides(net: dict) -> list[str]:
    """``model.net.<arg>=<value>`` for the sizes the fixture was made with (lists as ``[a,b]``)."""
    def value(v):
        return "[" + ",".join(map(str, v)) + "]" if isinstance(v, list) else str(v)

    return [f"model.net.{k}={value(v)}" for k, v in net.items()]


def predict_raw(tmp_path: Path, overrides: list[str], images: list[Path]) -> dict[str, np.ndarray]:
    """``python -m src.predict <overrides> input=<a folder of images> output=<new folder> save_raw=true``, in
    process; returns {stem: the unclipped H x W x 3 float32 output, ``<output>/<stem>.npy``}."""
    src = tmp_path / "in"
    src.mkdir()
    for image in images:
        shutil.copy(image, src / image.name)
    out = tmp_path / "out"
    cfg = compose_cfg("predict", [*overrides, f"input={src}", f"output={out}", "save_raw=true", "device=cpu",
                                  "progress=false"], tmp_path)
    try:
        predict(cfg)
    finally:
        GlobalHydra.instance().clear()
    return {image.stem: np.load(out / f"{image.stem}.npy") for image in images}


def assert_predict_reproduces(tmp_path: Path, model: str, weights: str,
                              stems: tuple[str, ...] = ("even", "odd")) -> dict[str, np.ndarray]:
    """src.predict with ``model=<model>``, the fixture's sizes and ``model.init_from=<fixture weights>`` on the fixture
    images: each output equals the authors' within 1e-4. Returns the outputs."""
    fixture, info = OFFICIAL / model, meta(model)
    overrides = [f"model={model}", *net_overrides(info["net"]), f"model.init_from={fixture / weights}"]
    got = predict_raw(tmp_path, overrides, [fixture / f"{stem}.png" for stem in stems])
    for stem in stems:
        ref = np.load(fixture / f"{stem}.npy")
        assert got[stem].shape == ref.shape == (*info["images"][stem]["size"], 3)
        np.testing.assert_allclose(got[stem], ref, rtol=0, atol=1e-4, err_msg=f"{model}: {stem}.png")
    return got
