"""Golden forward tests: the suite's RESCAN, DID-MDN and JORDER-E against the authors' official forward passes
(tests/models/official_forwards.py), under random non-default weights in the authors' own parameter format,
in float64. The weights reach the suite's networks through the loaders users use for released weights
(RESCAN: BGR -> RGB; DID-MDN: the released generator's names and unused layers) or, for JORDER-E, through a
name mapping written out here.
"""

from __future__ import annotations

import re

import pytest
import torch

from src.models.didmdn import DIDMDN
from src.models.jorder import JORDERE
from src.models.rescan import RESCAN
from tests.models.official_forwards import (
    didmdn_layout,
    didmdn_official,
    jorder_e_layout,
    jorder_e_official,
    random_state_dict,
    rescan_layout,
    rescan_official,
)
from tests.models.test_baselines import one_thread  # noqa: F401  (autouse: one intra-op thread)


def _close(got, ref, rel=1e-10):
    scale = float(ref.abs().max())
    assert scale > 1e-3  # a real signal, not zeros
    torch.testing.assert_close(got, ref, rtol=0, atol=rel * max(scale, 1.0))


# --------------------------------------------------------------------------------------------------- RESCAN
OFFICIAL_UNIT = {"gru": "GRU", "lstm": "LSTM", "rnn": "RNN", "conv": "Conv"}


@pytest.mark.parametrize("frame", ["full", "add"])
@pytest.mark.parametrize("unit", ["gru", "lstm", "rnn", "conv"])
def test_rescan_equals_official_forward_on_bgr(unit, frame):
    sd = random_state_dict(rescan_layout(OFFICIAL_UNIT[unit]), seed=1)
    net = RESCAN(unit=unit, frame=frame).double()
    net.load_release_state_dict({f"module.{k}": v for k, v in sd.items()})  # their DataParallel prefix too
    rgb = torch.rand(2, 3, 13, 17, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref = rescan_official(sd, rgb.flip(1), OFFICIAL_UNIT[unit], frame.capitalize())
    with torch.no_grad():
        ours = net(rgb)
    assert len(ours["rain_layers"]) == len(ref) == 4
    for got, want in zip(ours["rain_layers"], ref):
        _close(got, want.flip(1))  # our RGB rain layer is their BGR one, channels reversed
    _close(ours["out"], rgb - ref[-1].flip(1))
    # the flip matters: their network on the RGB image (no conversion) gives another result
    assert (rescan_official(sd, rgb, OFFICIAL_UNIT[unit], frame.capitalize())[-1] - ref[-1].flip(1)).abs().max() > 1e-3


def test_rescan_release_loader_errors_name_the_key():
    sd = random_state_dict(rescan_layout("GRU"), seed=0)
    with pytest.raises(KeyError, match="rnns.2.conv_hr.weight"):
        RESCAN(unit="gru").load_release_state_dict({k: v for k, v in sd.items() if k != "rnns.2.conv_hr.weight"})
    with pytest.raises(KeyError, match="missing key 'rnns.0.conv_xf.weight'"):
        RESCAN(unit="lstm").load_release_state_dict(sd)  # GRU weights into an LSTM
    with pytest.raises(KeyError, match="unexpected keys"):
        RESCAN(unit="gru", dilations=(1, 1, 2, 4)).load_release_state_dict(sd)  # depth 6 vs the file's 7
    with pytest.raises(ValueError, match=r"'rnns.0.conv_xz.weight' has shape \(24, 3, 3, 3\)"):
        RESCAN(unit="gru", channels=16).load_release_state_dict(sd)


# --------------------------------------------------------------------------------------------------- DID-MDN
@pytest.fixture(scope="module")
def didmdn_pair():
    sd = random_state_dict(didmdn_layout(), seed=3)
    net = DIDMDN(bn_batch_stats=True).double()
    net.load_release_state_dict(sd)  # the released generator's format, with its never-called layers
    return sd, net


@pytest.mark.parametrize("side, label", [(32, 0), (40, 2), (72, 1)])
def test_didmdn_equals_official_forward(didmdn_pair, side, label):
    """Sides 40 and 72 are divisible by 8 but not by 32: the official code runs them as they are."""
    sd, net = didmdn_pair
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side), dtype=torch.float64)
    residual, clean = didmdn_official(sd, x * 2 - 1, label)
    with torch.no_grad():
        ours = net(x, label=torch.tensor([label]))
    _close(ours["out"] * 2 - 1, clean)
    _close(ours["residual"] * 2, residual)
    assert ours["label"].tolist() == [label]


# --------------------------------------------------------------------------------------------------- JORDER-E
def jorder_e_to_suite(sd: dict) -> dict:
    """Their JORDER_E names -> the suite's JORDERE names (one to one)."""
    out = {}
    for key, v in sd.items():
        stage, rest = key.split(".", 1)
        stage = {"jorder1": "stage1", "jorder2": "stage2"}[stage]
        m = re.fullmatch(r"updater\.res(\d)\.conv(\d)\.(weight|bias)", rest)
        if m:
            r, c, p = int(m[1]), int(m[2]), m[3]
            rest = f"blocks.{r - 1}.paths.{(c - 1) // 2}.{0 if c % 2 else 2}.{p}"
        elif m := re.fullmatch(r"(mask|level)_estimator(\d)\.(.*)", rest):
            rest = f"{m[1]}_head.{int(m[2]) - 1}.{m[3]}"
        elif m := re.fullmatch(r"(mask|level)_F_(w|b)_encoder(\d)\.(.*)", rest):
            rest = f"{m[1]}_{m[2]}.{0 if m[3] == '1' else 2}.{m[4]}"
        out[f"{stage}.{rest}"] = v
    return out


def test_jorder_e_equals_official_forward():
    sd = random_state_dict(jorder_e_layout(), seed=4)
    net = JORDERE().double()
    net.load_state_dict(jorder_e_to_suite(sd), strict=True)  # every name maps to exactly one of ours
    x = torch.rand(1, 3, 12, 14, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x2, x1, mask2, level2, mask1, level1 = jorder_e_official(sd, x * 255)
    with torch.no_grad():
        ours = net(x)
    _close(ours["out"] * 255, x2)
    _close(ours["stages"][0] * 255, x1)
    _close(ours["mask_logits"][1], mask2)
    _close(ours["mask_logits"][0], mask1)
    _close(ours["levels"][1] * 255, level2)
    _close(ours["levels"][0] * 255, level1)


@pytest.mark.parametrize("side, padded", [(37, 40), (20, 32), (10, 32)])
def test_didmdn_pads_only_to_the_next_size_it_accepts(didmdn_pair, side, padded):
    """A side that is not a multiple of 8 (or is under 32) is padded to the nearest one that is, on the bottom and
    right by reflection (numpy's 'reflect' here; edge replication when the image is smaller than the pad), and the
    output cropped back: equal to the official forward on that padded image."""
    import numpy as np

    sd, net = didmdn_pair
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side), dtype=torch.float64)
    mode = "reflect" if padded - side < side else "edge"
    xp = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (0, padded - side), (0, padded - side)), mode=mode))
    residual, clean = didmdn_official(sd, xp * 2 - 1, 1)
    with torch.no_grad():
        ours = net(x, label=torch.tensor([1]))
    assert ours["out"].shape == (1, 3, side, side)
    _close(ours["out"] * 2 - 1, clean[..., :side, :side])
    _close(ours["residual"] * 2, residual[..., :side, :side])


# --------------------------------------------------------------------------------------- released files
def test_released_files_load_through_the_suite_reader(tmp_path):
    """The files as the authors' training scripts write them: RESCAN {'net', 'clock', 'opt'} (train.py),
    DID-MDN a bare generator state dict (torch.save(netG.state_dict())). Read by the suite's checkpoint reader
    (as eval / predict / model.init_from do), they give the official outputs."""
    from src.utils.checkpoint import load_net_weights

    sd = random_state_dict(rescan_layout("GRU"), seed=7)
    path = tmp_path / "latest"
    torch.save({"net": sd, "clock": 20000, "opt": {"state": {}, "param_groups": [{"lr": 5e-5}]}}, path)
    net = load_net_weights(RESCAN(unit="gru", frame="full").double(), path)
    rgb = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    with torch.no_grad():
        _close(net(rgb)["out"], rgb - rescan_official(sd, rgb.flip(1), "GRU", "Full")[-1].flip(1))

    sd = random_state_dict(didmdn_layout(), seed=9)
    path = tmp_path / "netG_epoch_9.pth"
    torch.save(sd, path)
    net = load_net_weights(DIDMDN().double(), path)
    x = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    with torch.no_grad():
        _close(net(x, label=torch.tensor([2]))["out"] * 2 - 1, didmdn_official(sd, x * 2 - 1, 2)[1])
    # model.init_from (fine-tuning, as the SPANet paper did with DID-MDN): every tensor of the network loaded
    from src.utils.checkpoint import init_weights

    net = DIDMDN().double()
    report = init_weights(net, path)
    assert report["missing"] == [] and report["mismatched"] == [] and len(report["loaded"]) == len(net.state_dict())
    with torch.no_grad():
        _close(net(x, label=torch.tensor([2]))["out"] * 2 - 1, didmdn_official(sd, x * 2 - 1, 2)[1])
    torch.save({k: v for k, v in sd.items() if not k.startswith("refine3")}, path)
    with pytest.raises(ValueError, match="netG_epoch_9.pth: .*missing keys"):
        load_net_weights(DIDMDN().double(), path)
