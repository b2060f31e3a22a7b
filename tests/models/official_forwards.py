"""Test references: the forward passes of the authors' official RESCAN, DID-MDN and JORDER-E code, written
out as plain functions of a state dict in the authors' own parameter names, and the parameter layouts of
their modules (so random state dicts in their format can be made without the suite's model code).

Sources (read for the computation, restated here):
* RESCAN (Li et al., ECCV 2018), XiaLiPKU/RESCAN, config/model.py: SEBlock, ConvDirec / ConvRNN / ConvGRU /
  ConvLSTM, RESCAN.forward; images BGR in [0, 1] (OpenCV); the net returns the rain layer of every stage.
* DID-MDN (Zhang & Patel, CVPR 2018), hezhangsprinter/DID-MDN, models/derain_dense.py: Dense_rain with
  Dense_base_down0/1/2, BottleneckBlock(1, 2), TransitionBlock(1, 3); input 2x - 1, batch 1, square, side
  divisible by 8; BatchNorm used in training mode ("use netG.train() for testing").
* JORDER-E (Yang et al., TPAMI 2019), flyywh/JORDER-E-Deep-Image-Deraining-TPAMI-2019-Journal,
  src/model/jorder_e.py: JORDER_E = two JORDER stages; images on the 0-255 scale.

Nothing here imports the suite's models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# ------------------------------------------------------------------------------------------------- helpers


def random_state_dict(layout: dict[str, tuple], seed: int, dtype=torch.float64) -> dict[str, Tensor]:
    """Random, deliberately non-default values for every tensor of ``layout`` (name -> shape): conv/linear
    weights U(-s, s) with s = 1.5 / sqrt(fan_in), biases U(-0.5, 0.5), BatchNorm weights 1 + U(-0.3, 0.3).
    No weight is zero or one, so a layer wired to the wrong input, or left out, changes the output."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in layout.items():
        u = torch.rand(shape, generator=g, dtype=dtype) * 2 - 1
        if name.endswith("running_mean"):
            out[name] = u
        elif name.endswith("running_var"):
            out[name] = 1 + 0.5 * u.abs()
        elif name.endswith(".bias"):
            out[name] = 0.5 * u
        elif len(shape) == 1:  # BatchNorm weight
            out[name] = 1 + 0.3 * u
        else:
            fan_in = shape[1] * (shape[2] * shape[3] if len(shape) == 4 else 1)
            out[name] = 1.5 / fan_in**0.5 * u
    return out


def _conv_layout(name: str, cin: int, cout: int, k: int, bias: bool = True) -> dict[str, tuple]:
    d = {f"{name}.weight": (cout, cin, k, k)}
    if bias:
        d[f"{name}.bias"] = (cout,)
    return d


def _bn_layout(name: str, c: int) -> dict[str, tuple]:
    return {f"{name}.{p}": (c,) for p in ("weight", "bias", "running_mean", "running_var")}


# ------------------------------------------------------------------------------------------------- RESCAN
# gates per unit type, in their module's names: conv_x<g> / conv_h<g>; 'RNN' uses conv_x / conv_h, 'Conv' conv
RESCAN_GATES = {"GRU": ("z", "r", "n"), "LSTM": ("f", "i", "o", "j"), "RNN": ("",), "Conv": None}


def rescan_dilations(depth: int) -> list[int]:
    """RecUnit(3, C, 3, 1) followed by RecUnit(C, C, 3, 2**i) for i < depth - 3."""
    return [1] + [2**i for i in range(depth - 3)]


def rescan_layout(unit: str, channel: int = 24, depth: int = 7) -> dict[str, tuple]:
    layout: dict[str, tuple] = {}
    for j, _ in enumerate(rescan_dilations(depth)):
        cin = 3 if j == 0 else channel
        gates = RESCAN_GATES[unit]
        if gates is None:
            layout.update(_conv_layout(f"rnns.{j}.conv", cin, channel, 3))
        else:
            for g in gates:
                layout.update(_conv_layout(f"rnns.{j}.conv_x{g}", cin, channel, 3))
            for g in gates:
                layout.update(_conv_layout(f"rnns.{j}.conv_h{g}", channel, channel, 3))
        layout.update(_se_layout(f"rnns.{j}.se", channel))
    layout.update(_conv_layout("dec.0", channel, channel, 3))
    layout.update(_se_layout("dec.1", channel))
    layout.update(_conv_layout("dec.3", channel, 3, 1))
    return layout


def _se_layout(name: str, c: int, reduction: int = 6) -> dict[str, tuple]:
    # their SEBlock: Linear(c, reduction) -> ReLU -> Linear(reduction, c) -> Sigmoid (note: `reduction` is the
    # hidden width itself, not a ratio)
    return {
        f"{name}.fc.0.weight": (reduction, c),
        f"{name}.fc.0.bias": (reduction,),
        f"{name}.fc.2.weight": (c, reduction),
        f"{name}.fc.2.bias": (c,),
    }


def _se(sd, name, x):
    y = x.mean(dim=(2, 3))
    y = torch.relu(F.linear(y, sd[f"{name}.fc.0.weight"], sd[f"{name}.fc.0.bias"]))
    y = torch.sigmoid(F.linear(y, sd[f"{name}.fc.2.weight"], sd[f"{name}.fc.2.bias"]))
    return x * y[:, :, None, None]


def rescan_official(
    sd: dict, O_bgr: Tensor, unit: str = "GRU", frame: str = "Full", stage_num: int = 4, depth: int = 7
) -> list[Tensor]:
    """Their RESCAN.forward: returns the predicted rain layer of every stage (BGR)."""

    def cx(j, g, x, d):  # input-to-hidden conv of unit j, padding = dilation
        n = f"rnns.{j}.conv_x{g}"
        return F.conv2d(x, sd[n + ".weight"], sd[n + ".bias"], padding=d, dilation=d)

    def ch(j, g, h):
        n = f"rnns.{j}.conv_h{g}"
        return F.conv2d(h, sd[n + ".weight"], sd[n + ".bias"], padding=1)

    def out(j, h):  # every unit ends with LeakyReLU(0.2)(SE(h))
        return F.leaky_relu(_se(sd, f"rnns.{j}.se", h), 0.2)

    def rec_unit(j, x, state, d):
        if unit == "Conv":
            n = f"rnns.{j}.conv"
            return out(j, F.conv2d(x, sd[n + ".weight"], sd[n + ".bias"], padding=d, dilation=d)), None
        if unit == "RNN":
            a = cx(j, "", x, d) if state is None else cx(j, "", x, d) + ch(j, "", state)
            h = out(j, torch.tanh(a))
            return h, h
        if unit == "GRU":
            if state is None:
                h = torch.sigmoid(cx(j, "z", x, d)) * torch.tanh(cx(j, "n", x, d))
            else:
                z = torch.sigmoid(cx(j, "z", x, d) + ch(j, "z", state))
                r = torch.sigmoid(cx(j, "r", x, d) + ch(j, "r", state))
                n = torch.tanh(cx(j, "n", x, d) + ch(j, "n", r * state))
                h = (1 - z) * state + z * n
            h = out(j, h)
            return h, h
        # LSTM
        if state is None:
            c = torch.sigmoid(cx(j, "i", x, d)) * torch.tanh(cx(j, "j", x, d))
            h = torch.sigmoid(cx(j, "o", x, d)) * c
        else:
            hp, cp = state
            f = torch.sigmoid(cx(j, "f", x, d) + ch(j, "f", hp))
            i = torch.sigmoid(cx(j, "i", x, d) + ch(j, "i", hp))
            o = torch.sigmoid(cx(j, "o", x, d) + ch(j, "o", hp))
            g = torch.tanh(cx(j, "j", x, d) + ch(j, "j", hp))
            c = f * cp + i * g
            h = o * torch.tanh(c)
        h = out(j, h)
        return h, (h, c)

    def dec(x):
        x = F.conv2d(x, sd["dec.0.weight"], sd["dec.0.bias"], padding=1)
        x = F.leaky_relu(_se(sd, "dec.1", x), 0.2)
        return F.conv2d(x, sd["dec.3.weight"], sd["dec.3.bias"])

    dil = rescan_dilations(depth)
    states = [None] * len(dil)
    rains: list[Tensor] = []
    x = O_bgr
    for i in range(stage_num):
        new_states = []
        for j, d in enumerate(dil):
            x, st = rec_unit(j, x, states[j], d)
            new_states.append(st)
        x = dec(x)
        if frame == "Add" and i > 0:
            x = x + rains[-1].detach()
        rains.append(x)
        states = new_states
        x = O_bgr - x
    return rains


# ------------------------------------------------------------------------------------------------- DID-MDN
# Dense_base_down0/1/2: conv kernel of the bottleneck blocks; per block (in, growth, transition out, resample);
# input channels of the side convs conv11..conv61; whether the stream module also holds conv_refin, refine3,
# batchnorm20, batchnorm1 (never called).
DIDMDN_STREAMS = {
    "dense0": (
        3,
        [
            (3, 5, 4, "down"),
            (4, 8, 12, "same"),
            (12, 4, 12, "same"),
            (12, 4, 12, "same"),
            (24, 8, 4, "same"),
            (8, 8, 4, "up"),
        ],
        (4, 12, 12, 24, 8, 8),
        False,
    ),
    "dense1": (
        5,
        [
            (3, 13, 8, "down"),
            (8, 16, 16, "down"),
            (16, 16, 16, "same"),
            (16, 16, 16, "same"),
            (32, 8, 8, "up"),
            (16, 8, 4, "up"),
        ],
        (8, 16, 16, 32, 16, 8),
        True,
    ),
    "dense2": (
        7,
        [
            (3, 13, 8, "down"),
            (8, 16, 16, "down"),
            (16, 16, 16, "down"),
            (16, 16, 16, "up"),
            (32, 8, 8, "up"),
            (16, 8, 4, "up"),
        ],
        (8, 16, 16, 32, 16, 8),
        True,
    ),
}


def didmdn_layout() -> dict[str, tuple]:
    """Every tensor of their Dense_rain (372,839 parameters plus BatchNorm buffers)."""
    layout: dict[str, tuple] = {}
    for s, (k, blocks, side, extras) in DIDMDN_STREAMS.items():
        for i, (cin, g, tout, _) in enumerate(blocks, start=1):
            p = f"{s}.dense_block{i}"
            layout.update(_bn_layout(f"{p}.bn1", cin))
            layout.update(_conv_layout(f"{p}.conv1", cin, 4 * g, 1, bias=False))
            layout.update(_bn_layout(f"{p}.bn2", 4 * g))
            layout.update(_conv_layout(f"{p}.conv2", 4 * g, g, k, bias=False))
            layout.update(_bn_layout(f"{s}.trans_block{i}.bn1", cin + g))
            layout[f"{s}.trans_block{i}.conv1.weight"] = (cin + g, tout, 1, 1)  # ConvTranspose2d: (in, out, k, k)
        for i, c in enumerate(side, start=1):
            layout.update(_conv_layout(f"{s}.conv{i}1", c, 1, 3))
        if extras:
            layout.update(_conv_layout(f"{s}.conv_refin", 11, 20, 3))
            layout.update(_conv_layout(f"{s}.refine3", 24, 3, 3))
            layout.update(_bn_layout(f"{s}.batchnorm20", 20))
            layout.update(_bn_layout(f"{s}.batchnorm1", 1))
    layout.update(_conv_layout("conv_refin", 47, 47, 3))
    for i in range(1, 5):
        layout.update(_conv_layout(f"conv10{i}0", 47, 2, 1))
    layout.update(_conv_layout("refine3", 55, 3, 3))
    layout.update(_conv_layout("refineclean1", 3, 8, 7))
    layout.update(_conv_layout("refineclean2", 8, 3, 3))
    layout.update(_bn_layout("batchnorm20", 20))
    layout.update(_bn_layout("batchnorm1", 1))
    return layout


def _bn_train(sd, name, x):
    return F.batch_norm(x, None, None, sd[f"{name}.weight"], sd[f"{name}.bias"], training=True, eps=1e-5)


def _didmdn_stream(sd, s, x):
    k, blocks, _, _ = DIDMDN_STREAMS[s]

    def step(i, x):
        p = f"{s}.dense_block{i}"
        y = F.conv2d(torch.relu(_bn_train(sd, f"{p}.bn1", x)), sd[f"{p}.conv1.weight"])
        y = F.conv2d(torch.relu(_bn_train(sd, f"{p}.bn2", y)), sd[f"{p}.conv2.weight"], padding=k // 2)
        y = torch.cat([x, y], 1)
        t = f"{s}.trans_block{i}"
        y = F.conv_transpose2d(torch.relu(_bn_train(sd, f"{t}.bn1", y)), sd[f"{t}.conv1.weight"])
        kind = blocks[i - 1][3]
        if kind == "down":
            return F.avg_pool2d(y, 2)
        if kind == "up":
            return F.interpolate(y, scale_factor=2, mode="nearest")
        return y

    x1 = step(1, x)
    x2 = step(2, x1)
    x3 = step(3, x2)
    x4 = torch.cat([step(4, x3), x2], 1)
    x5 = torch.cat([step(5, x4), x1], 1)
    x6 = step(6, x5)
    # all five side maps come from conv11 of x1 in their code
    side = F.interpolate(
        F.leaky_relu(F.conv2d(x1, sd[f"{s}.conv11.weight"], sd[f"{s}.conv11.bias"], padding=1), 0.2),
        size=x6.shape[2:],
        mode="nearest",
    )
    return torch.cat([x6, side, side, side, side, side, x], 1)


def didmdn_official(sd: dict, x: Tensor, label: float) -> tuple[Tensor, Tensor]:
    """Their Dense_rain.forward(x, label) for x (1, 3, S, S) in [-1, 1]: (residual, clean2)."""
    assert x.shape[0] == 1 and x.shape[2] == x.shape[3] and x.shape[2] % 8 == 0, "the release's input limits"
    x3 = _didmdn_stream(sd, "dense2", x)
    x2 = _didmdn_stream(sd, "dense1", x)
    x1 = _didmdn_stream(sd, "dense0", x)
    side = x3.shape[3]
    label_map = torch.full((1, 8, side, side), float(label), dtype=x.dtype)
    x8 = torch.cat([x1, x, x2, x3, label_map], 1)
    x9 = F.leaky_relu(F.conv2d(x8, sd["conv_refin.weight"], sd["conv_refin.bias"], padding=1), 0.2)
    pyramid = []
    for i, k in enumerate((32, 16, 8, 4), start=1):
        p = F.leaky_relu(F.conv2d(F.avg_pool2d(x9, k), sd[f"conv10{i}0.weight"], sd[f"conv10{i}0.bias"]), 0.2)
        pyramid.append(F.interpolate(p, size=x9.shape[2:], mode="nearest"))
    residual = torch.tanh(F.conv2d(torch.cat([*pyramid, x9], 1), sd["refine3.weight"], sd["refine3.bias"], padding=1))
    clean = x - residual
    clean1 = F.leaky_relu(F.conv2d(clean, sd["refineclean1.weight"], sd["refineclean1.bias"], padding=3), 0.2)
    clean2 = torch.tanh(F.conv2d(clean1, sd["refineclean2.weight"], sd["refineclean2.bias"], padding=1))
    return residual, clean2


# ------------------------------------------------------------------------------------------------- JORDER-E
def jorder_e_layout(g0: int = 64) -> dict[str, tuple]:
    layout: dict[str, tuple] = {}
    for s in ("jorder1", "jorder2"):
        layout.update(_conv_layout(f"{s}.encoder", 6, g0, 3))
        for r in range(1, 10):
            for c in range(1, 7):
                layout.update(_conv_layout(f"{s}.updater.res{r}.conv{c}", g0, g0, 3))
        for head, cout in (("mask", 2), ("level", 3)):
            layout.update(_conv_layout(f"{s}.{head}_estimator1", g0, 8, 3))
            layout.update(_conv_layout(f"{s}.{head}_estimator2", 8, cout, 3))
            for wb in ("w", "b"):
                layout.update(_conv_layout(f"{s}.{head}_F_{wb}_encoder1", cout, 16, 3))
                layout.update(_conv_layout(f"{s}.{head}_F_{wb}_encoder2", 16, g0, 3))
        layout.update(_conv_layout(f"{s}.decoder.0", g0, g0, 3))
        layout.update(_conv_layout(f"{s}.decoder.1", g0, 3, 3))
    return layout


def jorder_e_official(sd: dict, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Their JORDER_E.forward on x (B, 3, H, W) on the 0-255 scale. Returns (x2, x1, mask2, level2) as they do,
    plus (mask1, level1), which the suite also returns."""

    def conv(name, t, d=1):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=d, dilation=d)

    def stage(s, x, x_prev, feat_pre, mask_prev, level_prev):
        second = x_prev is not None
        f = conv(f"{s}.encoder", torch.cat([x, x_prev if second else x], 1))
        feats = []
        for r in range(1, 10):
            p = f"{s}.updater.res{r}"
            a = torch.relu(conv(f"{p}.conv2", torch.relu(conv(f"{p}.conv1", f))))
            b = torch.relu(conv(f"{p}.conv4", torch.relu(conv(f"{p}.conv3", f, 2)), 2))
            c = torch.relu(conv(f"{p}.conv6", torch.relu(conv(f"{p}.conv5", f, 2)), 4))
            f = f + a + 0.1 * b + c * 0.1 + (feat_pre[r - 1] if second else 0)
            feats.append(f)
        mask = conv(f"{s}.mask_estimator2", conv(f"{s}.mask_estimator1", f))
        level = conv(f"{s}.level_estimator2", conv(f"{s}.level_estimator1", f))
        if second:
            mask, level = mask + mask_prev, level + level_prev

        def enc(name, t):
            return conv(f"{name}2", torch.relu(conv(f"{name}1", t)))

        f1 = enc(f"{s}.mask_F_b_encoder", mask) + f + enc(f"{s}.level_F_b_encoder", level)
        f2 = enc(f"{s}.mask_F_w_encoder", mask) * f * enc(f"{s}.level_F_w_encoder", level)
        out = conv(f"{s}.decoder.1", conv(f"{s}.decoder.0", f1 + f2)) + x
        return out, feats, mask, level

    x1, feat1, mask1, level1 = stage("jorder1", x, None, None, None, None)
    x2, _, mask2, level2 = stage("jorder2", x, x1, feat1, mask1, level1)
    return x2, x1, mask2, level2, mask1, level1
