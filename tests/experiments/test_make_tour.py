"""experiments/make_tour.py: the derained-example figure (scores against an independent scoring, layout at the
image's own resolution), the PNG size budget, and the committed pictures of README's tour."""

from __future__ import annotations

import json

import imageio.v3 as iio
import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from src.metrics.protocols import score_all
from src.models.spanet import SPANet
from tests.conftest import ROOT, load_experiment_script

matplotlib.use("Agg")
make_tour = load_experiment_script("make_tour")


def test_derain_figure_scores_and_layout(tmp_path):
    torch.manual_seed(0)
    net = SPANet(variant="b_f", channels=8, irnn_backend="torch").eval()
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.2, 0.8, size=(40, 56, 3)).astype(np.float32)
    rainy = np.clip(clean + (rng.uniform(size=(40, 56, 1)) > 0.9) * 0.5, 0, 1).astype(np.float32)
    scores = make_tour.derain_figure(net, rainy, tmp_path / "fig.png", clean, caption="a caption")

    x, y = (torch.from_numpy(a.transpose(2, 0, 1).copy())[None] for a in (rainy, clean))
    with torch.no_grad():
        out = net(x)["out"]
    for name, image in (("rain", x), ("derained", out)):
        expected = score_all(image, y)["spanet"]
        assert scores[name] == pytest.approx({"psnr": float(expected["psnr"]), "ssim": float(expected["ssim"])})
    png = iio.imread(tmp_path / "fig.png")
    # 2 x 2 panels of 56 x 40 at their own resolution, 12-pixel gaps, 34-pixel titles, one caption line
    assert png.shape[:2] == (2 * (40 + 34) + 12 + 21, 2 * 56 + 3 * 12)
    # the ground-truth panel (bottom right) holds the clean image pixel for pixel (full colour: it fits)
    top, left = 2 * 34 + 40, 2 * 12 + 56
    panel = png[top : top + 40, left : left + 56, :3].astype(int)
    assert np.abs(panel - np.round(clean * 255)).max() <= 1

    # without ground truth: rain | derained | attention in one row, no scores
    assert make_tour.derain_figure(net, rainy, tmp_path / "own.png") == {}
    assert iio.imread(tmp_path / "own.png").shape[:2] == (40 + 34 + 12, 3 * 56 + 4 * 12)


def test_png_budget(tmp_path):
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4, 4), dpi=100)
    fig.figimage(np.random.default_rng(1).uniform(size=(400, 400, 3)))  # noise: ~480 KB as a full-colour PNG
    size = make_tour.save_png(fig, tmp_path / "noise.png", max_bytes=300_000)
    assert size == (tmp_path / "noise.png").stat().st_size <= 300_000
    assert Image.open(tmp_path / "noise.png").mode == "P"  # fell back to a 256-colour palette
    with pytest.raises(ValueError, match="even as a 256-colour PNG"):
        make_tour.save_png(fig, tmp_path / "tiny.png", max_bytes=1000)
    plt.close(fig)


def test_table_chart_of_a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    for i, (model, psnr) in enumerate((("b_a", 20.0), ("b_f", 21.0))):
        per_image = {n: {"spanet": {"psnr": psnr + d, "ssim": 0.8}} for n, d in (("a", -0.5), ("b", 0.5))}
        record = {
            "model": model,
            "data": "synthetic",
            "schedule": "quick",
            "seed": 1,
            "global_step": 20,
            "test": {"n_images": 2, "mean": {"spanet": {"psnr": psnr, "ssim": 0.8}}, "per_image": per_image},
        }
        (sweep / str(i)).mkdir(parents=True)
        (sweep / str(i) / "metrics.json").write_text(json.dumps(record))
    markdown = make_tour.table_chart(sweep, tmp_path / "chart.png")
    assert "| b_a | 1 | 20.00 |" in markdown and "Δ PSNR vs b_f" in markdown
    assert iio.imread(tmp_path / "chart.png").shape[1] > 500
    assert not (sweep / "chart.png").exists()  # the sweep folder is left as it was


@pytest.mark.parametrize("name", ["tour_derain.png", "tour_table4_smoke.png"])
def test_committed_tour_pictures(name):
    path = ROOT / "docs" / "img" / name
    assert path.stat().st_size < 300_000, f"{path}: keep README's pictures under 300 KB"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"docs/img/{name}" in (ROOT / "README.md").read_text()


def test_tour_command_with_the_released_weights(tmp_path):
    weights = ROOT / "weights" / "spanet_release.pt"
    if not weights.is_file():
        pytest.skip("weights/spanet_release.pt not present")
    make_tour.main(["--skip-sweep", "--out", str(tmp_path), "--long-side", "64"])
    png = iio.imread(tmp_path / "tour_derain.png")
    assert png.shape[1] == 2 * 64 + 3 * 12  # chelsea at 64 x 43: two panels per row
    with pytest.raises(SystemExit):
        make_tour.main(["--skip-sweep", "--out", str(tmp_path), "--weights", str(tmp_path / "missing.pt")])
