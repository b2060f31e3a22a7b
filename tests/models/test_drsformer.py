"""DRSformer with and without its feature compensator (src/models/drsformer.py, drsformer_spa.py) against the
authors' two architecture files (fixtures in tests/fixtures/official/drsformer{,_spa}, written by
tests/fixtures/make_official_drsformer.py from cschenxiang/DRSformer), and sizes. Their padding rule is
Restormer's (tests/models/test_restormer.py)."""

from __future__ import annotations

import pytest

from src.models.drsformer import DRSformer
from src.utils.checkpoint import init_weights
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
