"""Restormer (src/models/restormer.py) against the authors' code (fixtures in tests/fixtures/official/restormer,
written by tests/fixtures/make_official_restormer.py from swz30/Restormer), its padding rule and sizes. The rule
lives in Restormer.forward, which DRSformer inherits: it is checked here for both."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from src.models.restormer import Restormer
from tests.models import official_fixtures as of


def test_reproduces_the_authors_test_script(tmp_path):
    # python -m src.predict model=restormer model.net.dim=4 ... model.init_from=<their format> save_raw=true
    of.assert_reproduces_the_authors("restormer", "restormer", "src.models.restormer.Restormer", tmp_path)


def test_bias_free_layer_norm_equals_the_authors(tmp_path):
    # the same file in LayerNorm_type=BiasFree (their denoising configs): the layer-norm biases are left over
    diffs = of.predict_matches("restormer", "restormer", tmp_path, "expected_biasfree", {"LayerNorm_type": "BiasFree"})
    assert max(diffs.values()) < 1e-4, diffs


def test_parameter_counts():
    assert of.default_parameter_count("restormer") == 26_126_644  # the authors' deraining size
    assert sum(p.numel() for p in of.small_net("restormer").parameters()) == 56_077
    with torch.device("meta"):
        assert sum(p.numel() for p in Restormer(inp_channels=6, dual_pixel_task=True).parameters()) == 26_132_548


@pytest.mark.parametrize("model", ["restormer", "drsformer", "drsformer_spa"])
@pytest.mark.parametrize("size", [(16, 21), (19, 16), (16, 24), (13, 11)])
def test_reflect_pads_to_a_multiple_of_8_only_where_needed(model, size):
    h, w = size
    of.assert_pads_inside(model, size, lambda x: F.pad(x, (0, -w % 8, 0, -h % 8), mode="reflect"))


def test_padding_a_side_that_fits_would_change_the_output():
    net, x = of.small_net("restormer"), torch.rand(1, 3, 16, 21, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        both = net(F.pad(x, (0, 3, 0, 8), mode="reflect"))["out"][..., :16, :21]
        assert (both - net(x)["out"]).abs().max() > 1e-4  # so the rule above really pads only where needed


def test_any_size_and_batch():
    of.check_any_size(of.small_net("restormer"))


def test_dual_pixel_task_has_no_global_residual():
    torch.manual_seed(0)
    net = Restormer(
        inp_channels=6,
        dim=4,
        num_blocks=[1, 1, 1, 1],
        num_refinement_blocks=1,
        heads=[1, 1, 2, 2],
        dual_pixel_task=True,
    ).eval()
    assert "skip_conv.weight" in net.state_dict()
    with torch.no_grad():
        assert net(torch.rand(1, 6, 16, 16))["out"].shape == (1, 3, 16, 16)


def test_tiled_prediction_runs(tmp_path):
    of.tiled_prediction("restormer", "restormer", tmp_path)
