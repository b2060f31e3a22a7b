"""PReNet against the authors' own code: fixtures written by tests/fixtures/make_official_prenet.py (their
networks.py and test_PReNet.py preprocessing; weights in their file format) are reproduced through
``model.init_from`` and ``src.predict``, and their released Rain100H weights too when a clone of their repository
is at hand (``SPANET_AUTHORS_WEIGHTS``, docs/models.md)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from src.models.prenet import PReNet
from src.utils.checkpoint import init_weights
from tests.models import official_fixtures as of

FIXTURE = of.FIXTURES / "prenet"


def test_parameter_count_and_the_authors_tensor_names():
    net = PReNet()
    assert sum(p.numel() for p in net.parameters()) == 168_963
    state = torch.load(FIXTURE / "net_latest.pth", map_location="cpu", weights_only=True)
    assert list(net.state_dict()) == list(state) and len(state) == 32  # their names, in their order


def test_init_from_loads_every_tensor_of_the_authors_file():
    report = init_weights(PReNet(), FIXTURE / "net_latest.pth")
    assert len(report["loaded"]) == 32
    assert report["missing"] == report["unexpected"] == report["mismatched"] == []


def test_predict_reproduces_the_authors_output_on_even_and_odd_sizes(tmp_path):
    got = of.predict_fixture("prenet", "prenet", tmp_path)
    diffs = of.differences("prenet", got)
    assert max(diffs.values()) < 1e-4, diffs
    assert got["odd"].max() > 1  # unclipped, as the authors' network gives it before their script clamps


def test_every_stage_equals_the_authors_in_float64():
    ref = np.load(FIXTURE / "float64.npz")
    net = PReNet().double()
    init_weights(net, FIXTURE / "net_latest.pth")
    with torch.no_grad():
        res = net(torch.from_numpy(ref["input"]))
    assert len(res["stages"]) == 6 and res["out"] is res["stages"][-1]
    np.testing.assert_allclose(torch.cat(res["stages"]).numpy(), ref["stages"], rtol=0, atol=1e-10)


def test_images_of_a_batch_are_independent():
    torch.manual_seed(0)
    net = PReNet(recurrent_iter=2).double()
    x = torch.rand(2, 3, 9, 14, dtype=torch.float64)
    with torch.no_grad():
        both, one = net(x)["out"], net(x[1:])["out"]
    torch.testing.assert_close(both[1:], one, rtol=0, atol=1e-12)


@pytest.mark.authors_weights
def test_released_rain100h_weights_reproduce_the_authors_output(tmp_path):
    info = of.meta("prenet")["release"]
    path = Path(os.environ["SPANET_AUTHORS_WEIGHTS"]) / "PReNet" / info["file"]
    if not path.is_file():
        pytest.skip(
            f"{path} not found: SPANET_AUTHORS_WEIGHTS must hold a clone of github.com/csdwren/PReNet named PReNet"
        )
    assert hashlib.sha256(path.read_bytes()).hexdigest() == info["sha256"], f"{path} is not the authors' file"
    got = of.predict_raw(tmp_path, ["model=prenet", f"model.init_from={path}"], FIXTURE / info["input"])
    ref = np.load(FIXTURE / info["output"])
    np.testing.assert_allclose(got[Path(info["input"]).stem], ref, rtol=0, atol=1e-4)


@pytest.mark.gpu
def test_cuda_equals_cpu():
    net = PReNet()
    init_weights(net, FIXTURE / "net_latest.pth")
    x = torch.rand(2, 3, 27, 37)
    with torch.no_grad():
        cpu = net(x)["out"]
        gpu = net.cuda()(x.cuda())["out"].cpu()
    torch.testing.assert_close(gpu, cpu, rtol=0, atol=1e-4)
