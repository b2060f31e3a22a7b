"""SPANet family (Table-4 variants B_a..B_f): sizes, structure of each variant, SAM wiring, configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from src.models.irnn import irnn
from src.models.spanet import SAM, SPANet

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

# paper / release counts (spec: 283,716 official; 276,704 without the direction-attention branch)
PARAM_COUNTS = {
    "spanet": 283_716,
    "b_f": 283_716,
    "b_e": 283_716,
    "b_b": 283_716,
    "b_a": 193_216,
    "b_c": 555_216,
    "b_d": 276_704,
}
NUM_MAPS = {"spanet": 4, "b_f": 4, "b_e": 4, "b_d": 4, "b_c": 4, "b_b": 1, "b_a": 0}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def make(variant: str, seed: int = 0, **kw) -> SPANet:
    torch.manual_seed(seed)
    return SPANet(variant, **kw).double().eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.rand(1, 3, 10, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.mark.parametrize("variant", sorted(PARAM_COUNTS))
def test_parameter_count_and_outputs(variant, image):
    net = make(variant)
    assert n_params(net) == PARAM_COUNTS[variant]
    with torch.no_grad():
        res = net(image)
    assert res["out"].shape == image.shape
    assert len(res["att"]) == NUM_MAPS[variant]
    for a in res["att"]:
        assert a.shape == (1, 1, 10, 8) and 0 < a.min() and a.max() < 1
    if NUM_MAPS[variant]:
        assert res["vis"]["attention"] is res["att"][0]
    else:
        assert res["vis"] == {}


def test_explicit_flags_override_the_preset():
    net = SPANet("b_f", direction_attention=False)
    assert (net.sam_mode, net.direction_attention) == ("shared", False)
    assert n_params(net) == PARAM_COUNTS["b_d"]
    assert SPANet("b_f", sam_mode="none").direction_attention is False
    with pytest.raises(ValueError, match="variant"):
        SPANet("b_g")
    with pytest.raises(ValueError, match="sam_mode"):
        SPANet(sam_mode="twice")
    with pytest.raises(ValueError, match="direction_attention"):
        SPANet(sam_mode="none", direction_attention=True)


def count_calls(net: SPANet, image: torch.Tensor) -> list[int]:
    calls = [0] * len(net.sams)
    hooks = [
        sam.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1)) for i, sam in enumerate(net.sams)
    ]
    with torch.no_grad():
        net(image)
    for h in hooks:
        h.remove()
    return calls


@pytest.mark.parametrize(
    "variant,calls", [("b_a", []), ("b_b", [1]), ("b_c", [1, 1, 1, 1]), ("b_d", [4]), ("b_f", [4])]
)
def test_sam_evaluations(variant, calls, image):
    assert count_calls(make(variant), image) == calls


def test_b_b_reuses_one_map_in_all_four_sabs(image):
    net = make("b_b")
    seen = []
    hooks = [sab.register_forward_hook(lambda m, args, out: seen.append(args[1])) for sab in net.sabs]
    with torch.no_grad():
        res = net(image)
    for h in hooks:
        h.remove()
    assert len(seen) == 4 and all(a is res["att"][0] for a in seen)


def test_b_c_sams_are_independent():
    net = make("b_c")
    assert len(net.sams) == 4
    ptrs = {p.data_ptr() for sam in net.sams for p in sam.parameters()}
    assert len(ptrs) == 4 * len(list(net.sams[0].parameters()))
    w = [sam.conv_in.weight for sam in net.sams]
    assert all(not torch.equal(w[0], other) for other in w[1:])


def test_b_a_and_b_d_have_no_attention_branch():
    assert not any("attention_layer" in name for name, _ in make("b_d").named_parameters())
    assert not any(name.startswith("sams.") for name, _ in make("b_a").named_parameters())


def test_direction_weights_are_applied(image):
    """Unlike the release, changing the direction branch changes the output; weights = 1 reduce to B_d."""
    net = make("b_f")
    with torch.no_grad():
        base = net(image)["out"]
        net.sams[0].attention_layer.conv3.bias.add_(0.5)
        changed = net(image)["out"]
    assert (changed - base).abs().max() > 1e-6

    # all direction weights -> sigmoid(60) == 1 in float64: identical to B_d with the same other weights
    with torch.no_grad():
        net.sams[0].attention_layer.conv3.weight.zero_()
        net.sams[0].attention_layer.conv3.bias.fill_(60.0)
        b_d = make("b_d", seed=1)
        b_d.load_state_dict({k: v for k, v in net.state_dict().items() if "attention_layer" not in k})
        torch.testing.assert_close(net(image)["out"], b_d(image)["out"], rtol=0, atol=1e-12)


def test_attention_branch_gets_gradients(image):
    net = make("b_f").train()
    res = net(image)
    (res["out"].mean() + res["att"][0].mean()).backward()
    for name, p in net.sams[0].attention_layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_sam_matches_a_direct_computation():
    """SAM on a tiny input against conv2d + irnn written out by hand (concat order up, right, down, left)."""
    torch.manual_seed(3)
    sam = SAM(channels=4, direction_attention=True).double()
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    p = dict(sam.named_parameters())
    wts = x
    for i, k in ((1, 1), (2, 1), (3, 0)):
        wts = F.conv2d(wts, p[f"attention_layer.conv{i}.weight"], p[f"attention_layer.conv{i}.bias"], padding=k)
        wts = torch.relu(wts) if i < 3 else torch.sigmoid(wts)
    f = F.conv2d(x, p["conv_in.weight"], padding=1)
    for r, conv in ((1, "conv2"), (2, "conv3")):
        h = irnn(f, p[f"irnn{r}.weight"], p[f"irnn{r}.bias"], backend="naive")
        f = F.conv2d(torch.cat([h[:, d] * wts[:, d : d + 1] for d in range(4)], 1), p[f"{conv}.weight"], padding=1)
    expected = torch.sigmoid(F.conv2d(torch.relu(f), p["conv_out.weight"]))
    with torch.no_grad():
        torch.testing.assert_close(sam(x), expected, rtol=0, atol=1e-12)


# ------------------------------------------------------------------ configs
@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_model_configs_compose_and_build(name):
    """conf/model/<name>.yaml inside the real train config builds the Lightning module with the right net/loss."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from src.lit.module import DerainModule

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={name}"])
    module = instantiate(cfg.model)
    assert isinstance(module, DerainModule)
    net, loss = module.net, module.loss
    assert net.variant == ("b_f" if name == "spanet" else name)
    assert n_params(net) == PARAM_COUNTS[name]
    assert loss.attention_loss == (name not in ("b_a", "b_e"))
    assert (loss.ssim_weight, loss.att_weight, loss.mask_threshold, loss.mask_rule) == (1.0, 1.0, 0.0, "abs")
    # the authors' IRNN init and the release code's border rule, in every variant that has a SAM
    irnns = [m for m in net.modules() if type(m).__name__ == "IRNN"]
    assert len(irnns) == (0 if name == "b_a" else 8 if name == "b_c" else 2)
    for m in irnns:
        assert (m.init, m.border) == ("release", "relu")
        assert torch.all(m.weight == 0.2)
        assert m.bias.abs().max() <= 1 / 32**0.5  # U(-0.177, 0.177): PyTorch 0.4.1's conv default


def test_irnn_options_reach_every_sam():
    net = SPANet("b_c", irnn_init="identity", irnn_border="identity")
    irnns = [m for m in net.modules() if type(m).__name__ == "IRNN"]
    assert len(irnns) == 8
    for m in irnns:
        assert m.border == "identity" and torch.all(m.weight == 1) and torch.all(m.bias == 0)
