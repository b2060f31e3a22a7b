"""Losses of the four CNN baselines against values computed independently with numpy (or plain torch ops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from src.losses.ddn import DDNLoss
from src.losses.didmdn import DIDMDNLoss
from src.losses.jorder import JORDERLoss, rain_mask_target
from src.losses.rescan import RESCANLoss


def rand(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random(shape)).float()


def batch_of(rain, clean, label=None):
    b = rain.shape[0]
    return {"rain": rain, "clean": clean, "label": torch.full((b,), -1) if label is None else label}


# --- DDN ----------------------------------------------------------------------------------------------------
def test_ddn_loss_is_mse():
    out, clean = rand(2, 3, 5, 7, seed=1), rand(2, 3, 5, 7, seed=2)
    total, parts = DDNLoss()({"out": out}, batch_of(clean, clean))
    assert total.item() == pytest.approx(((out.numpy() - clean.numpy()) ** 2).mean(), rel=1e-6)
    assert set(parts) == {"mse"}


# --- RESCAN -------------------------------------------------------------------------------------------------
def test_rescan_loss_sums_stage_mses_against_rain_layer():
    rain, clean = rand(2, 3, 6, 5, seed=1), rand(2, 3, 6, 5, seed=2)
    layers = [rand(2, 3, 6, 5, seed=10 + s) for s in range(4)]
    total, parts = RESCANLoss()({"rain_layers": layers}, batch_of(rain, clean))
    target = rain.numpy() - clean.numpy()
    per_stage = [((r.numpy() - target) ** 2).mean() for r in layers]
    assert total.item() == pytest.approx(sum(per_stage), rel=1e-6)
    assert [parts[f"stage{s + 1}"].item() for s in range(4)] == pytest.approx(per_stage, rel=1e-6)


# --- JORDER -------------------------------------------------------------------------------------------------
# hand-made pixels (clean, rain) -> expected mask under abs_red, abs_any, positive_red
PIXELS = [
    ((0.5, 0.5, 0.5), (0.8, 0.8, 0.8), (1, 1, 0)),  # rain brightens: clean - rain < 0
    ((0.4, 0.4, 0.4), (0.4, 0.4, 0.4), (0, 0, 0)),  # untouched
    ((0.6, 0.6, 0.6), (0.2, 0.2, 0.2), (1, 1, 1)),  # darker 'rain': clean - rain > 0
    ((0.5, 0.5, 0.5), (0.5, 0.9, 0.5), (0, 1, 0)),  # only green changed
    ((0.5, 0.5, 0.5), (0.5 - 1e-6, 0.5, 0.5), (0, 0, 1)),  # below the threshold (positive_red has none)
    ((0.3, 0.3, 0.3), (0.3 - 1 / 255, 0.3, 0.3), (1, 1, 1)),  # one 8-bit level darker in red
]


@pytest.mark.parametrize("rule_index, rule", enumerate(["abs_red", "abs_any", "positive_red"]))
def test_jorder_mask_rules_on_hand_made_pixels(rule_index, rule):
    clean = torch.tensor([p[0] for p in PIXELS], dtype=torch.float64).T.reshape(1, 3, 1, len(PIXELS))
    rain = torch.tensor([p[1] for p in PIXELS], dtype=torch.float64).T.reshape(1, 3, 1, len(PIXELS))
    mask = rain_mask_target(rain, clean, rule, 1e-5)
    assert mask.dtype == torch.long and mask.shape == (1, 1, len(PIXELS))
    assert mask.flatten().tolist() == [p[2][rule_index] for p in PIXELS]


def log_softmax_np(z, axis):
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def test_jorder_loss_matches_numpy():
    rain, clean = rand(2, 3, 4, 5, seed=1), rand(2, 3, 4, 5, seed=2)
    s1, s2 = rand(2, 3, 4, 5, seed=3), rand(2, 3, 4, 5, seed=4)
    m1, m2 = rand(2, 2, 4, 5, seed=5) * 4 - 2, rand(2, 2, 4, 5, seed=6) * 4 - 2
    l1, l2 = rand(2, 3, 4, 5, seed=7) - 0.5, rand(2, 3, 4, 5, seed=8) - 0.5
    outputs = {"out": s2, "stages": [s1, s2], "mask_logits": [m1, m2], "levels": [l1, l2]}
    total, parts = JORDERLoss()(outputs, batch_of(rain, clean))

    r, c = rain.numpy().astype(np.float64), clean.numpy().astype(np.float64)
    image = np.abs(s1.numpy() * 255 - c * 255).mean() + np.abs(s2.numpy() * 255 - c * 255).mean()
    target = (np.abs(c - r)[:, 0] > 1e-5).astype(int)  # (B, H, W)
    logp = log_softmax_np(m2.numpy().astype(np.float64), axis=1)
    ce_sum = -np.take_along_axis(logp, target[:, None], axis=1).sum()
    level = np.abs(l2.numpy() * 255 - (c - r) * 255).mean()
    expected = {"image": image, "mask": 1e-3 * ce_sum, "level": 1e-2 * level}
    for k, v in expected.items():
        assert parts[k].item() == pytest.approx(v, rel=1e-5), k
    assert total.item() == pytest.approx(sum(expected.values()), rel=1e-5)


def test_jorder_bad_rule_raises():
    with pytest.raises(ValueError, match="model.loss.mask_rule"):
        JORDERLoss(mask_rule="red")


# --- DID-MDN ------------------------------------------------------------------------------------------------
def test_didmdn_l1_on_minus_one_one_scale_and_no_perceptual_by_default():
    out, clean = rand(1, 3, 8, 8, seed=1), rand(1, 3, 8, 8, seed=2)
    total, parts = DIDMDNLoss()({"out": out}, batch_of(clean, clean))
    assert set(parts) == {"l1"}
    assert total.item() == pytest.approx(np.abs((2 * out.numpy() - 1) - (2 * clean.numpy() - 1)).mean(), rel=1e-6)


def vgg_reference(x, sd):
    """relu1_2 and relu2_2 of VGG16 with plain torch ops and torchvision-style keys."""
    h = F.relu(F.conv2d(x, sd["features.0.weight"], sd["features.0.bias"], padding=1))
    r12 = F.relu(F.conv2d(h, sd["features.2.weight"], sd["features.2.bias"], padding=1))
    h = F.relu(F.conv2d(F.max_pool2d(r12, 2), sd["features.5.weight"], sd["features.5.bias"], padding=1))
    r22 = F.relu(F.conv2d(h, sd["features.7.weight"], sd["features.7.bias"], padding=1))
    return r12, r22


@pytest.mark.parametrize("key_style", ["torchvision", "release"])
def test_didmdn_perceptual_term_with_weights_file(tmp_path, key_style):
    g = torch.Generator().manual_seed(0)
    shapes = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128)}
    sd = {}
    for i, (co, ci) in shapes.items():
        sd[f"features.{i}.weight"] = torch.randn(co, ci, 3, 3, generator=g) * 0.1
        sd[f"features.{i}.bias"] = torch.randn(co, generator=g) * 0.1
    names = {0: "conv1_1", 2: "conv1_2", 5: "conv2_1", 7: "conv2_2"}
    saved = (
        sd
        if key_style == "torchvision"
        else {f"{names[int(k.split('.')[1])]}.{k.split('.')[2]}": v for k, v in sd.items()}
    )
    path = tmp_path / "vgg16.pth"
    torch.save(saved, path)

    out, clean = rand(1, 3, 8, 10, seed=1), rand(1, 3, 8, 10, seed=2)
    loss = DIDMDNLoss(vgg_weights=str(path))
    total, parts = loss({"out": out}, batch_of(clean, clean))
    o, c = out * 2 - 1, clean * 2 - 1
    perc = sum((a - b).abs().mean() for a, b in zip(vgg_reference(o, sd), vgg_reference(c, sd)))
    l1 = (o - c).abs().mean()
    assert parts["perceptual"].item() == pytest.approx(perc.item(), rel=1e-5)
    assert total.item() == pytest.approx((l1 + 1.8 * perc).item(), rel=1e-5)
    assert not list(loss.parameters()) and not loss.state_dict()  # frozen, outside checkpoints
    assert loss.vgg.conv2_2_weight.shape == (128, 128, 3, 3)


def test_didmdn_missing_weights_file_names_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.loss.vgg_weights"):
        DIDMDNLoss(vgg_weights=str(tmp_path / "nope.pth"))
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pth")
    with pytest.raises(KeyError, match="features.0.bias"):
        DIDMDNLoss(vgg_weights=str(tmp_path / "partial.pth"))


def test_didmdn_density_term_only_on_known_labels():
    out, clean = rand(3, 3, 4, 4, seed=1), rand(3, 3, 4, 4, seed=2)
    logits = rand(3, 4, seed=3) * 4 - 2
    label = torch.tensor([2, -1, 0])
    total, parts = DIDMDNLoss()({"out": out, "density_logits": logits}, batch_of(clean, clean, label))
    logp = log_softmax_np(logits.numpy().astype(np.float64), axis=1)
    ce = -(logp[0, 2] + logp[2, 0]) / 2
    assert parts["density"].item() == pytest.approx(ce, rel=1e-5)
    assert total.item() == pytest.approx(parts["l1"].item() + ce, rel=1e-5)
    _, parts = DIDMDNLoss()({"out": out, "density_logits": logits}, batch_of(clean, clean))
    assert "density" not in parts  # all labels unknown
