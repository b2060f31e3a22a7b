"""Each speed option on a tiny CPU run of SPANet (with its IRNN) gives the default run's validation PSNR within
a stated tolerance: bf16-mixed 0.1 dB (autocast changes the convolutions' rounding; measured 0.007 dB),
the others 1e-3 dB (same arithmetic up to float32 reassociation; measured < 1e-5 dB)."""

from __future__ import annotations

import pytest
import torch

from src.train import train
from tests.conftest import TINY, TINY_SYNTHETIC, compose_cfg

RUN = [
    *TINY_SYNTHETIC,
    *TINY,
    "model=spanet",
    "logger=csv",
    "test=false",
    "schedule.max_steps=6",
    "schedule.val_every=3",
]
OPTIONS = {
    "bf16-mixed": (["trainer.precision=bf16-mixed"], 0.1),
    "channels_last": (["speed.channels_last=true"], 1e-3),
    # aot_eager: traced like inductor (dynamo + AOTAutograd, the IRNN's autograd.Function included) without
    # generating C++ (inductor on CPU takes minutes to compile SPANet)
    "compile": (["speed.compile=true", "speed.compile_backend=aot_eager"], 1e-3),
    "cudnn_benchmark": (["trainer.benchmark=true"], 1e-3),
    "pin_memory+persistent_workers": (
        ["data.pin_memory=true", "+data.persistent_workers=true", "data.num_workers=1"],
        1e-3,
    ),
}


def val_psnr(tmp_path, *overrides: str) -> float:
    result = train(compose_cfg("train", [*RUN, *overrides], tmp_path))
    return result["val"]["mean"]["spanet"]["psnr"]


@pytest.fixture(scope="module")
def default_psnr(tmp_path_factory):
    return val_psnr(tmp_path_factory.mktemp("default"))


@pytest.mark.parametrize("name", list(OPTIONS))
def test_speed_option_keeps_validation_psnr(tmp_path, default_psnr, name):
    overrides, tol = OPTIONS[name]
    psnr = val_psnr(tmp_path, *overrides)
    assert psnr == pytest.approx(default_psnr, abs=tol)
    assert psnr > 10  # a real score, not a NaN or an untrained zero


def test_bf16_keeps_the_irnn_and_the_loss_in_float32():
    from src.losses.spanet import SPANetLoss  # noqa: F401  (the loss SPANet trains with)
    from src.models.irnn import IRNN

    layer = IRNN(3)
    x = torch.rand(1, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(torch.nn.functional.conv2d(x, torch.eye(3).view(3, 3, 1, 1)))  # a bf16 activation
    assert y.dtype == torch.float32
    with torch.autocast("cpu", enabled=False):
        ref = layer(x.bfloat16().float())
    torch.testing.assert_close(y, ref)


def test_compile_keeps_checkpoint_names_of_the_plain_network():
    from src.lit.speed import SpeedOptions
    from src.models.spanet import SPANet

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = SPANet()

    module = Holder()
    names = set(module.state_dict())
    SpeedOptions(compile=True, compile_backend="aot_eager", channels_last=True).setup(None, module, "fit")
    assert set(module.state_dict()) == names  # no "_orig_mod." prefix: src.eval reads these checkpoints
    assert next(iter(p for p in module.net.parameters() if p.dim() == 4)).is_contiguous(
        memory_format=torch.channels_last
    )
