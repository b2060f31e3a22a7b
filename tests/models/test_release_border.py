"""The released checkpoint under the IRNN border rule it was trained with.

The checkpoint file was committed together with a pure-PyTorch IRNN (their ``irnn_layer``) whose border
element is the input itself (``top_right = x.clone()``, no ReLU); the later CUDA kernel, which the release
code uses today, applies ReLU there. Reference: that ``irnn_layer`` and the SPANet forward of the same commit,
transcribed below with their 1x1 depthwise convolutions (weight AND bias) as the recurrence, on the release's
tensors as stored (BGR), in float64.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from src.utils.release import spanet_from_release

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "weights" / "spanet_release.pt"
pytestmark = pytest.mark.skipif(not RELEASE.is_file(), reason=f"released checkpoint not found at {RELEASE}")


def irnn_layer_at_checkpoint_commit(x, sd, prefix):
    """Their irnn_layer.forward: outputs start as clones of x and are overwritten from index 1 on with
    relu(depthwise_conv1x1(h_prev) + x) (the conv adds the bias)."""
    def conv(d, t):
        return F.conv2d(t, sd[f"{prefix}.{d}_weight.weight"], sd[f"{prefix}.{d}_weight.bias"], groups=t.shape[1])

    _, _, H, W = x.shape
    top_left, top_right, top_up, top_down = x.clone(), x.clone(), x.clone(), x.clone()
    for i in range(H - 1):
        top_down[:, :, i + 1, :] = F.relu(conv("down", top_down[:, :, i:i + 1, :].clone())[:, :, 0, :] + x[:, :, i + 1, :])
        top_up[:, :, -(i + 2), :] = F.relu(conv("up", top_up[:, :, -(i + 1):H - i, :].clone())[:, :, 0, :] + x[:, :, -(i + 2), :])
    for i in range(W - 1):
        top_right[:, :, :, i + 1] = F.relu(conv("right", top_right[:, :, :, i:i + 1].clone())[:, :, :, 0] + top_right[:, :, :, i + 1])
        top_left[:, :, :, -(i + 2)] = F.relu(conv("left", top_left[:, :, :, -(i + 1):W - i].clone())[:, :, :, 0] + top_left[:, :, :, -(i + 2)])
    return top_up, top_right, top_down, top_left


def spanet_at_checkpoint_commit(sd, x_bgr):
    """SPANet.forward of the same commit (direction weights computed and thrown away: omitted)."""
    def block(n, x):
        p = f"res_block{n}.group1."
        y = F.relu(F.conv2d(x, sd[p + "conv1.weight"]))
        y = F.relu(F.conv2d(y, sd[p + "conv2.weight"], padding=2, dilation=2))
        return F.conv2d(y, sd[p + "conv3.weight"])

    def sam(x):
        out = F.conv2d(x, sd["SAM1.conv_in.weight"], padding=1)
        out = F.conv2d(torch.cat(irnn_layer_at_checkpoint_commit(out, sd, "SAM1.irnn1"), 1), sd["SAM1.conv2.weight"], padding=1)
        out = F.conv2d(torch.cat(irnn_layer_at_checkpoint_commit(out, sd, "SAM1.irnn2"), 1), sd["SAM1.conv3.weight"], padding=1)
        return torch.sigmoid(F.conv2d(F.relu(out), sd["SAM1.conv_out.weight"]))

    out = F.relu(F.conv2d(x_bgr, sd["conv_in.0.weight"], padding=1))
    for n in (1, 2, 3):
        out = F.relu(block(n, out) + out)
    maps = []
    for first in (4, 7, 10, 13):
        maps.append(sam(out))
        for n in range(first, first + 3):
            out = F.relu(block(n, out) * maps[-1] + out)
    for n in (16, 17):
        out = F.relu(block(n, out) + out)
    return maps, F.conv2d(out, sd["conv_out.0.weight"], padding=1)


@pytest.fixture(scope="module")
def release_sd():
    sd = torch.load(RELEASE, map_location="cpu", weights_only=True)["net"]
    return {k: v.double() for k, v in sd.items()}


def test_identity_border_reproduces_the_checkpoint_commit(release_sd):
    rgb = torch.rand(1, 3, 18, 21, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    rgb[:, :, 5:9] -= 0.5  # negative values reach the IRNN borders more often
    maps, ref_bgr = spanet_at_checkpoint_commit(release_sd, rgb.flip(1))
    with torch.no_grad():
        ours = spanet_from_release(RELEASE, irnn_border="identity", irnn_backend="torch").double()(rgb)
        relu = spanet_from_release(RELEASE, irnn_border="relu", irnn_backend="torch").double()(rgb)
    torch.testing.assert_close(ours["out"], ref_bgr.flip(1), rtol=0, atol=1e-10)
    for a, b in zip(ours["att"], maps):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    # the rule matters: the ReLU border (the release code today) gives another image
    assert (relu["out"] - ours["out"]).abs().max() > 1e-4
