"""DRSformer with and without its feature compensator (src/models/drsformer.py, drsformer_spa.py) against the
authors' two architecture files (fixtures in tests/fixtures/official/drsformer{,_spa}, written by
tests/fixtures/make_official_drsformer.py from cschenxiang/DRSformer), and sizes. Their padding rule is
Restormer's (tests/models/test_restormer.py)."""

from __future__ import annotations

import logging
import math

import pytest

from src.models.drsformer import DRSformer
from src.models.drsformer_spa import DRSformerSPA
from src.runs.evaluation import evaluate_checkpoint
from src.train import train
from src.utils.checkpoint import IncompleteWeightsError, init_weights
from src.utils.errors import Refusal
from tests.conftest import TINY_SYNTHETIC, compose_cfg
from tests.inference.conftest import run_predict
from tests.models import official_fixtures as of

TARGETS = {"drsformer": "src.models.drsformer.DRSformer", "drsformer_spa": "src.models.drsformer_spa.DRSformerSPA"}


@pytest.mark.parametrize("model", sorted(TARGETS))
def test_reproduces_the_authors_test_script(model, tmp_path):
    of.assert_reproduces_the_authors(model, model, TARGETS[model], tmp_path)


def test_spa_weights_in_the_mefc_network_leave_the_compensators_unloaded():
    # what the authors' test.py does with their SPA-Data weights; init_from reports it, model=drsformer_spa fits
    args = dict(dim=2, num_blocks=[1, 1, 1, 1], heads=[1, 1, 2, 2], ffn_expansion_factor=1.33, bias=True)
    report = init_weights(DRSformer(**args), of.FIXTURES / "drsformer_spa" / "weights.pth")
    assert report["missing"] and all(k.startswith(("encoder_level0.", "refinement.")) for k in report["missing"])
    assert not report["unexpected"]


def _mefc_tensors() -> int:
    """Tensors of the fixture-sized DRSformer that its SPA-Data variant does not have."""
    args = of.meta("drsformer_spa")["net"]
    return len(set(DRSformer(**args).state_dict()) - set(DRSformerSPA(**args).state_dict()))


def test_predict_and_eval_refuse_spa_weights_in_the_mefc_network(tmp_path):
    """model=drsformer with the SPA-Data file would leave both compensators random: refused before anything is
    written, naming the file, the count, a few tensors and model=drsformer_spa."""
    weights = of.FIXTURES / "drsformer_spa" / "weights.pth"
    message = (
        rf"model.init_from={weights}: {_mefc_tensors()} of the network's \d+ tensors are not in the file and "
        r"would keep their random initial values \(encoder_level0\.[^)]+, \.\.\. \(\d+ more\)\); this looks "
        r"like the authors' SPA-Data or Rain200L weights, trained without MEFC: use model=drsformer_spa"
    )
    out = tmp_path / "out"
    with pytest.raises(IncompleteWeightsError, match=message) as refused:
        run_predict(
            tmp_path,
            [
                *of.with_weights("drsformer_spa", "drsformer"),
                f"input={of.FIXTURES / 'drsformer_spa' / 'input'}",
                f"output={out}",
            ],
        )
    assert isinstance(refused.value, Refusal) and not out.exists()
    cfg = compose_cfg(
        "eval", [*of.with_weights("drsformer_spa", "drsformer"), "data=synthetic", *TINY_SYNTHETIC], tmp_path / "eval"
    )
    with pytest.raises(IncompleteWeightsError, match=message):
        evaluate_checkpoint(cfg)
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_training_from_spa_weights_in_the_mefc_network_loads_what_fits_and_warns(train_cfg, caplog):
    cfg = train_cfg(*of.with_weights("drsformer_spa", "drsformer"), "debug=fdr")
    with caplog.at_level(logging.WARNING, logger="src.utils.checkpoint"):
        result = train(cfg)
    assert f"{_mefc_tensors()} tensors not in the file keep their initial values: encoder_level0." in caplog.text
    assert math.isfinite(result["test"]["mean"]["y_matlab"]["psnr"])


def test_parameter_counts():
    assert of.default_parameter_count("drsformer") == 33_655_424
    assert of.default_parameter_count("drsformer_spa") == 32_610_304
    assert sum(p.numel() for p in of.small_net("drsformer").parameters()) == 111_146
    assert sum(p.numel() for p in of.small_net("drsformer_spa").parameters()) == 87_882


@pytest.mark.parametrize("model", sorted(TARGETS))
def test_any_size_and_batch(model):
    of.check_any_size(of.small_net(model))


@pytest.mark.parametrize("model", sorted(TARGETS))
def test_tiled_prediction_runs(model, tmp_path):
    of.tiled_prediction(model, model, tmp_path)
