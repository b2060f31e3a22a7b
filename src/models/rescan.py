"""RESCAN, Li et al., "Recurrent squeeze-and-excitation context aggregation net for single image deraining"
(ECCV 2018), as in the authors' PyTorch code (config/model.py; docs/models.md).

Image convention: ``forward(x)`` takes the rainy image ``O`` = ``x`` of shape (B, 3, H, W), RGB, values in
[0, 1], any H, W >= 1. Each stage s predicts the rain layer ``R_s`` (same scale, can be
negative); the derained image of stage s is ``O - R_s``, and ``out`` is the last stage's, not clamped.

Structure (width C = 24, 4 stages, 5 recurrent units)::

    stage s:  h = O (s = 1) or O - R_{s-1} (s > 1)
              for unit j in 1..5 (input-conv dilation 1, 1, 2, 4, 8; hidden-to-hidden conv 3x3, dilation 1):
                  h, state_j = unit_j(h, state_j from stage s-1)      every unit ends with LeakyReLU(0.2)(SE(h))
              R_s = conv1x1 C->3 (LeakyReLU(0.2)(SE(conv3x3 C->C (h))))
              'add' frame: R_s = R_s + R_{s-1}.detach()   ('full' frame: R_s as is)

SE = global average pool -> Linear(C->6) -> ReLU -> Linear(6->C) -> sigmoid, channel gating (with biases).

The authors' released weights (a ``{'net': state_dict, ...}`` file of their train.py) load with
:meth:`RESCAN.load_release_state_dict`: their names (``rnns.<j>.conv_xz``, ``dec.<i>``, ...) are mapped to
ours, and because their code reads images with OpenCV (BGR), the first unit's input channels and the last
decoder conv's output channels are reversed, so the network takes and returns RGB.
Unit types (``unit``): ``gru`` (default), ``lstm``, ``rnn`` and ``conv`` (no recurrence). Parameter counts:
GRU 149,823; LSTM 197,367; RNN 54,735; conv 28,695. (The GRU's 'r' and the LSTM's 'f' gate convs are
used from the second stage on only.) The first stage has no previous state: the GRU then computes ``h = z * tanh(n)``
and the LSTM ``c = i * j``, ``h = o * c``, exactly as the release does.
"""

from __future__ import annotations

import re
from typing import Mapping, Optional

import torch
from torch import Tensor, nn

FRAMES = ("full", "add")


class SEBlock(nn.Module):
    """Squeeze-and-excitation: ``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))``; fc1: C->squeeze, fc2: squeeze->C."""

    def __init__(self, channels: int, squeeze: int = 6) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, squeeze), nn.ReLU(inplace=True), nn.Linear(squeeze, channels), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> Tensor:
        w = self.fc(x.mean(dim=(2, 3)))
        return x * w[:, :, None, None]


class _RecurrentUnit(nn.Module):
    """Base of the four unit types: ``n_gates`` input convs (3x3, given dilation) and as many hidden convs
    (3x3, dilation 1), gates named by ``gates``; output ``LeakyReLU(0.2)(SE(h))``.

    ``forward(x, state)`` returns ``(h, new_state)``; ``state`` is None at the first stage.
    """

    gates: tuple[str, ...] = ()
    recurrent: bool = True

    def __init__(self, cin: int, channels: int, dilation: int) -> None:
        super().__init__()
        self.conv_x = nn.ModuleDict(
            {g: nn.Conv2d(cin, channels, 3, padding=dilation, dilation=dilation) for g in self.gates}
        )
        if self.recurrent:
            self.conv_h = nn.ModuleDict({g: nn.Conv2d(channels, channels, 3, padding=1) for g in self.gates})
        self.se = SEBlock(channels)
        self.act = nn.LeakyReLU(0.2)

    def _out(self, h: Tensor) -> Tensor:
        return self.act(self.se(h))


class ConvUnit(_RecurrentUnit):
    """Plain dilated conv, no recurrence (the release's 'Conv' / ConvDirec)."""

    gates = ("x",)
    recurrent = False

    def forward(self, x: Tensor, state: Optional[object] = None) -> tuple[Tensor, None]:
        return self._out(self.conv_x["x"](x)), None


class RNNUnit(_RecurrentUnit):
    """``h = tanh(W_x * x + W_h * h_prev)`` (no ``W_h`` term at the first stage)."""

    gates = ("h",)

    def forward(self, x: Tensor, state: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        a = self.conv_x["h"](x)
        if state is not None:
            a = a + self.conv_h["h"](state)
        h = self._out(torch.tanh(a))
        return h, h


class GRUUnit(_RecurrentUnit):
    """Convolutional GRU: z (update), r (reset), n (candidate); ``h = (1 - z) h_prev + z n``."""

    gates = ("z", "r", "n")

    def forward(self, x: Tensor, state: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        cx, ch = self.conv_x, self.conv_h
        if state is None:
            h = torch.sigmoid(cx["z"](x)) * torch.tanh(cx["n"](x))
        else:
            z = torch.sigmoid(cx["z"](x) + ch["z"](state))
            r = torch.sigmoid(cx["r"](x) + ch["r"](state))
            n = torch.tanh(cx["n"](x) + ch["n"](r * state))
            h = (1 - z) * state + z * n
        h = self._out(h)
        return h, h


class LSTMUnit(_RecurrentUnit):
    """Convolutional LSTM: gates f, i, o and candidate j; state (h, c)."""

    gates = ("f", "i", "o", "j")

    def forward(self, x: Tensor, state: Optional[tuple[Tensor, Tensor]] = None):
        cx, ch = self.conv_x, self.conv_h
        if state is None:
            c = torch.sigmoid(cx["i"](x)) * torch.tanh(cx["j"](x))
            h = torch.sigmoid(cx["o"](x)) * c
        else:
            h_prev, c_prev = state
            f = torch.sigmoid(cx["f"](x) + ch["f"](h_prev))
            i = torch.sigmoid(cx["i"](x) + ch["i"](h_prev))
            o = torch.sigmoid(cx["o"](x) + ch["o"](h_prev))
            j = torch.tanh(cx["j"](x) + ch["j"](h_prev))
            c = f * c_prev + i * j
            h = o * torch.tanh(c)
        h = self._out(h)
        return h, (h, c)


UNITS: dict[str, type[_RecurrentUnit]] = {"gru": GRUUnit, "lstm": LSTMUnit, "rnn": RNNUnit, "conv": ConvUnit}


class RESCAN(nn.Module):
    """Recurrent SE context aggregation net. See the module docstring for the structure.

    Args:
        channels: feature width (24).
        stages: number of stages (4).
        dilations: input-conv dilation of each recurrent unit ((1, 1, 2, 4, 8): the release's depth 7).
        unit: 'gru' | 'lstm' | 'rnn' | 'conv'.
        frame: 'full' (each stage predicts the whole rain layer) or 'add' (adds the previous, detached one).

    ``forward(x)`` returns ``{"out": O - R_S, "rain_layers": [R_1..R_S], "stages": [O - R_1, ..., O - R_S],
    "vis": {"stage1": ..., ...}}`` (all (B, 3, H, W); vis clamped to [0, 1]).
    """

    uses_label: bool = False

    def __init__(
        self,
        channels: int = 24,
        stages: int = 4,
        dilations: tuple[int, ...] | list[int] = (1, 1, 2, 4, 8),
        unit: str = "gru",
        frame: str = "full",
    ) -> None:
        super().__init__()
        unit, frame = str(unit).lower(), str(frame).lower()
        if unit not in UNITS:
            raise ValueError(f"model.net.unit must be one of {sorted(UNITS)}, got {unit!r}")
        if frame not in FRAMES:
            raise ValueError(f"model.net.frame must be one of {FRAMES}, got {frame!r}")
        if stages < 1 or not dilations:
            raise ValueError(
                f"model.net.stages must be >= 1 and model.net.dilations non-empty, got {stages}, {dilations}"
            )
        self.stages, self.frame = int(stages), frame
        cls = UNITS[unit]
        self.units = nn.ModuleList(cls(3 if j == 0 else channels, channels, int(d)) for j, d in enumerate(dilations))
        self.decoder = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            SEBlock(channels),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 3, 1),
        )

    def forward(self, x: Tensor) -> dict:
        states: list = [None] * len(self.units)
        rain_layers: list[Tensor] = []
        h = x
        for _ in range(self.stages):
            for j, unit in enumerate(self.units):
                h, states[j] = unit(h, states[j])
            rain = self.decoder(h)
            if self.frame == "add" and rain_layers:
                rain = rain + rain_layers[-1].detach()
            rain_layers.append(rain)
            h = x - rain
        stages = [x - r for r in rain_layers]
        vis = {f"stage{s + 1}": o.clamp(0, 1) for s, o in enumerate(stages)}
        return {"out": stages[-1], "rain_layers": rain_layers, "stages": stages, "vis": vis}

    # --- the authors' released weights ------------------------------------------------------------------
    def convert_release_state_dict(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A state dict saved by the authors' code (their ``'net'`` entry; a ``module.`` prefix of DataParallel
        is stripped) in this network's naming and channel order (BGR -> RGB), checked strictly. The network
        must be built with the release's unit type, channels and dilations (their settings.py: ``uint``,
        ``channel``, ``depth``). A missing, unexpected or wrongly shaped key raises ``KeyError`` /
        ``ValueError`` naming it."""
        release = {k.removeprefix("module."): v for k, v in state_dict.items()}
        own = self.state_dict()
        converted: dict[str, Tensor] = {}
        for key, target in own.items():
            src = release_key(key)
            if src not in release:
                raise KeyError(
                    f"RESCAN release weights: missing key {src!r} (for {key!r}); is the unit type / "
                    "depth the release's?"
                )
            value = release[src]
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(
                    f"RESCAN release weights: {src!r} has shape {tuple(value.shape)}, the network "
                    f"expects {tuple(target.shape)} (channels?)"
                )
            if key.startswith("units.0.conv_x.") and key.endswith(".weight"):
                value = value.flip(1)  # BGR input channels -> RGB
            elif key.startswith(f"decoder.{len(self.decoder) - 1}."):
                value = value.flip(0)  # BGR rain layer -> RGB
            converted[key] = value
        unexpected = sorted(set(release) - {release_key(k) for k in own})
        if unexpected:
            raise KeyError(
                f"RESCAN release weights: unexpected keys {unexpected[:5]} ({len(unexpected)} in all); "
                "is the unit type the release's?"
            )
        return converted

    def load_release_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load a state dict saved by the authors' code (see :meth:`convert_release_state_dict`)."""
        self.load_state_dict(self.convert_release_state_dict(state_dict), strict=True)

    @staticmethod
    def is_release_state_dict(state_dict: Mapping[str, Tensor]) -> bool:
        """Whether a state dict uses the authors' names (``rnns.*``, ``dec.*``) rather than ours."""
        return any(k.removeprefix("module.").startswith(("rnns.", "dec.")) for k in state_dict)


_UNIT_CONV = re.compile(r"units\.(\d+)\.(conv_x|conv_h)\.(\w+)\.(weight|bias)$")


def release_key(key: str) -> str:
    """The name in the authors' state dict of our parameter ``key`` (see the module docstring).

    Units: ours ``units.<j>.conv_x.<gate>`` are their ``rnns.<j>.conv_x<gate>`` (GRU z/r/n, LSTM f/i/o/j),
    ``rnns.<j>.conv_x`` / ``conv_h`` for the RNN unit (our gate ``h``) and ``rnns.<j>.conv`` for the plain conv
    unit (our gate ``x``); ``units.<j>.se`` is ``rnns.<j>.se``; ``decoder`` is ``dec``."""
    if key.startswith("decoder."):
        return "dec." + key[len("decoder.") :]
    m = _UNIT_CONV.match(key)
    if m:
        j, kind, gate, param = m.groups()
        name = "conv" if gate == "x" else kind if gate == "h" else kind + gate
        return f"rnns.{j}.{name}.{param}"
    if key.startswith("units."):
        return "rnns." + key[len("units.") :]
    raise KeyError(f"RESCAN: no release name for parameter {key!r}")
