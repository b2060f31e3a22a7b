"""The released checkpoint under the IRNN border rule it was trained with.

The checkpoint file was committed together with a pure-PyTorch IRNN (their ``irnn_layer``) whose border
element is the input itself (the outputs start as copies of x, no ReLU); the later CUDA kernel, which the
release code uses today, applies ReLU there. Reference: that ``irnn_layer``, restated below with its 1x1
depthwise convolutions (weight AND bias) as the recurrence, inside the release's forward
(tests/models/test_spanet_release.py), on the release's tensors as stored (BGR), in float64.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.models.test_spanet_release import RELEASE, release_forward, spanet_from_release


def irnn_at_checkpoint_commit(x, sd, prefix):
    """Their irnn_layer.forward: each direction's output starts as a copy of x; moving away from the border,
    element i is overwritten with relu(depthwise_conv1x1(element before it) + x_i), the conv adding the bias.
    Returns (up, right, down, left)."""

    def conv(d, t):
        return F.conv2d(t, sd[f"{prefix}.{d}_weight.weight"], sd[f"{prefix}.{d}_weight.bias"], groups=t.shape[1])

    _, _, H, W = x.shape
    out = {d: x.clone() for d in ("up", "right", "down", "left")}
    for d, axis, order in (
        ("down", 2, range(H)),
        ("up", 2, range(H - 1, -1, -1)),
        ("right", 3, range(W)),
        ("left", 3, range(W - 1, -1, -1)),
    ):
        order = list(order)
        for prev, i in zip(order, order[1:]):
            h_prev = out[d].narrow(axis, prev, 1)
            out[d].select(axis, i).copy_(F.relu(conv(d, h_prev).squeeze(axis) + x.select(axis, i)))
    return out["up"], out["right"], out["down"], out["left"]


@pytest.fixture(scope="module")
def release_sd():
    sd = torch.load(RELEASE, map_location="cpu", weights_only=True)["net"]
    return {k: v.double() for k, v in sd.items()}


def test_identity_border_reproduces_the_checkpoint_commit(release_sd):
    rgb = torch.rand(1, 3, 18, 21, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    rgb[:, :, 5:9] -= 0.5  # negative values reach the IRNN borders more often
    maps, ref_bgr = release_forward(release_sd, rgb.flip(1), irnn=irnn_at_checkpoint_commit)
    with torch.no_grad():
        ours = spanet_from_release(RELEASE, irnn_border="identity", irnn_backend="torch").double()(rgb)
        relu = spanet_from_release(RELEASE, irnn_border="relu", irnn_backend="torch").double()(rgb)
    torch.testing.assert_close(ours["out"], ref_bgr.flip(1), rtol=0, atol=1e-10)
    for a, b in zip(ours["att"], maps):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    # the rule matters: the ReLU border (the release code today) gives another image
    assert (relu["out"] - ours["out"]).abs().max() > 1e-4
