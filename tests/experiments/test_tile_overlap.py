"""experiments/tile_overlap.py (the numbers behind tile=auto's overlaps) on a user's own image pairs: the PSNRs it
reports are those of the network's whole and tiled outputs, recomputed here with scikit-image."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio

from src.inference.tiling import tiled_forward
from tests.conftest import load_experiment_script
from tests.inference.conftest import RELEASE


def _pair(tmp_path):
    clean = skdata.astronaut()[100:196, 150:278]
    streaks = (np.random.default_rng(0).random(clean.shape[:2]) > 0.97)[..., None] * 60
    rain = np.clip(clean.astype(int) + streaks, 0, 255).astype(np.uint8)
    iio.imwrite(tmp_path / "rain.png", rain)
    iio.imwrite(tmp_path / "clean.png", clean)
    return f"{tmp_path / 'rain.png'}:{tmp_path / 'clean.png'}", rain, clean


def _recomputed(net, rain, clean, tile, overlap):
    x = torch.from_numpy(rain.astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.inference_mode():
        whole = net(x)["out"][0].clamp(0, 1).permute(1, 2, 0).numpy()
        tiled = tiled_forward(net, x, tile, overlap, batch_size=4)["out"][0].clamp(0, 1).permute(1, 2, 0).numpy()
    ref = clean.astype(np.float32) / 255
    return peak_signal_noise_ratio(ref, whole, data_range=1), peak_signal_noise_ratio(ref, tiled, data_range=1)


def test_own_pairs_and_the_overlap_chosen(tmp_path):
    script = load_experiment_script("tile_overlap")
    spec, rain, clean = _pair(tmp_path)
    (result,) = script.main(["--models", "b_a", "--pairs", spec, "--tile", "64", "--overlaps", "8", "16"])
    net = script.build("b_a")
    whole, tiled = _recomputed(net, rain, clean, 64, 8)
    assert result["psnr_whole"]["rain.png"] == pytest.approx(whole, abs=1e-3)
    assert result["rows"][0]["overlap"] == 8
    assert result["rows"][0]["deltas_db"][0] == pytest.approx(tiled - whole, abs=1e-3)
    assert result["chosen"] == 8 and len(result["rows"]) == 1  # a local network: the first overlap passes


def test_weights_and_refusals(tmp_path):
    script = load_experiment_script("tile_overlap")
    spec, _, _ = _pair(tmp_path)
    with pytest.raises(SystemExit, match="RAIN:CLEAN"):
        script.main(["--models", "b_a", "--pairs", str(tmp_path / "rain.png")])
    with pytest.raises(SystemExit, match=r"error: .*missing\.png: cannot read image \(file not found\)"):
        script.main(["--models", "b_a", "--pairs", f"{tmp_path / 'missing.png'}:{tmp_path / 'clean.png'}"])
    iio.imwrite(tmp_path / "small.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SystemExit, match="small.png"):
        script.main(["--models", "b_a", "--pairs", f"{tmp_path / 'rain.png'}:{tmp_path / 'small.png'}"])
    if not RELEASE.is_file():
        pytest.skip("weights/spanet_release.pt not present")
    release = script.build("spanet_release", str(RELEASE))
    shipped = script.build("spanet_release")
    for a, b in zip(release.state_dict().values(), shipped.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
