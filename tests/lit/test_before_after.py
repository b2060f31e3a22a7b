"""The before/after picture of a run's test (src.lit.callbacks.BeforeAfterFigure) and the quickstart's recipe:
the authors' release fine-tuned with a cosine schedule (conf/experiment/quickstart.yaml)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from src.lit.callbacks import BEFORE_AFTER, BeforeAfterFigure
from src.metrics.figures import compare_figure
from src.metrics.protocols import to_uint8_image
from src.train import train
from tests.conftest import compose_cfg
from tests.inference.conftest import RELEASE, needs_release


def _fake_run(tmp_path: Path, with_attention: bool = True):
    """A test batch of two images, the second with more rain, as a test step sees it; reports name its scores."""
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, 20, 30, generator=g)
    noise = torch.randn(2, 3, 20, 30, generator=g) * torch.tensor([0.05, 0.3]).view(2, 1, 1, 1)
    batch = {"rain": clean + noise, "clean": clean, "name": ["light", "heavy"]}
    outputs = {"out": torch.rand(2, 3, 20, 30, generator=g) * 1.2 - 0.1}  # unclamped, like a network's
    if with_attention:
        outputs["vis"] = {"attention": torch.rand(2, 1, 20, 30, generator=g)}
    scores = {"rain": {"psnr": 11.5, "ssim": 0.25}, "derained": {"psnr": 13.25, "ssim": 0.5}}
    reports = {
        "test_input": {"per_image": {"heavy": {"spanet": scores["rain"]}}},
        "test": {"per_image": {"heavy": {"spanet": scores["derained"]}}},
    }
    trainer = SimpleNamespace(is_global_zero=True, loggers=[], default_root_dir=str(tmp_path), global_step=7)
    return batch, outputs, scores, trainer, SimpleNamespace(reports=reports)


def _big(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (H, W) in [0, 1] -> H x W [x C] float, each pixel a 6 x 6 block."""
    x = x.clamp(0, 1).numpy()
    x = x.transpose(1, 2, 0) if x.ndim == 3 else x
    return x.repeat(6, axis=0).repeat(6, axis=1)


@pytest.mark.parametrize("with_attention", [True, False])
def test_picture_is_the_rainiest_test_image_with_its_reported_scores(tmp_path, with_attention):
    batch, outputs, scores, trainer, module = _fake_run(tmp_path, with_attention)
    cb = BeforeAfterFigure(min_width=180)  # 30 px wide panels -> enlarged 6 times (wide enough for captions)
    cb.on_test_epoch_start(trainer, module)
    cb.on_test_batch_end(trainer, module, outputs, batch, 0)
    clean = batch["clean"][:1]  # a later batch with less rain than "heavy" does not replace it
    cb.on_test_batch_end(trainer, module, {"out": clean}, {"rain": clean + 0.1, "clean": clean, "name": ["later"]}, 1)
    cb.on_test_end(trainer, module)
    picture = iio.imread(tmp_path / "images" / BEFORE_AFTER)

    att = _big(outputs["vis"]["attention"][1, 0]) if with_attention else None
    expected, boxes = compare_figure(
        _big(batch["rain"][1]),
        _big(outputs["out"][1]),
        attention=att,
        gt=_big(batch["clean"][1]),
        scores=scores,
        protocol="spanet",
        title="Derained (heavy)",
    )
    np.testing.assert_array_equal(picture, expected)  # same panels, same captions (the reported scores)
    top, left, bottom, right = boxes["derained"]
    assert (bottom - top, right - left) == (120, 180)
    np.testing.assert_array_equal(
        picture[top:bottom:6, left:right:6], to_uint8_image(outputs["out"][1].clamp(0, 1).numpy().transpose(1, 2, 0))
    )
    assert ("attention" in boxes) == with_attention


def test_picture_without_scores_when_the_report_lacks_the_image(tmp_path):
    batch, outputs, _, trainer, module = _fake_run(tmp_path)
    module.reports = {}
    cb = BeforeAfterFigure(min_width=10)
    cb.on_test_batch_end(trainer, module, outputs, batch, 0)
    cb.on_test_end(trainer, module)
    expected, _ = compare_figure(
        batch["rain"][1].clamp(0, 1).numpy().transpose(1, 2, 0),
        outputs["out"][1].clamp(0, 1).numpy().transpose(1, 2, 0),
        attention=outputs["vis"]["attention"][1, 0].numpy(),
        gt=batch["clean"][1].numpy().transpose(1, 2, 0),
        title="Derained (heavy)",
    )
    np.testing.assert_array_equal(iio.imread(tmp_path / "images" / BEFORE_AFTER), expected)


def test_a_training_run_writes_the_picture_of_its_rainiest_test_image(train_cfg):
    cfg = train_cfg("model=b_a")
    result = train(cfg)
    picture = iio.imread(Path(cfg.paths.output_dir) / "images" / BEFORE_AFTER)
    rain_psnr = {name: scores["spanet"]["psnr"] for name, scores in result["test_input"]["per_image"].items()}
    datamodule = instantiate(cfg.data)
    datamodule.setup("test")
    rainiest = next(s for s in datamodule.test_set if s["name"] == min(rain_psnr, key=rain_psnr.get))
    rain = to_uint8_image(rainiest["rain"].numpy().transpose(1, 2, 0))
    factor = -(-384 // rain.shape[1])
    np.testing.assert_array_equal(picture[: rain.shape[0] * factor : factor, : rain.shape[1] * factor : factor], rain)


@needs_release
def test_quickstart_fine_tunes_the_release_with_a_cosine_schedule(tmp_path):
    from src.utils.checkpoint import read_checkpoint

    cfg = compose_cfg("train", ["experiment=quickstart", "schedule.max_steps=10"], tmp_path)
    assert cfg.run_info.model == "spanet" and cfg.model.net.variant == "b_f"  # the paper's SPANet
    module = instantiate(cfg.model)
    release = read_checkpoint(RELEASE).state_dict_for(module.net)
    for name, tensor in module.net.state_dict().items():  # every tensor starts from the release
        torch.testing.assert_close(tensor, release[name], rtol=0, atol=0)
    opt = module.configure_optimizers()
    optimizer, scheduler = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(3e-4) and all(a > b for a, b in zip(lrs, lrs[1:]))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0, abs=1e-12)  # decayed to 0 at max_steps


def test_unknown_protocol_is_refused():
    from src.utils.errors import ConfigValueError

    with pytest.raises(ConfigValueError, match=r"callbacks.before_after.protocol: 'psnr' is not one of"):
        BeforeAfterFigure(protocol="psnr")
