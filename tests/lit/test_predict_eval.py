"""src.predict (derain a folder with a checkpoint) and src.eval pred_dir= (score any method's outputs)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from skimage import data as skdata

from src.eval import main as eval_main  # noqa: F401  (entry point importable)
from src.metrics import score_all
from src.models.spanet import SPANet
from src.predict import predict
from src.runs.evaluation import evaluate_folder
from src.utils.checkpoint import load_net_weights
from src.utils.image_io import ImageReadError
from tests.conftest import ROOT, compose_cfg

RELEASE = ROOT / "weights" / "spanet_release.pt"


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    rgb = skdata.astronaut()[100:137, 200:251]  # 37 x 51, odd sizes
    iio.imwrite(d / "rgb.png", rgb)
    iio.imwrite(d / "grey.png", skdata.camera()[:29, :33])
    rgba = np.dstack([skdata.coffee()[:20, :24], np.full((20, 24), 128, np.uint8)])
    iio.imwrite(d / "rgba.png", rgba)
    return d


def test_predict_with_release_weights_writes_expected_files(tmp_path, inputs, caplog):
    """model=spanet_release with no path: the weights shipped in weights/."""
    cfg = compose_cfg(
        "predict",
        [
            "model=spanet_release",
            f"paths.root_dir={ROOT}",
            f"input={inputs}",
            f"output={tmp_path / 'out'}",
            "save_raw=true",
            "device=cpu",
        ],
        tmp_path,
    )
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
    cfg = compose_cfg(
        "predict",
        [
            "model=spanet_release",
            f"ckpt_path={copy}",
            "paths.root_dir=/nonexistent",
            f"input={inputs}",
            f"output={tmp_path / 'out'}",
        ],
        tmp_path,
    )
    with pytest.raises(ImageReadError, match="broken.png"):
        predict(cfg)
    GlobalHydra.instance().clear()
    assert (tmp_path / "out" / "rgb.png").is_file()  # the readable ones were still derained


def test_eval_pred_dir_scores_folder_against_gt(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    rng = np.random.default_rng(0)
    truth = {f"{i:03d}": skdata.chelsea()[i * 10 : i * 10 + 40, :48] for i in range(3)}
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


def _rain_and_gt(tmp_path, n=3):
    rain, gt = tmp_path / "rain", tmp_path / "gt"
    rain.mkdir(), gt.mkdir()
    rng = np.random.default_rng(1)
    for k in range(n):
        clean = skdata.chelsea()[k * 20 : k * 20 + 36, 40:84]
        iio.imwrite(gt / f"{k:03d}.png", clean)
        iio.imwrite(
            rain / f"{k:03d}.png",
            np.clip(clean + (rng.random(clean.shape[:2]) < 0.05)[..., None] * 90, 0, 255).astype(np.uint8),
        )
    return rain, gt


def _scores(pred_file, gt_file):
    p = torch.from_numpy(iio.imread(pred_file).transpose(2, 0, 1) / 255.0)[None]
    g = torch.from_numpy(iio.imread(gt_file).transpose(2, 0, 1) / 255.0)[None]
    return score_all(p, g)


def test_predict_then_eval_of_its_folder_scores_exactly_the_derained_images(tmp_path, caplog):
    from src.runs.evaluation import evaluate
    from tests.inference.conftest import make_checkpoint

    rain, gt = _rain_and_gt(tmp_path)
    out = tmp_path / "out"
    ckpt = make_checkpoint(tmp_path / "spanet.ckpt")
    predict(
        compose_cfg(
            "predict",
            [
                f"ckpt_path={ckpt}",
                f"input={rain}",
                f"gt={gt}",
                f"output={out}",
                "compare=true",
                "save_raw=true",
                "device=cpu",
                "progress=false",
            ],
            tmp_path / "p",
        )
    )
    assert (out / "000.npy").is_file() and (out / "attention" / "000.png").is_file()
    with caplog.at_level("INFO"):
        evaluate(
            compose_cfg("eval", [f"pred_dir={out}", f"gt_dir={gt}", "num_workers=0", "progress=false"], tmp_path / "e")
        )
    GlobalHydra.instance().clear()
    report = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert (report["n_images"], report["n_expected"], report["n_left_out"], report["complete"]) == (3, 3, 6, True)
    assert "left out 6 side file(s) of src.predict (attention/, compare/" in caplog.text
    for name in ("000", "001", "002"):
        expected = _scores(out / f"{name}.png", gt / f"{name}.png")
        assert report["per_image"][name]["spanet"]["psnr"] == pytest.approx(float(expected["spanet"]["psnr"][0]))
    # the names of earlier versions of src.predict (<stem>_att.png, <stem>_compare.png) are recognised too
    old = tmp_path / "old"
    old.mkdir()
    for name in ("000", "001", "002"):
        for suffix, src in (
            ("", f"{name}.png"),
            ("_att", f"attention/{name}.png"),
            ("_compare", f"compare/{name}.png"),
        ):
            (old / f"{name}{suffix}.png").write_bytes((out / src).read_bytes())
    report = evaluate_folder(compose_cfg("eval", [f"pred_dir={old}", f"gt_dir={gt}", "num_workers=0"], tmp_path))
    GlobalHydra.instance().clear()
    assert (report["output"]["n_images"], report["output"]["n_left_out"]) == (3, 6)


def _cli(module, args, tmp_path, name):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", WANDB_MODE="offline", HYDRA_FULL_ERROR="0")
    return subprocess.run(
        [sys.executable, "-m", module, *args, f"hydra.run.dir={tmp_path / 'runs' / name}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _refused(proc, message):
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert message in errors[0], errors[0]


@pytest.mark.slow
def test_refusals_are_one_error_line_and_exit_status_2(tmp_path):
    """The entry points as users run them: a refusal prints one error line, exits 2 and writes nothing."""
    from tests.inference.conftest import make_checkpoint

    rain, gt = _rain_and_gt(tmp_path, n=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "000.png").write_bytes(b"mine")
    ckpt = make_checkpoint(tmp_path / "spanet.ckpt")
    GlobalHydra.instance().clear()
    _refused(
        _cli("src.predict", [f"ckpt_path={ckpt}", f"input={rain}", f"output={out}", "device=cpu"], tmp_path, "p"),
        "1 output file(s) exist already (pass overwrite=true to replace them)",
    )
    assert (out / "000.png").read_bytes() == b"mine"

    # a metrics_file another eval is writing now: refused, nothing written; both ckpt_path and pred_dir: refused
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        from src.utils.claim import OutputClaim, _start_ticks

        claim = OutputClaim.for_file(tmp_path / "m.json").path
        claim.write_text(
            json.dumps({"host": socket.gethostname(), "pid": holder.pid, "start": _start_ticks(holder.pid)})
        )
        _refused(
            _cli(
                "src.eval",
                [
                    f"pred_dir={gt}",
                    f"gt_dir={gt}",
                    f"metrics_file={tmp_path / 'm.json'}",
                    "num_workers=0",
                    "overwrite=true",
                ],
                tmp_path,
                "e1",
            ),
            f"output file {tmp_path / 'm.json'} is being written by pid {holder.pid}",
        )
        assert not (tmp_path / "m.json").exists()
    finally:
        holder.kill()
        holder.wait()
    _refused(
        _cli("src.eval", [f"ckpt_path={ckpt}", f"pred_dir={gt}"], tmp_path, "e2"),
        "give one of ckpt_path=FILE or pred_dir=DIR, not both",
    )
