"""Checkpoint reading: weights-only always, a clear error per kind of foreign file, init_from, ckpt_path refusal."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from src.models.ddn import DDN
from src.models.spanet import SPANet
from src.train import train
from src.utils.checkpoint import (
    CheckpointError,
    IncompleteWeightsError,
    check_resumable,
    init_weights,
    load_net_weights,
    read_checkpoint,
    require_complete,
)
from tests.conftest import CONF, ROOT

RELEASE = ROOT / "weights" / "spanet_release.pt"


class _Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def suite_ckpt(tmp_path_factory) -> Path:
    """last.ckpt of a real 4-step src.train run of model=b_a (tiny synthetic data)."""
    from tests.conftest import TINY, TINY_SYNTHETIC, compose_cfg

    out = tmp_path_factory.mktemp("run")
    train(compose_cfg("train", TINY_SYNTHETIC + TINY + ["model=b_a", "test=false"], out))
    return out / "checkpoints" / "last.ckpt"


def test_suite_checkpoints_load_weights_only(suite_ckpt):
    """What src.train writes holds only tensors and plain containers: torch's own weights-only load reads it."""
    raw = torch.load(suite_ckpt, map_location="cpu", weights_only=True)
    assert isinstance(raw["suite_config"], dict) and raw["suite_config"]["run_info"]["model"] == "b_a"
    ckpt = read_checkpoint(suite_ckpt)
    assert (ckpt.kind, ckpt.model, ckpt.contents["global_step"]) == ("suite", "b_a", 4)
    net = load_net_weights(SPANet("b_a"), ckpt)
    torch.testing.assert_close(net.conv_out.weight, raw["state_dict"]["net.conv_out.weight"])


@pytest.mark.parametrize("schedule", sorted(p.stem for p in (CONF / "schedule").glob("*.yaml")))
def test_every_schedule_state_is_weights_only(schedule):
    """Optimiser and scheduler states of every schedule survive torch.save / weights-only load (resume)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"schedule={schedule}"])
    params = [torch.nn.Parameter(torch.randn(3))]
    opt = instantiate(cfg.schedule.optimizer)(params=params)
    sched = instantiate(cfg.schedule.scheduler)(optimizer=opt) if cfg.schedule.get("scheduler") else None
    params[0].sum().backward()
    opt.step()
    if sched is not None:
        sched.step()
    buf = io.BytesIO()
    torch.save({"optimizer_states": [opt.state_dict()], "lr_schedulers": [sched.state_dict()] if sched else []}, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=True)
    assert back["optimizer_states"][0]["param_groups"][0]["lr"] == opt.param_groups[0]["lr"]


def test_pickle_payload_is_refused_without_running(tmp_path, suite_ckpt):
    """A checkpoint carrying a __reduce__ payload is refused by name; the payload never runs."""
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "evil.ckpt"
    good = torch.load(suite_ckpt, map_location="cpu", weights_only=True)
    torch.save({**good, "extra": _Payload(marker)}, evil)
    plain = tmp_path / "evil.pkl"
    import pickle

    plain.write_bytes(pickle.dumps({"net": _Payload(marker)}))
    for path, what in ((evil, r"refused: .*posix.system"), (plain, "refused")):
        with pytest.raises(CheckpointError, match=rf"{path.name}: {what}"):
            read_checkpoint(path)
        with pytest.raises(CheckpointError, match=path.name):
            check_resumable(path)
    assert not marker.exists()


def test_payload_through_the_entry_points(tmp_path, suite_ckpt):
    """src.predict / src.eval / src.train with the payload as ckpt_path: non-zero exit, the message, no side effect."""
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({**torch.load(suite_ckpt, weights_only=True), "extra": _Payload(marker)}, evil)
    img = tmp_path / "in.png"
    import imageio.v3 as iio

    iio.imwrite(img, np.zeros((8, 8, 3), np.uint8))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    for cmd in (["src.predict", f"input={img}", f"output={tmp_path / 'out'}"], ["src.eval"], ["src.train"]):
        proc = subprocess.run(
            [sys.executable, "-m", *cmd, f"ckpt_path={evil}", f"paths.log_dir={tmp_path / 'logs'}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode != 0, cmd
        assert "evil.ckpt: refused" in proc.stderr, proc.stderr[-2000:]
    assert not marker.exists()


def test_foreign_files_are_named_and_described(tmp_path):
    import imageio.v3 as iio

    cases = {}
    iio.imwrite(tmp_path / "photo.png", np.zeros((4, 4, 3), np.uint8))
    cases["photo.png"] = "not a PyTorch checkpoint: a PNG image"
    (tmp_path / "notes.txt").write_text("hello\n")
    cases["notes.txt"] = "not a PyTorch checkpoint: a text file"
    (tmp_path / "empty.pt").write_bytes(b"")
    cases["empty.pt"] = "empty file"
    buf = io.BytesIO()
    torch.save({"a": torch.zeros(1000)}, buf)
    (tmp_path / "half.pt").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    cases["half.pt"] = "truncated or damaged"
    (tmp_path / "half_release.pt").write_bytes(RELEASE.read_bytes()[:100_000])
    cases["half_release.pt"] = "truncated or damaged"
    (tmp_path / "one_byte.pt").write_bytes(b"\x80")  # a pickle's first opcode and nothing after it
    cases["one_byte.pt"] = "truncated or damaged"
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    cases["list.pt"] = "holds a list, not a checkpoint dict"
    for name, message in cases.items():
        with pytest.raises(CheckpointError, match=rf"{name}: {message}"):
            read_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="is a directory"):
        read_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        read_checkpoint(tmp_path / "nothing.pt")


def test_another_models_checkpoint_says_which_model(suite_ckpt):
    with pytest.raises(CheckpointError, match="this checkpoint is model=b_a"):
        load_net_weights(DDN(), suite_ckpt)
    with pytest.raises(CheckpointError, match="this checkpoint is model=b_a"):
        init_weights(DDN(), suite_ckpt)
    with pytest.raises(CheckpointError, match=r"this checkpoint is model=b_a, but this run is model=ddn"):
        check_resumable(suite_ckpt, model="ddn")
    assert check_resumable(suite_ckpt, model="b_a").kind == "suite"
    with pytest.raises(CheckpointError, match="authors' released SPANet.*cannot be loaded into DDN"):
        load_net_weights(DDN(), RELEASE)


def test_init_from_reports_what_was_and_was_not_loaded(tmp_path, suite_ckpt, caplog):
    # release into b_f: everything fits (the attention branch gets the release's untrained values)
    report = init_weights(SPANet("b_f"), RELEASE)
    assert len(report["loaded"]) == len(SPANet("b_f").state_dict()) and not report["missing"]
    # a suite checkpoint of b_a into b_d: the 17 blocks and conv_in/out fit, the SAM keeps its initial values
    net = SPANet("b_d")
    sam_before = net.sams[0].conv_in.weight.clone()
    with caplog.at_level("INFO"):
        report = init_weights(net, suite_ckpt)
    assert report["loaded"] == sorted(SPANet("b_a").state_dict())
    assert report["missing"] and all(k.startswith("sams.0.") for k in report["missing"])
    assert torch.equal(net.sams[0].conv_in.weight, sam_before)
    assert "loaded 53 of the network's" in caplog.text and "keep their initial values" in caplog.text
    # a plain state dict (DataParallel prefix), with one tensor of another shape
    sd = {f"module.{k}": v.clone() for k, v in SPANet("b_a", channels=32).state_dict().items()}
    sd["module.conv_in.weight"] = torch.zeros(32, 3, 5, 5)
    torch.save(sd, tmp_path / "plain.pth")
    report = init_weights(SPANet("b_a"), tmp_path / "plain.pth")
    assert report["mismatched"] == ["conv_in.weight"] and "conv_in.weight" in report["missing"]


def test_prediction_requires_every_tensor_from_init_from(tmp_path, suite_ckpt):
    """What src.predict / src.eval check after model.init_from (DRSformer's hint: tests/models/test_drsformer.py)."""
    net = SPANet("b_d")
    require_complete(net, init_weights(net, RELEASE), RELEASE)  # model=spanet_release: the file fills b_d
    report = init_weights(net, suite_ckpt)  # b_a weights: the SAM would stay random
    n_sam = sum(k.startswith("sams.0.") for k in net.state_dict())
    with pytest.raises(
        IncompleteWeightsError,
        match=rf"model.init_from={suite_ckpt}: {n_sam} of the network's "
        rf"{len(net.state_dict())} tensors are not in the file .* \(sams\.0\..*; pick the model= the "
        "file was trained as\\.",
    ):
        require_complete(net, report, suite_ckpt)
    # a tensor of another shape: the generic hint says so
    sd = SPANet("b_a", channels=32).state_dict()
    sd["conv_in.weight"] = torch.zeros(32, 3, 5, 5)
    torch.save(sd, tmp_path / "plain.pth")
    net = SPANet("b_a")
    with pytest.raises(IncompleteWeightsError, match=r"1 of the network's \d+ tensors .*\(1 have other shapes"):
        require_complete(net, init_weights(net, tmp_path / "plain.pth"), tmp_path / "plain.pth")


def test_train_ckpt_path_refuses_the_release_and_points_to_init_from(train_cfg):
    cfg = train_cfg("model=spanet_release", f"ckpt_path={RELEASE}")
    with pytest.raises(
        CheckpointError,
        match=r"authors' released SPANet weights.*not a checkpoint of a src.train "
        r"run.*model.init_from=",
    ):
        train(cfg)
