"""Tiled inference: tile placement, blending weights, equality with whole-image inference, tile=auto."""

from __future__ import annotations

import json

import pytest
import torch
from skimage import data as skdata

from src.inference import engine, tiling
from src.inference.engine import Derainer
from src.inference.tiling import axis_weights, tile_starts, tiled_forward
from src.models.spanet import SPANet
from tests.inference.conftest import RELEASE, needs_release, to_tensor


@pytest.mark.parametrize(
    "length,tile,overlap", [(10, 16, 4), (17, 16, 4), (100, 32, 8), (257, 64, 32), (1000, 256, 128), (65, 32, 16)]
)
def test_tiles_cover_the_axis_with_at_least_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    assert starts[0] == 0 and starts[-1] + size == length
    assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))  # neighbours share >= overlap
    assert all(b > a for a, b in zip(starts, starts[1:]))
    weights = axis_weights(length, tile, starts)
    total = torch.zeros(length)
    for s, w in zip(starts, weights):
        total[s : s + size] += w
    torch.testing.assert_close(total, torch.ones(length))  # a partition of unity: blending keeps the scale
    for i, (s, w) in enumerate(zip(starts, weights)):  # no weight near a cut edge (inside the image)
        if i > 0:
            band = starts[i - 1] + size - s
            assert w[: band // 4].abs().max() == 0
        if i < len(starts) - 1:
            band = s + size - starts[i + 1]
            assert w[size - band // 4 :].abs().max() == 0 if band >= 4 else True


def test_bad_tile_settings_are_refused():
    with pytest.raises(ValueError, match="tile_overlap=32 must be smaller than tile=32"):
        tile_starts(100, 32, 32)


def _single_tile_mask(h, w, tile, overlap):
    """Pixels that lie in no overlap band (they come from one tile alone)."""

    def axis(length):
        starts, size = tile_starts(length, tile, overlap), min(tile, length)
        band = torch.zeros(length, dtype=torch.bool)
        for a, b in zip(starts, starts[1:]):
            band[b : a + size] = True
        return band

    return ~(axis(h)[:, None] | axis(w)[None, :])


@pytest.mark.parametrize("tile,overlap", [(96, 64), (64, 32)])
def test_tiled_spanet_equals_whole_image_away_from_seams(tile, overlap):
    torch.manual_seed(0)
    net = SPANet(channels=16).eval()
    img = skdata.astronaut()[140:270, 180:300]  # 130 x 120: 2 x 2 or 3 x 3 tiles
    x = to_tensor(img)
    with torch.inference_mode():
        whole = net(x)
        tiled = tiled_forward(net, x, tile, overlap, batch_size=3)
    diff = (tiled["out"] - whole["out"]).abs()[0].amax(0)
    att_diff = (tiled["att"][0] - whole["att"][0]).abs()[0, 0]
    single = _single_tile_mask(130, 120, tile, overlap)
    assert single.float().mean() > 0.05 and (~single).any()
    assert diff[single].max() <= 1e-5 and att_diff[single].max() <= 1e-5  # float rounding only
    assert diff.max() <= 1e-3 and att_diff.max() <= 1e-3  # near the seams too


@needs_release
def test_tiled_release_stays_close_to_whole_image():
    """The released weights' IRNN carries information across the whole image (recurrent weights up to 0.998),
    so tiles cannot reproduce whole-image output exactly; README documents how close they get."""
    from src.utils.checkpoint import load_net_weights

    net = load_net_weights(SPANet(variant="b_d"), RELEASE).eval()
    x = to_tensor(skdata.astronaut()[:256, 128:384])
    with torch.inference_mode():
        whole = net(x)["out"].clamp(0, 1)
        tiled = tiled_forward(net, x, 192, 128, batch_size=4)["out"].clamp(0, 1)
    psnr = -10 * torch.log10((tiled - whole).pow(2).mean())
    assert psnr > 35


def test_derainer_auto_tile_runs_whole_images_that_fit_and_tiles_those_that_do_not(monkeypatch):
    torch.manual_seed(0)
    from src.lit.module import DerainModule

    module = DerainModule(SPANet(channels=8), torch.nn.L1Loss()).eval()
    d = Derainer(module, torch.device("cpu"), tile="auto", tile_overlap=99)
    monkeypatch.setattr(engine, "cached_bytes_per_pixel", lambda *a, **k: (1000.0, True))
    monkeypatch.setitem(tiling.MEASURED_OVERLAP, "SPANet", 32)  # tile=auto's overlap, not tile_overlap
    monkeypatch.setattr(engine, "free_memory", lambda device: 2 * 1000 * 100 * 100)  # 100 x 100 px fit
    assert d.tile_for(1, 90, 100) is None
    assert d.tile_for(1, 200, 100) == 128  # sqrt(10000) = 100 -> the 128-pixel minimum
    monkeypatch.setattr(engine, "free_memory", lambda device: 2 * 1000 * 300 * 300)
    assert d.tile_for(1, 400, 500) == 288  # largest multiple of 16 <= 300
    assert d.tile_for(4, 200, 200) is None or d.tile_for(1, 200, 200) is None
    x = to_tensor(skdata.astronaut()[:160, :150])
    monkeypatch.setattr(engine, "free_memory", lambda device: 2 * 1000 * 128 * 128)
    res = d.derain(x)
    assert res["tile"] == 128
    with torch.inference_mode():
        whole = module.predict_full(x)
    torch.testing.assert_close(res["out"], whole["out"], atol=1e-3, rtol=0)


def test_bytes_per_pixel_measures_at_least_one_feature_map():
    if not tiling.Path("/proc/self/clear_refs").exists():
        pytest.skip("peak-RSS reset needs Linux /proc")
    torch.manual_seed(0)
    net = SPANet(channels=32).eval()
    with torch.inference_mode():
        bpp = tiling.bytes_per_pixel(net, torch.device("cpu"))
    assert 32 * 4 <= bpp < 20000  # one float32 32-channel map per pixel at least; far below 20 kB


def test_half_precision_needs_cuda():
    from src.lit.module import DerainModule

    module = DerainModule(SPANet(channels=8), torch.nn.L1Loss()).eval()
    with pytest.raises(ValueError, match="half=true needs a CUDA device"):
        Derainer(module, torch.device("cpu"), half=True)


@pytest.mark.gpu
def test_half_precision_on_gpu_is_close_to_float32():
    from src.lit.module import DerainModule

    torch.manual_seed(0)
    module = DerainModule(SPANet(channels=16), torch.nn.L1Loss()).eval().cuda()
    x = to_tensor(skdata.astronaut()[:96, :96])
    full = Derainer(module, torch.device("cuda"), tile=None).derain(x)["out"]
    half = Derainer(module, torch.device("cuda"), tile=None, half=True).derain(x)["out"]
    assert half.dtype == torch.float32 and (half - full).abs().max() < 2e-2
    tiled = Derainer(module, torch.device("cuda"), tile=64, tile_overlap=32).derain(x)["out"]
    assert (tiled - full).abs().max() < 1e-3


# --- tile=auto: the measured overlap, the cached memory probe, the reason it gives ---------------------------------
def test_auto_overlap_by_variant_then_class_then_default(monkeypatch):
    monkeypatch.setattr(tiling, "MEASURED_OVERLAP", {"SPANet:b_d": 200, "SPANet": 100})
    assert tiling.network_key(SPANet("b_d", channels=8)) == "SPANet:b_d"
    assert tiling.auto_overlap(SPANet("b_d", channels=8)) == 200
    assert tiling.auto_overlap(SPANet("b_a", channels=8)) == 100
    assert tiling.auto_overlap(torch.nn.Conv2d(3, 3, 3)) == tiling.DEFAULT_OVERLAP


def test_memory_probe_is_cached_per_network_and_code(monkeypatch, tmp_path):
    measured = []
    monkeypatch.setattr(tiling, "bytes_per_pixel", lambda *a, **k: measured.append(1) or 500.0 + len(measured))
    cache = tmp_path / "probe.json"
    cpu = torch.device("cpu")
    net = SPANet("b_a", channels=8)
    assert tiling.cached_bytes_per_pixel(net, net, cpu, cache=cache) == (501.0, False)  # miss: measured
    assert tiling.cached_bytes_per_pixel(net, net, cpu, cache=cache) == (501.0, True)  # hit: read from disk
    assert len(measured) == 1
    other = SPANet("b_d", channels=8)
    assert tiling.cached_bytes_per_pixel(other, other, cpu, cache=cache) == (502.0, False)  # another network
    monkeypatch.setitem(tiling._CODE_HASH, "code", "edited")  # a code change: every probe is measured again
    assert tiling.cached_bytes_per_pixel(net, net, cpu, cache=cache) == (503.0, False)
    assert len(json.loads(cache.read_text())) == 3
    cache.write_text("{not json")  # a damaged cache is measured over, not trusted
    assert tiling.cached_bytes_per_pixel(net, net, cpu, cache=cache) == (504.0, False)


def test_probe_key_names_network_device_and_code():
    key = tiling.probe_key(SPANet("b_d", channels=8), torch.device("cpu"), torch.float32)
    assert key.startswith("SPANet:b_d|") and "|cpu|torch.float32|" in key and torch.__version__ in key


def test_auto_tile_logs_its_choice_and_why_once_per_size(monkeypatch, caplog):
    from src.lit.module import DerainModule

    torch.manual_seed(0)
    module = DerainModule(SPANet(channels=8), torch.nn.L1Loss()).eval()
    d = Derainer(module, torch.device("cpu"), label="net", tile="auto")
    monkeypatch.setattr(engine, "cached_bytes_per_pixel", lambda *a, **k: (1000.0, True))
    monkeypatch.setitem(tiling.MEASURED_OVERLAP, "SPANet", 32)
    monkeypatch.setattr(engine, "free_memory", lambda device: 2 * 1000 * 128 * 128)
    x = to_tensor(skdata.astronaut()[:160, :150])
    with caplog.at_level("INFO", logger="src.inference.engine"):
        assert d.derain(x)["tile"] == 128
        d.derain(x)
    lines = [r.getMessage() for r in caplog.records if "160" in r.getMessage()]
    assert lines == [
        "net, 150x160: tiles of 128 px with overlap 32 (measured for SPANet with random weights: tiles within "
        "0.1 dB of whole images): whole needs 0.02 GB at 1000 B/px, 0.02 GB is 0.5 of the free memory"
    ]
    monkeypatch.setattr(engine, "free_memory", lambda device: 10**12)
    assert d.plan(1, 4000, 3000) == (
        None,
        32,
        "whole: needs 12.00 GB at 1000 B/px, 500.00 GB is 0.5 of the free memory",
    )
    monkeypatch.delitem(tiling.MEASURED_OVERLAP, "SPANet")
    monkeypatch.setattr(engine, "free_memory", lambda device: 2 * 1000 * 128 * 128)
    assert d.plan(1, 160, 300)[2].startswith(
        "tiles of 192 px with overlap 128 (the default: no overlap measured for SPANet:b_f)"
    )
