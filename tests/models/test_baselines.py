"""The four CNN baselines (DDN, JORDER-E, DID-MDN, RESCAN): parameter counts, shapes, one training step,
DDN's guided filter against a direct numpy implementation, DID-MDN's per-sample labels, and the configs.

Parameter counts are the numbers measured on the authors' released model code (docs/models.md);
where a count is recomputed here it is from layer shapes, independently of the model code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from src.losses.ddn import DDNLoss
from src.losses.didmdn import DIDMDNLoss
from src.losses.jorder import JORDERLoss
from src.losses.rescan import RESCANLoss
from src.models.clear import Clear
from src.models.ddn import DDN
from src.models.didmdn import DIDMDN, RELEASE_UNUSED_LAYERS, DensityClassifier
from src.models.guided_filter import guided_filter
from src.models.jorder import JORDERE
from src.models.rescan import RESCAN
from tests.conftest import compose_cfg


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on the 2-core CI machine running 2 pytest workers, more threads only contend."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


BUILD = {
    "ddn": (DDN, DDNLoss),
    "jorder": (JORDERE, JORDERLoss),
    "didmdn": (DIDMDN, DIDMDNLoss),
    "rescan": (RESCAN, RESCANLoss),
}


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


# --- parameter counts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, expected", [("ddn", 57_369), ("jorder", 4_169_024), ("didmdn", 365_236), ("rescan", 149_823)]
)
def test_parameter_counts(name, expected):
    assert n_params(BUILD[name][0]()) == expected


def test_ddn_count_from_layer_shapes():
    bn = 2 * 16
    expected = conv(3, 16, 3) + bn + 24 * (conv(16, 16, 3) + bn) + conv(16, 3, 3) + 2 * 3
    assert expected == 57_369


def test_didmdn_release_count_and_release_state_dict():
    """365,236 used + 7,603 in never-called layers = 372,839 as released; a release-shaped dict loads."""
    unused = {name: (conv(s[0], s[1], s[2]) if len(s) == 3 else 2 * s[0]) for name, s in RELEASE_UNUSED_LAYERS.items()}
    assert sum(unused.values()) == 7_603
    model = DIDMDN(bn_batch_stats=False)
    assert n_params(model) + sum(unused.values()) == 372_839

    # a state dict as the release saves it (DataParallel prefix, the unused layers present, no classifier)
    torch.manual_seed(0)
    release = {f"module.{k}": torch.randn_like(v.float()).to(v.dtype) for k, v in model.state_dict().items()}
    for name, s in RELEASE_UNUSED_LAYERS.items():
        if len(s) == 3:
            release[f"module.{name}.weight"] = torch.zeros(s[1], s[0], s[2], s[2])
            release[f"module.{name}.bias"] = torch.zeros(s[1])
        else:
            for p in ("weight", "bias", "running_mean", "running_var"):
                release[f"module.{name}.{p}"] = torch.zeros(s[0])
    fresh = DIDMDN(bn_batch_stats=False)
    fresh.load_release_state_dict(release)
    assert torch.equal(fresh.refineclean2.weight, release["module.refineclean2.weight"])
    assert torch.equal(fresh.dense2.dense_block6.bn2.running_var, release["module.dense2.dense_block6.bn2.running_var"])
    # batch-statistics BatchNorm has no running buffers: they are skipped
    DIDMDN(bn_batch_stats=True).load_release_state_dict(release)
    with pytest.raises(KeyError, match="unexpected key 'surprise.weight'"):
        fresh.load_release_state_dict({**release, "surprise.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="missing keys"):
        fresh.load_release_state_dict({k: v for k, v in release.items() if "refine3" not in k or "dense" in k})


def test_didmdn_classifier_count():
    # VGG19-BN conv1 + BN, conv 64->24, Linear(24*73*73 -> 512), Linear(512 -> 4)
    expected = conv(3, 64, 3) + 2 * 64 + conv(64, 24, 3) + (24 * 73 * 73 * 512 + 512) + (512 * 4 + 4)
    assert n_params(DensityClassifier()) == expected == 65_501_084


def rescan_count(unit: str, c: int = 24, dilations=(1, 1, 2, 4, 8)) -> int:
    gates = {"gru": 3, "lstm": 4, "rnn": 1, "conv": 1}[unit]
    se = (c * 6 + 6) + (6 * c + c)
    total = 0
    for j, _ in enumerate(dilations):
        cin = 3 if j == 0 else c
        total += gates * conv(cin, c, 3) + (0 if unit == "conv" else gates * conv(c, c, 3)) + se
    return total + conv(c, c, 3) + se + conv(c, 3, 1)


@pytest.mark.parametrize("unit", ["gru", "lstm", "rnn", "conv"])
@pytest.mark.parametrize("frame", ["full", "add"])
def test_rescan_unit_types(unit, frame):
    net = RESCAN(unit=unit, frame=frame)
    assert n_params(net) == rescan_count(unit)
    out = net(torch.rand(1, 3, 9, 11))
    assert out["out"].shape == (1, 3, 9, 11) and len(out["rain_layers"]) == 4
    if unit == "gru":
        assert n_params(net) == 149_823


def test_rescan_add_frame_accumulates_detached_rain():
    torch.manual_seed(0)
    full, add = RESCAN(frame="full"), RESCAN(frame="add")
    add.load_state_dict(full.state_dict())
    x = torch.rand(1, 3, 12, 12)
    rf, ra = full(x)["rain_layers"], add(x)["rain_layers"]
    torch.testing.assert_close(ra[0], rf[0])
    # stage 2 of 'add' = its own decoder output + stage-1 rain; that decoder sees the same input as 'full''s
    torch.testing.assert_close(ra[1], rf[1] + rf[0])


def test_bad_options_raise():
    with pytest.raises(ValueError, match="model.net.unit"):
        RESCAN(unit="transformer")
    with pytest.raises(ValueError, match="model.net.frame"):
        RESCAN(frame="sum")
    with pytest.raises(ValueError, match="default_label"):
        DIDMDN(default_label=3)


# --- shapes on odd, non-square inputs ----------------------------------------------------------------------
@pytest.mark.parametrize("name", list(BUILD))
@pytest.mark.parametrize("batch, h, w", [(1, 37, 53), (2, 13, 19)])
def test_output_shapes(name, batch, h, w):
    torch.manual_seed(0)
    net = BUILD[name][0]()
    x = torch.rand(batch, 3, h, w)
    with torch.no_grad():
        out = net(x, label=torch.zeros(batch, dtype=torch.long)) if net.uses_label else net(x)
    assert out["out"].shape == x.shape and torch.isfinite(out["out"]).all()
    assert out["vis"], "every baseline shows something beside (rain, out, clean)"
    for key, v in out["vis"].items():
        assert v.shape[0] == batch and v.shape[1] in (1, 3) and v.shape[2:] == x.shape[2:], key
        assert 0 <= v.min() and v.max() <= 1, key
    if name == "jorder":
        assert [t.shape[1] for t in out["mask_logits"]] == [2, 2] and [t.shape[1] for t in out["levels"]] == [3, 3]
        assert len(out["stages"]) == 2
    if name == "rescan":
        assert len(out["stages"]) == len(out["rain_layers"]) == 4
        torch.testing.assert_close(out["out"], x - out["rain_layers"][-1])


# --- one optimisation step lowers the loss on a fixed batch ------------------------------------------------
# JORDER-E works on 0-255 values, so the same parameter step moves its output far more: a smaller lr.
@pytest.mark.parametrize("name, lr", [("ddn", 1e-4), ("jorder", 1e-5), ("didmdn", 1e-4), ("rescan", 1e-4)])
def test_one_adam_step_lowers_loss(name, lr):
    torch.manual_seed(0)
    net_cls, loss_cls = BUILD[name]
    net, loss_fn = net_cls(), loss_cls()
    clean = torch.rand(2, 3, 16, 20) * 0.8
    rain = (clean + 0.2 * (torch.rand_like(clean) > 0.8)).clamp(0, 1)
    batch = {"rain": rain, "clean": clean, "label": torch.tensor([0, 2])}

    def loss_value():
        out = net(rain, label=batch["label"]) if net.uses_label else net(rain)
        return loss_fn(out, batch)[0]

    opt = torch.optim.Adam(net.parameters(), lr=lr)
    before = loss_value()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss_value()
    assert after.item() < before.item()


# --- DDN's guided filter against a direct numpy implementation ---------------------------------------------
def guided_filter_numpy(img: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter, self-guided per channel, windows truncated at the borders (plain loops)."""
    c, h, w = img.shape

    def box(a):
        out = np.empty_like(a)
        for y in range(h):
            for x in range(w):
                out[y, x] = a[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1].mean()
        return out

    q = np.empty_like(img)
    for ch in range(c):
        i = img[ch]
        mean_i = box(i)
        var_i = box(i * i) - mean_i**2
        a = var_i / (var_i + eps)
        b = mean_i - a * mean_i
        q[ch] = box(a) * i + box(b)
    return q


@pytest.mark.parametrize("r, eps, size", [(15, 1.0, (20, 27)), (2, 0.01, (9, 13)), (1, 1e-3, (1, 5))])
def test_guided_filter_matches_numpy(r, eps, size):
    rng = np.random.default_rng(0)
    img = rng.random((3, *size))
    expected = guided_filter_numpy(img, r, eps)
    x = torch.from_numpy(img)[None]
    got = guided_filter(x, x, r, eps)[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_ddn_base_is_guided_filter_and_output_adds_input():
    rng = np.random.default_rng(1)
    img = rng.random((3, 21, 17)).astype(np.float32)
    net = DDN().eval()
    x = torch.from_numpy(img)[None]
    out = net(x)
    np.testing.assert_allclose(out["base"][0].numpy(), guided_filter_numpy(img.astype(np.float64), 15, 1.0), atol=1e-5)
    torch.testing.assert_close(out["detail"], x - out["base"])
    residual = net.tail(net.units(net.head(out["detail"])))
    torch.testing.assert_close(out["out"], x + residual)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 26 and all(m.eps == 1e-3 and m.momentum == 0.01 for m in bns)


# --- DID-MDN: per-sample label maps, unknown labels ---------------------------------------------------------
def test_didmdn_label_map_is_per_sample():
    torch.manual_seed(0)
    net = DIDMDN(bn_batch_stats=False).eval()  # running statistics: samples do not interact
    a, b = torch.rand(1, 3, 20, 27), torch.rand(1, 3, 20, 27)
    x = torch.cat([a, b])
    with torch.no_grad():
        out_02 = net(x, label=torch.tensor([0, 2]))["out"]
        out_20 = net(x, label=torch.tensor([2, 0]))["out"]
        a0, a2 = net(a, label=torch.tensor([0]))["out"], net(a, label=torch.tensor([2]))["out"]
        b0, b2 = net(b, label=torch.tensor([0]))["out"], net(b, label=torch.tensor([2]))["out"]
    torch.testing.assert_close(out_02, torch.cat([a0, b2]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out_20, torch.cat([a2, b0]), atol=1e-5, rtol=0)
    assert (a0 - a2).abs().max() > 1e-4 and (out_02 - out_20).abs().amax(dim=(1, 2, 3)).min() > 1e-4


def test_didmdn_unknown_labels_use_default_and_bad_labels_raise():
    torch.manual_seed(0)
    net = DIDMDN(default_label=1, bn_batch_stats=False).eval()
    x = torch.rand(2, 3, 32, 40)
    with torch.no_grad():
        unknown = net(x, label=torch.tensor([-1, 2]))
        explicit = net(x, label=torch.tensor([1, 2]))
        none = net(x)
    assert unknown["label"].tolist() == [1, 2] and none["label"].tolist() == [1, 1]
    torch.testing.assert_close(unknown["out"], explicit["out"])
    with pytest.raises(ValueError, match="density labels"):
        net(x, label=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="3 labels for a batch of 2"):
        net(x, label=torch.tensor([0, 1, 2]))


def test_didmdn_classifier_predicts_unknown_labels_only():
    torch.manual_seed(0)
    net = DIDMDN(use_classifier=True)
    with torch.no_grad():
        out = net(torch.rand(2, 3, 32, 32), label=torch.tensor([-1, 1]))
    logits = out["density_logits"]
    assert logits.shape == (2, 4)
    assert out["label"].tolist() == [int(logits[0, :3].argmax()), 1]


def test_didmdn_io_is_on_unit_scale():
    torch.manual_seed(0)
    net = DIDMDN()
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        out = net(x, label=torch.tensor([0]))
    assert 0 <= out["out"].min() and out["out"].max() <= 1  # (tanh + 1) / 2
    assert out["residual"].abs().max() <= 0.5  # tanh in [-1, 1] units = tanh / 2 in [0, 1] units
    assert DIDMDN.uses_label


# --- configs: conf/model/<name>.yaml with conf/schedule/<name>.yaml (recipe=<name>) -------------------------
@pytest.mark.parametrize("name", list(BUILD))
def test_recipe_config_instantiates(name, tmp_path):
    try:
        cfg = compose_cfg("train", [f"recipe={name}"], tmp_path)
    finally:
        GlobalHydra.instance().clear()
    net, loss = instantiate(cfg.model.net), instantiate(cfg.model.loss)
    assert isinstance(net, BUILD[name][0]) and isinstance(loss, BUILD[name][1])
    assert cfg.schedule.scheduler_interval == "step" and cfg.schedule.max_steps > 0
    opt = instantiate(cfg.model.optimizer)(params=net.parameters())
    if cfg.model.scheduler is not None:
        sched = instantiate(cfg.model.scheduler)(optimizer=opt)
        assert sched.get_last_lr()[0] == opt.param_groups[0]["lr"]
    expected = {
        "ddn": ("SGD", 0.1, 20, 210_000),
        "jorder": ("Adam", 1e-4, 8, 180_000),
        "didmdn": ("Adam", 2e-4, 1, 40_000),
        "rescan": ("Adam", 5e-3, 64, 20_000),
    }[name]
    assert (type(opt).__name__, opt.param_groups[0]["lr"], cfg.schedule.batch_size, cfg.schedule.max_steps) == expected


def test_didmdn_schedule_decays_linearly(tmp_path):
    try:
        cfg = compose_cfg("train", ["recipe=didmdn"], tmp_path)
    finally:
        GlobalHydra.instance().clear()
    p = torch.nn.Parameter(torch.zeros(1))
    opt = instantiate(cfg.model.optimizer)(params=[p])
    sched = instantiate(cfg.model.scheduler)(optimizer=opt)
    assert opt.param_groups[0]["betas"] == (0.5, 0.999) and opt.param_groups[0]["weight_decay"] == 5e-5
    for _ in range(4000):  # one release epoch: lr drops by lr/400
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-4 * (1 - 1 / 400), rel=1e-6)


def test_any_baseline_composes_with_spanet_recipe(tmp_path):
    try:
        cfg = compose_cfg("train", ["model=rescan", "schedule=spanet_paper"], tmp_path)
    finally:
        GlobalHydra.instance().clear()
    assert cfg.model.net._target_ == "src.models.rescan.RESCAN" and cfg.schedule.batch_size == 32


# --- Clear (DerainNet, Fu et al. TIP 2017) ------------------------------------------------------------------
def test_clear_parameter_count_from_layer_shapes():
    expected = conv(3, 512, 16) + conv(512, 512, 1) + conv(512, 3, 8)  # the transposed conv has 512*3*8*8 + 3
    assert expected == 754_691 and n_params(Clear()) == expected


@pytest.mark.parametrize("size", [(21, 17), (8, 9), (5, 5), (1, 3)])
def test_clear_keeps_size_and_adds_its_residual_to_the_guided_filter_base(size):
    rng = np.random.default_rng(2)
    img = rng.random((3, *size)).astype(np.float32)
    x = torch.from_numpy(img)[None]
    net = Clear(channels=8).eval()
    with torch.no_grad():
        out = net(x)
        assert out["out"].shape == x.shape
        np.testing.assert_allclose(
            out["base"][0].numpy(), guided_filter_numpy(img.astype(np.float64), 15, 1.0), atol=1e-5
        )
        torch.testing.assert_close(out["detail"], x - out["base"])
        net.body[-1].weight.zero_()
        net.body[-1].bias.fill_(0.25)  # a constant residual: out = base + 0.25 everywhere, borders included
        torch.testing.assert_close(net(x)["out"], out["base"] + 0.25)


def test_clear_is_centred_and_sees_11_pixels_each_way():
    """The residual at pixel j depends on the detail layer at j-11..j+11 (16x16 conv then 8x8 transposed conv,
    4-pixel border): an impulse in the detail layer moves the residual only within that symmetric window."""
    torch.manual_seed(0)
    net = Clear(channels=4).eval()
    detail = torch.zeros(1, 3, 41, 41)
    bumped = detail.clone()
    bumped[0, 1, 20, 20] = 1.0
    with torch.no_grad():
        body = lambda d: net.body(torch.nn.functional.pad(d, (4,) * 4, mode="reflect"))  # noqa: E731
        diff = (body(bumped) - body(detail)).abs().sum(1)[0]
    rows, cols = torch.nonzero(diff > 0, as_tuple=True)
    assert (rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()) == (9, 31, 9, 31)


@pytest.mark.parametrize(
    "overrides, steps, drops",
    [
        ([], 210_000, (100_000, 200_000)),  # the DDN paper's schedule, kept as the recipe
        (["schedule.max_steps=60000", "schedule.scheduler.milestones=[20000,40000]"], 60_000, (20_000, 40_000)),
    ],
)
def test_ddn_schedules_of_the_two_official_copies(tmp_path, overrides, steps, drops):
    """DDN's recipe is the paper's (SGD momentum 0.9, lr 0.1, /10 at 100K and 200K, 210K iterations, batch 20);
    the other official copy's (60K, drops at 20K/40K) is the documented override."""
    try:
        cfg = compose_cfg("train", ["recipe=ddn", *overrides], tmp_path)
    finally:
        GlobalHydra.instance().clear()
    opt = instantiate(cfg.model.optimizer)(params=[torch.nn.Parameter(torch.zeros(1))])
    sched = instantiate(cfg.model.scheduler)(optimizer=opt)
    assert (type(opt).__name__, opt.param_groups[0]["momentum"], cfg.schedule.batch_size) == ("SGD", 0.9, 20)
    assert cfg.schedule.max_steps == cfg.trainer.max_steps == steps
    assert (opt.param_groups[0]["lr"], tuple(sched.milestones), sched.gamma) == (0.1, drops, 0.1)
