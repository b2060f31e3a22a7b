"""Checks against the fixtures of the authors' code in tests/fixtures/official/<name>/ (written by hand with
tests/fixtures/make_official_*.py; their layout is described in tests/fixtures/official_common.py).

* :func:`predict_fixture`: ``python -m src.predict model=<model> model.net.<authors' argument>=<value> ...
  model.init_from=<their weights file> input=<fixture>/input output=OUT save_raw=true`` (in-process), the raw
  outputs ``OUT/<stem>.npy``; :func:`differences`: their largest differences to the authors' outputs;
  :func:`predict_matches`: both; :func:`predict_raw`: src.predict on any image or folder;
* :func:`float64_difference`: the same network in float64 against their float64 output;
* :func:`load_report`: what ``model.init_from`` loads of their file, also rewrapped as ``params_ema`` and with the
  ``module.`` prefix of their multi-GPU runs;
* :func:`tiled_prediction`: ``tile=64 tile_overlap=16`` on a 100 x 90 image;
* :func:`small_net`, :func:`default_parameter_count`, :func:`check_any_size`: sizes and shapes;
* :func:`assert_reproduces_the_authors` (the first three together), :func:`assert_pads_inside`: the checks the
  model tests make.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
from hydra.utils import get_class

from src.utils.checkpoint import init_weights
from src.utils.image_io import read_array, to_float
from tests.conftest import ROOT
from tests.inference.conftest import run_predict

FIXTURES = ROOT / "tests" / "fixtures" / "official"


def meta(name: str) -> dict:
    return json.loads((FIXTURES / name / "meta.json").read_text())


def weights_file(name: str) -> Path:
    """The fixture's weights in the authors' file format (its only ``*.pth``)."""
    files = sorted((FIXTURES / name).glob("*.pth"))
    assert len(files) == 1, files
    return files[0]


def override(key: str, value) -> str:
    """``model.net.<key>=<value>`` in Hydra's override syntax (lists without spaces, lower-case booleans)."""
    text = json.dumps(value, separators=(",", ":")).replace('"', "") if not isinstance(value, str) else value
    return f"model.net.{key}={text}"


def fixture_overrides(name: str, net: dict | None = None) -> list[str]:
    """The fixture's network arguments as overrides, with ``net`` replacing some of them."""
    return [override(k, v) for k, v in {**meta(name)["net"], **(net or {})}.items()]


def with_weights(name: str, model: str, net: dict | None = None) -> list[str]:
    """``model=<model> model.net.<argument>=<value> ... model.init_from=<fixture's file in the authors' format>``."""
    return [f"model={model}", *fixture_overrides(name, net), f"model.init_from={weights_file(name)}"]


def predict_raw(tmp_path: Path, overrides: list[str], source: Path) -> dict[str, np.ndarray]:
    """``python -m src.predict <overrides> input=<source> output=<tmp_path>/out save_raw=true`` (in-process);
    {stem: the unclipped H x W x 3 output, ``out/<stem>.npy``}."""
    out = tmp_path / "out"
    run_predict(tmp_path, [*overrides, f"input={source}", f"output={out}", "save_raw=true"])
    return {f.stem: np.load(f) for f in sorted(out.glob("*.npy"))}


def predict_fixture(name: str, model: str, tmp_path: Path, net: dict | None = None) -> dict[str, np.ndarray]:
    """src.predict on the fixture's inputs with its weights (``net`` replaces some of its network arguments)."""
    return predict_raw(tmp_path, with_weights(name, model, net), FIXTURES / name / "input")


def differences(name: str, outputs: dict[str, np.ndarray], expected: str = "expected") -> dict[str, float]:
    """{stem: max |output - <expected>/<stem>.npy|}; each output float32 at its input image's size."""
    diffs = {}
    for ref in sorted((FIXTURES / name / expected).glob("*.npy")):
        got, want = outputs[ref.stem], np.load(ref)
        size = read_array(FIXTURES / name / "input" / f"{ref.stem}.png").shape[:2]
        assert got.shape == want.shape == (*size, 3) and got.dtype == np.float32, (ref.name, got.shape, want.shape)
        diffs[ref.stem] = float(np.abs(got - want).max())
    assert set(diffs) == {"even", "odd"}, diffs
    return diffs


def predict_matches(
    name: str, model: str, tmp_path: Path, expected: str = "expected", net: dict | None = None
) -> dict[str, float]:
    """:func:`differences` of :func:`predict_fixture`'s outputs to the authors' ``expected`` outputs."""
    return differences(name, predict_fixture(name, model, tmp_path, net), expected)


def build_net(name: str, target: str) -> torch.nn.Module:
    """The suite's network ``target`` (class path) with the fixture's arguments, weights loaded through
    :func:`src.utils.checkpoint.init_weights` (what ``model.init_from`` calls); every tensor must load."""
    net = get_class(target)(**meta(name)["net"])
    report = init_weights(net, weights_file(name))
    assert not (report["missing"] or report["unexpected"] or report["mismatched"]), report
    return net.eval()


def float64_difference(name: str, target: str) -> dict[str, float]:
    """{stem: max difference} of the network in float64 to the authors' float64 output."""
    net = build_net(name, target).double()
    diffs = {}
    for ref in sorted((FIXTURES / name / "expected64").glob("*.npy")):
        img = to_float(read_array(FIXTURES / name / "input" / f"{ref.stem}.png"), np.float64)
        with torch.no_grad():
            out = net(torch.from_numpy(img).permute(2, 0, 1)[None])["out"][0].permute(1, 2, 0).numpy()
        diffs[ref.stem] = float(np.abs(out - np.load(ref)).max())
    return diffs


def load_report(name: str, net: torch.nn.Module, tmp_path: Path) -> dict[str, dict]:
    """init_weights reports for the fixture file as the authors save it, as ``{'params_ema': ...}`` and with the
    ``module.`` prefix of DataParallel (keyed 'params', 'params_ema', 'module')."""
    state = torch.load(weights_file(name), weights_only=True)["params"]
    files = {"params": weights_file(name), "params_ema": tmp_path / "ema.pth", "module": tmp_path / "module.pth"}
    torch.save({"params_ema": state}, files["params_ema"])
    torch.save({"params": {f"module.{k}": v for k, v in state.items()}}, files["module"])
    return {kind: init_weights(net, path) for kind, path in files.items()}


def tiled_prediction(name: str, model: str, tmp_path: Path) -> np.ndarray:
    """The raw output of src.predict with the fixture's network and weights, ``tile=64 tile_overlap=16``, on a
    100 x 90 crop of chelsea (two by two tiles)."""
    from PIL import Image
    from skimage import data

    image = tmp_path / "cat.png"
    Image.fromarray(data.chelsea()[50:150, 100:190]).save(image)
    tiled = predict_raw(tmp_path, [*with_weights(name, model), "tile=64", "tile_overlap=16"], image)["cat"]
    assert tiled.shape == (100, 90, 3) and np.isfinite(tiled).all()
    return tiled


@functools.cache
def small_net(model: str) -> torch.nn.Module:
    """``model``'s network at its test size (tests/models/small_sizes.py), seeded, in eval mode (one per model:
    callers must not change it)."""
    from hydra.utils import instantiate

    from tests.conftest import compose_cfg
    from tests.models.small_sizes import small_size

    cfg = compose_cfg("train", [f"model={model}", *small_size(model)], ROOT / "logs")
    torch.manual_seed(0)
    return instantiate(cfg.model.net).eval()


def default_parameter_count(model: str, overrides: tuple[str, ...] = ()) -> int:
    """Parameters of conf/model/<model>.yaml's network, built on the meta device (no memory, no init time)."""
    from hydra.utils import instantiate

    from tests.conftest import compose_cfg

    cfg = compose_cfg("train", [f"model={model}", *overrides], ROOT / "logs")
    with torch.device("meta"):
        net = instantiate(cfg.model.net)
    return sum(p.numel() for p in net.parameters())


def check_any_size(net: torch.nn.Module, sizes=((13, 17), (3, 5), (1, 1))) -> None:
    """Odd and tiny sizes come back at the input's size, finite; a batch gives each image's own output."""
    g = torch.Generator().manual_seed(0)
    for h, w in sizes:
        x = torch.rand(2, 3, h, w, generator=g)
        with torch.no_grad():
            out, first = net(x)["out"], net(x[:1])["out"]
        assert out.shape == x.shape and torch.isfinite(out).all(), (h, w, out.shape)
        torch.testing.assert_close(out[:1], first, rtol=0, atol=1e-5)


# --- the checks each model's tests make (tests/models/test_<name>.py) --------------------------------------------
def assert_reproduces_the_authors(name: str, model: str, target: str, tmp_path: Path) -> None:
    """src.predict with the authors' file matches their float32 output within 1e-4 on both images, the network
    in float64 their float64 output within 1e-10, and every tensor of their file (also as ``params_ema`` or with
    ``module.`` prefixes) loads."""
    diffs = predict_matches(name, model, tmp_path)
    assert max(diffs.values()) < 1e-4, diffs
    diffs64 = float64_difference(name, target)
    assert max(diffs64.values()) < 1e-10, diffs64
    net = build_net(name, target)
    for kind, report in load_report(name, net, tmp_path).items():
        assert report["loaded"] == sorted(net.state_dict()), kind
        assert not (report["missing"] or report["unexpected"] or report["mismatched"]), (kind, report)


def assert_pads_inside(model: str, size: tuple[int, int], pad) -> None:
    """``model``'s small network on an image of ``size`` equals the network on ``pad(image)`` cropped back."""
    net = small_net(model)
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out, ref = net(x)["out"], net(pad(x))["out"][..., : size[0], : size[1]]
    assert out.shape == x.shape
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
