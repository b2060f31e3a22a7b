"""NAFNet (src/models/nafnet.py) against the authors' code (fixtures in tests/fixtures/official/nafnet, written by
tests/fixtures/make_official_nafnet.py from megvii-research/NAFNet), its padding rule and sizes."""

from __future__ import annotations

import pytest
import torch.nn.functional as F

from tests.models import official_fixtures as of


def test_reproduces_the_authors_demo(tmp_path):
    of.assert_reproduces_the_authors("nafnet", "nafnet", "src.models.nafnet.NAFNet", tmp_path)


def test_parameter_counts():
    assert of.default_parameter_count("nafnet") == 29_159_715  # SIDD width 32
    assert of.default_parameter_count("nafnet", ("model.net.width=64",)) == 115_982_915  # SIDD width 64
    gopro = ("model.net.enc_blk_nums=[1,1,1,28]", "model.net.middle_blk_num=1", "model.net.dec_blk_nums=[1,1,1,1]")
    assert of.default_parameter_count("nafnet", gopro) == 17_111_907  # GoPro width 32
    assert sum(p.numel() for p in of.small_net("nafnet").parameters()) == 75_887


@pytest.mark.parametrize("size", [(17, 20), (32, 21), (16, 16)])
def test_zero_pads_to_a_multiple_of_16(size):
    h, w = size
    of.assert_pads_inside("nafnet", size, lambda x: F.pad(x, (0, -w % 16, 0, -h % 16)))


def test_any_size_and_batch():
    of.check_any_size(of.small_net("nafnet"))


def test_tiled_prediction_runs(tmp_path):
    of.tiled_prediction("nafnet", "nafnet", tmp_path)
