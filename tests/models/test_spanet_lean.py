"""SPANet's memory-lean inference path (src/models/spanet_lean.py, src/ops/bands.py): the same outputs as the
autograd forward for every variant, where it is used, and the band machinery it rests on."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from src.models import irnn as irnn_mod
from src.models import spanet_lean
from src.models.irnn import irnn, irnn_horizontal, irnn_vertical
from src.models.spanet import VARIANTS, SPANet
from src.ops.bands import Band, conv, stream
from tests.conftest import REQUIREMENTS

UP, RIGHT, DOWN, LEFT = range(4)
ROOT = Path(__file__).resolve().parents[2]


def _net(variant: str, dtype=torch.float32, seed: int = 0) -> SPANet:
    torch.manual_seed(seed)
    net = SPANet(variant, irnn_init_weight=0.95).to(dtype).eval()  # long-range IRNN, as trained weights have
    with torch.no_grad():
        for sam in net.sams:  # biases of both signs, so the ReLUs cut
            for layer in (sam.irnn1, sam.irnn2):
                layer.bias.uniform_(-0.3, 0.3)
    return net


def _both(net: SPANet, x: torch.Tensor) -> tuple[dict, dict]:
    with torch.no_grad():
        reference = net(x)  # the autograd path, without recording
    with torch.inference_mode():
        lean = net(x)
    return reference, lean


@pytest.fixture
def narrow_bands(monkeypatch):
    """8-row bands, so that small images cross many band borders (in-place halos, the down state carried)."""
    monkeypatch.setitem(spanet_lean.BAND_BYTES, "cpu", 1)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("size", [(37, 29), (9, 7), (20, 3)])
def test_lean_path_equals_the_autograd_forward(variant, size, narrow_bands):
    net = _net(variant)
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    reference, lean = _both(net, x)
    assert lean["out"].shape == x.shape and len(lean["att"]) == len(reference["att"])
    torch.testing.assert_close(lean["out"], reference["out"], rtol=0, atol=1e-6)
    for a, b in zip(lean["att"], reference["att"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    if reference["att"]:
        assert lean["vis"]["attention"] is lean["att"][0]


@pytest.mark.parametrize("border", ["relu", "identity"])
def test_lean_path_float64_and_both_border_rules(border, narrow_bands):
    net = _net("b_f", torch.float64)
    for sam in net.sams:
        sam.irnn1.border = sam.irnn2.border = border
    x = torch.rand(1, 3, 26, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    reference, lean = _both(net, x)
    torch.testing.assert_close(lean["out"], reference["out"], rtol=0, atol=1e-12)


def test_lean_path_without_the_c_scan(monkeypatch, narrow_bands):
    """The PyTorch loops that replace the C band sweeps (no compiler, CUDA tensors) give the same numbers."""
    monkeypatch.setattr(irnn_mod.C_LIBRARY, "load", lambda: None)
    net = _net("b_d")
    x = torch.rand(1, 3, 19, 11, generator=torch.Generator().manual_seed(3))
    reference, lean = _both(net, x)
    torch.testing.assert_close(lean["out"], reference["out"], rtol=0, atol=1e-6)


def test_lean_path_is_used_under_inference_mode_only(monkeypatch):
    calls = []
    real = spanet_lean.forward_lean
    monkeypatch.setattr(spanet_lean, "forward_lean", lambda net, x: calls.append(1) or real(net, x))
    net = _net("b_b")
    x = torch.rand(1, 3, 8, 8)
    with torch.inference_mode():
        net(x)
    assert calls == [1]
    with torch.no_grad():
        net(x)
    out = net(x)["out"]
    assert calls == [1] and out.requires_grad  # no_grad and autograd use the modules' forward
    net.lean_inference = False
    with torch.inference_mode():
        net(x)
    assert calls == [1]
    net.lean_inference = True
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        net(x)  # autocast: the modules' forward, which keeps the IRNN in float32
    net.to(memory_format=torch.channels_last)  # speed.channels_last: NHWC activations, which the sweeps do not take
    with torch.inference_mode():
        net(x)
    assert calls == [1]


def test_release_weights_lean_equals_autograd(narrow_bands):
    from tests.inference.conftest import RELEASE

    if not RELEASE.is_file():
        pytest.skip("weights/spanet_release.pt not present")
    from src.utils.checkpoint import load_net_weights

    net = load_net_weights(SPANet(variant="b_d"), RELEASE).eval()
    x = torch.rand(1, 3, 40, 33, generator=torch.Generator().manual_seed(4))
    reference, lean = _both(net, x)
    torch.testing.assert_close(lean["out"], reference["out"], rtol=0, atol=1e-6)


# --- the band sweeps of the IRNN ------------------------------------------------------------------------------
@pytest.mark.parametrize("use_c", [True, False])
@pytest.mark.parametrize("border", ["relu", "identity"])
def test_band_sweeps_continue_across_bands(use_c, border, monkeypatch):
    """Each direction of irnn() from the band sweeps: vertical ones in two pieces joined by init / final, scaled
    outputs with an unscaled recurrence, any plane stride."""
    if use_c and not REQUIREMENTS["c_compiler"][0]():
        pytest.skip(REQUIREMENTS["c_compiler"][1])
    if not use_c:
        monkeypatch.setattr(irnn_mod.C_LIBRARY, "load", lambda: None)
    g = torch.Generator().manual_seed(5)
    C, H, W = 3, 11, 13
    x = torch.randn(1, C, H, W, generator=g)
    w, b = torch.rand(4, C, generator=g) * 1.8 - 0.9, torch.rand(4, C, generator=g) - 0.5
    scale = torch.rand(4, H, W, generator=g)
    expected = irnn(x, w, b, "naive", border)[0] * scale[:, None]  # (4, C, H, W)
    out = torch.zeros(4, C + 1, H, W)[:, 1:]  # plane stride != H * W
    irnn_horizontal(x[0], w, b, out[RIGHT], out[LEFT], scale[RIGHT], scale[LEFT], border=border)
    for d, first, second in ((DOWN, slice(0, 4), slice(4, H)), (UP, slice(4, H), slice(0, 4))):
        state = torch.empty(C, W)
        irnn_vertical(
            x[0, :, first],
            d,
            w[d],
            b[d],
            out[d, :, first],
            scale[d, first],
            final=state,
            final_row=0 if d == UP else -1,
            border=border,
        )
        irnn_vertical(x[0, :, second], d, w[d], b[d], out[d, :, second], scale[d, second], init=state, border=border)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


# --- bands ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("in_place", [False, True])
def test_stream_of_convolutions_equals_the_whole_image(in_place):
    torch.manual_seed(0)
    c1 = torch.nn.Conv2d(4, 4, 3, padding=2, dilation=2)
    c2 = torch.nn.Conv2d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 23, 9)
    with torch.inference_mode():
        expected = c2(F.relu(c1(x)))
        dst = x.clone() if in_place else torch.empty_like(x)
        seen = []

        def fn(band: Band) -> Band:
            seen.append((band.top, band.bottom, band.want))
            t = conv(band, c1)
            return conv(t.like(t.t.relu()), c2)

        stream(dst if in_place else x, dst, fn, halo=3, rows=8)
    torch.testing.assert_close(dst, expected, rtol=0, atol=1e-6)
    assert seen == [(0, 11, (0, 8)), (5, 19, (8, 16)), (13, 23, (16, 23))]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pointwise_band_convolution_equals_conv2d_on_a_band_view(bias, dtype):
    """A 1x1 convolution on a band (a view of rows of a bigger map) is one matrix product over the view, with
    conv2d's numbers; a channels-last band (not what the lean path makes) goes through conv2d."""
    torch.manual_seed(0)
    layer = torch.nn.Conv2d(5, 3, 1, bias=bias).to(dtype)
    for layout in (torch.contiguous_format, torch.channels_last):
        whole = torch.randn(1, 5, 12, 7, dtype=dtype).contiguous(memory_format=layout)
        band = Band(whole[:, :, 4:9], 4, 12)
        with torch.inference_mode():
            y = conv(band, layer)
            expected = layer(whole)[:, :, 4:9]
        assert (y.top, y.bottom) == (4, 9)
        torch.testing.assert_close(y.t, expected, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-12)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's heap thresholds: Linux with glibc only")
def test_bands_are_recycled_by_the_heap_not_faulted_in_again():
    """The second image of a run page-faults far less with the heap thresholds set (src/ops/heap.py) than without
    (SPANET_KEEP_HEAP=0): counts of minor page faults, not timings."""
    script = (
        "import resource, sys, torch\n"
        "from src.models.spanet import SPANet\n"
        "torch.set_num_threads(1); torch.manual_seed(0)\n"
        "net = SPANet(variant='b_a').eval(); x = torch.rand(1, 3, 192, 384)\n"
        "with torch.inference_mode():\n"
        "    net(x); r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt; net(x)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)\n"
    )
    faults = {}
    for keep in ("0", "1"):
        env = dict(os.environ, SPANET_KEEP_HEAP=keep, OMP_NUM_THREADS="1")
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT)
        assert res.returncode == 0, res.stderr[-2000:]
        faults[keep] = int(res.stdout.split()[-1])
    assert faults["1"] * 4 < faults["0"], faults
