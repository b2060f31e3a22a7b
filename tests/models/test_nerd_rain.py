"""NeRD-Rain against the authors' own code: fixtures written by tests/fixtures/make_official_nerd_rain.py (their
model.py / mlp.py, their test.py's windows, weights in their train.py's file format) are reproduced through
``model.init_from`` and ``src.predict``; plus the windows on sizes their script cannot run, the training-mode
outputs the loss reads, and the conversion of their files."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from kornia.geometry.transform import build_pyramid

from src.models.nerd_rain import NeRDRain, window_spans
from src.utils.checkpoint import init_weights
from src.utils.errors import ConfigValueError
from tests.models import official_fixtures as of

FIXTURE = of.FIXTURES / "nerd_rain"
SMALL = dict(dim=4, num_blocks=[1, 1, 1], hidden_list=[16, 16, 16])


def small_net(**kw) -> NeRDRain:
    net = NeRDRain(**{**of.meta("nerd_rain")["net"], **kw})
    init_weights(net, FIXTURE / "model_best.pth")
    return net.eval()


@pytest.mark.parametrize("dim, ours, theirs", [(48, 22_888_538, 22_893_146), (32, 10_528_266, 10_530_314)])
def test_parameter_counts(dim, ours, theirs):
    """Default sizes (NeRD-Rain, NeRD-Rain-S); the authors' module also holds the never-called
    reduce_chan_level1_max3 (2 dim x dim weights)."""
    n = sum(p.numel() for p in NeRDRain(dim=dim).parameters())
    assert n == ours and n + 2 * dim * dim == theirs


def test_init_from_loads_every_tensor_of_the_authors_file(caplog):
    net = NeRDRain(**of.meta("nerd_rain")["net"])
    with caplog.at_level(logging.INFO):
        report = init_weights(net, FIXTURE / "model_best.pth")
    assert len(report["loaded"]) == len(net.state_dict())
    assert report["missing"] == report["unexpected"] == report["mismatched"] == []
    assert "dropped reduce_chan_level1_max3.weight" in caplog.text
    assert sum(p.numel() for p in net.parameters()) + 2 * 4 * 4 == of.meta("nerd_rain")["parameters_of_their_module"]


def test_predict_reproduces_the_authors_windowed_output_on_even_and_odd_sizes(tmp_path):
    got = of.predict_fixture("nerd_rain", "nerd_rain", tmp_path)
    diffs = of.differences("nerd_rain", got)
    assert max(diffs.values()) < 1e-4, diffs
    assert got["odd"].min() < 0  # unclipped, as the authors' network gives it before their script clamps


def test_every_output_equals_the_authors_in_float64():
    ref = np.load(FIXTURE / "float64.npz")
    net = small_net().double()
    with torch.no_grad():
        res = net.whole(torch.from_numpy(ref["input"]))
    ours = {
        "out0": res["out"],
        "out1": res["scales"][1],
        "out2": res["scales"][2],
        "out3": res["inr"][0],
        "out5": res["inr"][1],
    }
    for key, value in ours.items():
        np.testing.assert_allclose(value.numpy(), ref[key], rtol=0, atol=1e-9, err_msg=key)


def test_window_spans_are_the_authors_partition():
    assert window_spans(80, 32) == [(0, 0), (32, 32), (48, 64)]  # whole windows, then one flush with the end
    assert window_spans(64, 32) == [(0, 0), (32, 32)]
    assert window_spans(32, 32) == window_spans(20, 32) == [(0, 0)]


def test_windows_on_sides_shorter_than_a_window_and_odd():
    """Where the authors' script fails (a side under win_size): that side is one window, reflect-padded to a
    multiple of 16; the other side is cut as theirs is. Each kept region is the network's output on its window."""
    net = small_net().double()
    x = torch.rand(2, 3, 21, 70, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        out = net(x)["out"]
        left, mid, right = (net.whole(x[..., a : a + 32])["out"] for a in (0, 32, 38))
    assert out.shape == x.shape
    torch.testing.assert_close(out[..., :32], left, rtol=0, atol=1e-12)
    torch.testing.assert_close(out[..., 32:64], mid, rtol=0, atol=1e-12)
    torch.testing.assert_close(out[..., 64:], right[..., 26:], rtol=0, atol=1e-12)
    with torch.no_grad():  # smaller than a window both ways: the whole image, padded
        torch.testing.assert_close(net(x[..., :13, :9])["out"], net.whole(x[..., :13, :9])["out"], rtol=0, atol=0)


def test_training_mode_gives_the_scales_and_inr_outputs_at_the_pyramid_sizes():
    net = NeRDRain(**SMALL).train()
    x = torch.rand(2, 3, 40, 36)
    res = net(x)
    pyramid = build_pyramid(x, 3)
    assert [t.shape for t in res["scales"]] == [t.shape for t in pyramid]
    assert [t.shape for t in res["inr"]] == [pyramid[1].shape, pyramid[2].shape]
    assert res["out"] is res["scales"][0]
    assert set(net.eval()(x)) == {"out"}  # windows: only the full-resolution output


def test_release_conversion_and_bad_sizes():
    net = NeRDRain(**SMALL)
    ours = net.state_dict()
    assert not net.is_release_state_dict(ours)  # a suite checkpoint loads as it is
    release = {f"module.{k}".replace(".dwconv.", ".dwconv.main.0."): v for k, v in ours.items()}
    release["module.reduce_chan_level1_max3.weight"] = torch.zeros(4, 8, 1, 1)
    assert net.is_release_state_dict(release)
    assert net.convert_release_state_dict(release).keys() == ours.keys()
    with pytest.raises(ConfigValueError, match="model.net.win_size=100"):
        NeRDRain(**SMALL, win_size=100)
    with pytest.raises(ConfigValueError, match=r"model.net.heads\[2\]=3"):
        NeRDRain(**{**SMALL, "heads": [1, 2, 3]})


@pytest.mark.gpu
def test_cuda_equals_cpu():
    net = small_net()
    x = torch.rand(1, 3, 40, 70)
    with torch.no_grad():
        cpu = net(x)["out"]
        gpu = net.cuda()(x.cuda())["out"].cpu()
    torch.testing.assert_close(gpu, cpu, rtol=0, atol=1e-4)
