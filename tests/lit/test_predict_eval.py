"""src.predict (derain a folder with a checkpoint) and src.eval pred_dir= (score any method's outputs)."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from skimage import data as skdata

from src.utils.image_io import ImageReadError
from src.eval import main as eval_main  # noqa: F401  (entry point importable)
from src.eval import evaluate_folder
from src.metrics import score_all
from src.predict import predict
from src.models.spanet import SPANet
from src.utils.checkpoint import load_net_weights
from tests.conftest import ROOT, compose_cfg

RELEASE = ROOT / "weights" / "spanet_release.pt"


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    rgb = skdata.astronaut()[100:137, 200:251]           # 37 x 51, odd sizes
    iio.imwrite(d / "rgb.png", rgb)
    iio.imwrite(d / "grey.png", skdata.camera()[:29, :33])
    rgba = np.dstack([skdata.coffee()[:20, :24], np.full((20, 24), 128, np.uint8)])
    iio.imwrite(d / "rgba.png", rgba)
    return d


def test_predict_with_release_weights_writes_expected_files(tmp_path, inputs, caplog):
    """model=spanet_release with no path: the weights shipped in weights/."""
    cfg = compose_cfg("predict", ["model=spanet_release", f"paths.root_dir={ROOT}", f"input={inputs}",
                                  f"output={tmp_path / 'out'}", "save_raw=true", "device=cpu"], tmp_path)
    with caplog.at_level("INFO"):
        predict(cfg)
    GlobalHydra.instance().clear()
    out = tmp_path / "out"
    assert "grayscale" in caplog.text and "alpha channel dropped" in caplog.text
    net = load_net_weights(SPANet("b_d", irnn_backend="torch"), RELEASE).eval()
    x = torch.from_numpy(iio.imread(inputs / "rgb.png").astype(np.float32).transpose(2, 0, 1) / 255)[None]
    with torch.no_grad():
        ref = net(x)
    raw = np.load(out / "rgb.npy")
    assert raw.shape == (37, 51, 3) and raw.dtype == np.float32
    np.testing.assert_allclose(raw, ref["out"][0].numpy().transpose(1, 2, 0), atol=1e-4)
    png = iio.imread(out / "rgb.png")
    assert png.dtype == np.uint8 and np.array_equal(png, (np.clip(raw, 0, 1) * 255).round().astype(np.uint8))
    att = np.load(out / "attention" / "rgb.npy")
    np.testing.assert_allclose(att, ref["att"][0][0, 0].numpy(), atol=1e-4)
    assert iio.imread(out / "attention" / "rgb.png").shape == (37, 51, 3)
    assert iio.imread(out / "grey.png").shape == (29, 33, 3) and (out / "rgba.png").is_file()


def test_predict_names_unreadable_files(tmp_path, inputs):
    """ckpt_path= a copy of the release elsewhere works too (and is the only file read)."""
    (inputs / "broken.png").write_bytes(iio.imread(inputs / "rgb.png").tobytes()[:100])
    copy = tmp_path / "elsewhere" / "release_copy.pt"
    copy.parent.mkdir()
    copy.write_bytes(RELEASE.read_bytes())
    cfg = compose_cfg("predict", ["model=spanet_release", f"ckpt_path={copy}", "paths.root_dir=/nonexistent",
                                  f"input={inputs}",
                                  f"output={tmp_path / 'out'}"], tmp_path)
    with pytest.raises(ImageReadError, match="broken.png"):
        predict(cfg)
    GlobalHydra.instance().clear()
    assert (tmp_path / "out" / "rgb.png").is_file()  # the readable ones were still derained


def test_eval_pred_dir_scores_folder_against_gt(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    rng = np.random.default_rng(0)
    truth = {f"{i:03d}": skdata.chelsea()[i * 10: i * 10 + 40, :48] for i in range(3)}
    for name, img in truth.items():
        iio.imwrite(gt / f"{name}.png", img)
        noisy = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        iio.imwrite(pred / f"{name}.png", noisy)
    cfg = compose_cfg("eval", [f"pred_dir={pred}", f"gt_dir={gt}"], tmp_path)
    report = evaluate_folder(cfg)["output"]
    GlobalHydra.instance().clear()
    assert report["n_images"] == 3
    for name in truth:
        p = torch.from_numpy(iio.imread(pred / f"{name}.png").transpose(2, 0, 1) / 255.0)[None]
        g = torch.from_numpy(iio.imread(gt / f"{name}.png").transpose(2, 0, 1) / 255.0)[None]
        expected = score_all(p, g)
        for proto, vals in expected.items():
            assert report["per_image"][name][proto]["psnr"] == pytest.approx(float(vals["psnr"][0]), abs=1e-6)
    (pred / "001.png").unlink()
    with pytest.raises(ValueError, match="001"):
        evaluate_folder(compose_cfg("eval", [f"pred_dir={pred}", f"gt_dir={gt}"], tmp_path))
    GlobalHydra.instance().clear()
