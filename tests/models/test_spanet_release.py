"""The authors' released checkpoint (weights/spanet_release.pt, shipped with the suite): strict conversion,
BGR->RGB, and equality of our network's output with a transcription of their forward pass."""

from __future__ import annotations

import copy
import functools
import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from src.models.spanet import SPANet
from src.models.spanet_release import convert_release_state_dict
from src.utils.checkpoint import RELEASE_SHA256, load_net_weights

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "weights" / "spanet_release.pt"


def spanet_from_release(path, variant: str = "b_d", **kwargs) -> SPANet:
    return load_net_weights(SPANet(variant=variant, **kwargs), path)


def test_the_release_file_ships_with_the_suite():
    """weights/ holds the authors' file byte for byte, with their licence beside it."""
    assert RELEASE.is_file(), f"{RELEASE} is missing: the released weights are part of the repository"
    assert hashlib.sha256(RELEASE.read_bytes()).hexdigest() == RELEASE_SHA256
    assert RELEASE.stat().st_size == 3_450_077
    licence = (RELEASE.parent / "spanet_release.LICENSE.txt").read_text()
    assert "Redistribution and use in source and binary forms" in licence
    assert RELEASE_SHA256 in (RELEASE.parent / "README.md").read_text()


@pytest.fixture(scope="module")
def release_sd() -> dict:
    return torch.load(RELEASE, map_location="cpu", weights_only=True)["net"]


@pytest.fixture(scope="module")
def net_b_d() -> SPANet:
    return spanet_from_release(RELEASE).eval()


# ------------------------------------------------------------------ direct transcription of the release
def release_irnn(x, sd, prefix):
    """Their CUDA kernel written as loops: per direction the border element is relu(x), then
    h = relu(w * h_prev + b + x) moving away from it. Returns (up, right, down, left)."""

    def w_b(d):
        return (sd[f"{prefix}.{d}_weight.weight"].view(1, -1, 1), sd[f"{prefix}.{d}_weight.bias"].view(1, -1, 1))

    H, W = x.shape[2:]
    out = {d: torch.zeros_like(x) for d in ("up", "right", "down", "left")}
    for d, axis, order in (
        ("right", 3, range(W)),
        ("left", 3, range(W - 1, -1, -1)),
        ("down", 2, range(H)),
        ("up", 2, range(H - 1, -1, -1)),
    ):
        w, b = w_b(d)
        prev = None
        for i in order:
            xi = x.select(axis, i)
            h = torch.relu(xi) if prev is None else torch.relu(prev * w + b + xi)
            out[d].select(axis, i).copy_(h)
            prev = h
    return out["up"], out["right"], out["down"], out["left"]


def release_forward(sd, x_bgr, irnn=release_irnn):
    """SPANet.forward of the release (BGR input); the SAM's direction weights are computed and discarded.
    ``irnn(x, sd, prefix)``: the IRNN transcription (default: their CUDA kernel's)."""

    def body(n, x):
        p = f"res_block{n}.group1."
        y = torch.relu(F.conv2d(x, sd[p + "conv1.weight"]))
        y = torch.relu(F.conv2d(y, sd[p + "conv2.weight"], padding=2, dilation=2))
        return F.conv2d(y, sd[p + "conv3.weight"])

    def sam(x):
        out = F.conv2d(x, sd["SAM1.conv_in.weight"], padding=1)
        out = F.conv2d(torch.cat(irnn(out, sd, "SAM1.irnn1"), 1), sd["SAM1.conv2.weight"], padding=1)
        out = F.conv2d(torch.cat(irnn(out, sd, "SAM1.irnn2"), 1), sd["SAM1.conv3.weight"], padding=1)
        return torch.sigmoid(F.conv2d(torch.relu(out), sd["SAM1.conv_out.weight"]))

    out = torch.relu(F.conv2d(x_bgr, sd["conv_in.0.weight"], padding=1))
    maps = []
    for n in range(1, 18):
        if n in (4, 7, 10, 13):
            maps.append(sam(out))
        residual = body(n, out)
        out = torch.relu((residual * maps[-1] if 4 <= n <= 15 else residual) + out)
    return maps, F.conv2d(out, sd["conv_out.0.weight"], padding=1)


def test_our_rgb_network_equals_the_release_on_bgr(release_sd, net_b_d):
    sd = {k: v.double() for k, v in release_sd.items()}
    rgb = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    maps, out_bgr = release_forward(sd, rgb.flip(1))
    with torch.no_grad():
        ours = copy.deepcopy(net_b_d).double()(rgb)
    assert out_bgr.abs().max() > 0.1  # a real image comes out, not zeros
    # float64 on both sides: only summation order differs (measured ~1e-15)
    torch.testing.assert_close(ours["out"], out_bgr.flip(1), rtol=0, atol=1e-10)
    assert len(ours["att"]) == 4
    for a, b in zip(ours["att"], maps):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_strict_load_on_cpu(release_sd, net_b_d):
    assert (net_b_d.variant, net_b_d.sam_mode, net_b_d.direction_attention) == ("b_d", "shared", False)
    assert sum(p.numel() for p in net_b_d.parameters()) == 276_704
    assert len(release_sd) == 79
    ours = net_b_d.state_dict()
    assert all(t.device.type == "cpu" for t in ours.values())
    torch.testing.assert_close(ours["conv_in.weight"], release_sd["conv_in.0.weight"][:, [2, 1, 0]])
    torch.testing.assert_close(ours["conv_out.weight"], release_sd["conv_out.0.weight"][[2, 1, 0]])
    torch.testing.assert_close(ours["sabs.3.blocks.2.body.conv2.weight"], release_sd["res_block15.group1.conv2.weight"])
    torch.testing.assert_close(ours["post_blocks.1.body.conv3.weight"], release_sd["res_block17.group1.conv3.weight"])
    for d, name in enumerate(("up", "right", "down", "left")):
        torch.testing.assert_close(
            ours["sams.0.irnn2.weight"][d], release_sd[f"SAM1.irnn2.{name}_weight.weight"].flatten()
        )
        torch.testing.assert_close(ours["sams.0.irnn2.bias"][d], release_sd[f"SAM1.irnn2.{name}_weight.bias"])


def test_load_into_b_f_for_fine_tuning(release_sd):
    net = spanet_from_release(RELEASE, variant="b_f")
    torch.testing.assert_close(
        net.sams[0].attention_layer.conv1.weight, release_sd["SAM1.attention_layer.conv1.weight"]
    )
    torch.testing.assert_close(net.sams[0].attention_layer.conv3.bias, release_sd["SAM1.attention_layer.conv3.bias"])
    with pytest.raises(ValueError, match="shared-SAM"):
        spanet_from_release(RELEASE, variant="b_c")


def test_conversion_errors_name_the_key(release_sd):
    net = SPANet("b_d")
    missing = {k: v for k, v in release_sd.items() if k != "res_block9.group1.conv2.weight"}
    with pytest.raises(ValueError, match="res_block9.group1.conv2.weight"):
        convert_release_state_dict(missing, net)
    extra = dict(release_sd, **{"SAM2.conv_in.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="SAM2.conv_in.weight"):
        convert_release_state_dict(extra, net)
    wrong = dict(release_sd, **{"SAM1.irnn1.left_weight.bias": torch.zeros(31)})
    with pytest.raises(ValueError, match="SAM1.irnn1.left_weight.bias"):
        convert_release_state_dict(wrong, net)
    with pytest.raises(ValueError, match="conv_in.0.weight"):
        convert_release_state_dict(release_sd, SPANet("b_d", channels=16))


def test_load_net_weights_from_our_lightning_checkpoint(tmp_path, net_b_d):
    """A suite checkpoint ('state_dict' with 'net.*' keys, plain hyper-parameters) loads the same way; one that
    carries a pickled Python object (here a functools.partial) is refused, not unpickled."""
    from src.lit.module import DerainModule
    from src.losses.spanet import SPANetLoss

    lit = DerainModule(net=net_b_d, loss=SPANetLoss())
    ckpt = tmp_path / "last.ckpt"
    torch.save(
        {
            "state_dict": lit.state_dict(),
            "epoch": 0,
            "pytorch-lightning_version": "2.6.0",
            "hyper_parameters": {"scheduler_interval": "step"},
            "suite_config": {"run_info": {"model": "b_d"}},
        },
        ckpt,
    )
    fresh = load_net_weights(SPANet("b_d"), ckpt)
    for k, v in net_b_d.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k

    with pytest.raises(ValueError, match=r"last.ckpt.*model=b_d"):
        load_net_weights(SPANet("b_f"), ckpt)  # b_d weights lack the attention branch
    pickled = tmp_path / "pickled.ckpt"
    torch.save(
        {"state_dict": lit.state_dict(), "hyper_parameters": {"optimizer": functools.partial(torch.optim.Adam)}},
        pickled,
    )
    with pytest.raises(ValueError, match=r"pickled.ckpt: refused.*functools.partial"):
        load_net_weights(SPANet("b_d"), pickled)
    bad = tmp_path / "other.pt"
    torch.save({"model": {}}, bad)
    with pytest.raises(ValueError, match="other.pt"):
        load_net_weights(SPANet("b_d"), bad)
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_net_weights(SPANet("b_d"), tmp_path / "nothing.pt")


def test_release_model_config_needs_no_path(release_sd, monkeypatch, tmp_path):
    """model=spanet_release finds weights/ by itself, checks the sha256 and loads the file once."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    import src.utils.checkpoint as checkpoint

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["model=spanet_release", f"paths.root_dir={ROOT}"])
    assert cfg.model.init_from == str(RELEASE) and cfg.model.init_sha256 == RELEASE_SHA256
    reads = []
    real = checkpoint.read_checkpoint
    monkeypatch.setattr(checkpoint, "read_checkpoint", lambda *a, **k: reads.append(a) or real(*a, **k))
    model = instantiate(cfg.model, optimizer=None, scheduler=None)
    assert len(reads) == 1
    net = model.net
    assert (net.variant, sum(p.numel() for p in net.parameters())) == ("b_d", 276_704)
    torch.testing.assert_close(net.conv_out.weight, release_sd["conv_out.0.weight"].flip(0))
    assert instantiate(cfg.model.loss).attention_loss

    # a file of another content under the release's name is refused by its sha256, before it is unpickled
    fake = tmp_path / "spanet_release.pt"
    fake.write_bytes(RELEASE.read_bytes()[:-1] + b"x")
    with pytest.raises(InstantiationException, match="sha256 .* is not the expected"):  # Hydra wraps the error
        instantiate(cfg.model, optimizer=None, scheduler=None, init_from=str(fake))
