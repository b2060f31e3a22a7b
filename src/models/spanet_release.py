"""The authors' released SPANet weights in this suite's SPANet: tensor names, colour order, the unused branch.

The authors' file (``weights/spanet_release.pt``, their ``model/latest``) holds ``{'net': state dict,
'clock': 40000, 'opt': ...}``. Its network differs from :class:`src.models.spanet.SPANet` in three ways that
:func:`convert_release_state_dict` handles:

* names: ``res_block1..17`` / ``SAM1`` / one depthwise 1x1 conv per IRNN direction -> our ``pre_blocks`` /
  ``sabs`` / ``post_blocks`` / ``sams.0`` and IRNN ``weight`` / ``bias`` of shape (4, C) in the order of
  :data:`src.models.irnn.DIRECTIONS`;
* colour order: the authors read images as BGR, the suite feeds RGB. ``conv_in`` input channels and
  ``conv_out`` output channels are reversed, so our network on an RGB image gives the release's output on the
  BGR image (as RGB);
* the release computes the SAM direction weights but discards them, so it behaves like variant b_d (no
  direction-attention branch); its attention tensors are untrained initial values. Converting into b_d drops
  them; converting into b_f / b_e (to fine-tune with the branch switched on) keeps them, and the output then
  no longer equals the release's.

Reading the file (weights only, sha256) is :mod:`src.utils.checkpoint`'s job; this module only renames tensors.
"""

from __future__ import annotations

import logging
from typing import Mapping

import torch
from torch import Tensor

from src.models.irnn import DIRECTIONS
from src.models.spanet import SPANet

log = logging.getLogger(__name__)

_BODY_CONVS = ("conv1", "conv2", "conv3")
_SAM_CONVS = ("conv_in", "conv2", "conv3", "conv_out")
_RELEASE_ATTENTION_PREFIX = "SAM1.attention_layer."


def is_release_state_dict(state: Mapping[str, Tensor]) -> bool:
    """True for a state dict in the release's naming (``conv_in.0.weight``, ``SAM1.*``, ``res_block*``); a
    ``module.`` prefix of their multi-GPU runs is allowed."""
    keys = [str(k).removeprefix("module.") for k in state]
    return "conv_in.0.weight" in keys and any(k.startswith("res_block") for k in keys)


def convert_release_state_dict(release: Mapping[str, Tensor], net: SPANet, source: str = "") -> dict[str, Tensor]:
    """Map a release ``'net'`` state dict to ``net``'s parameter names (BGR->RGB flip included), strictly.

    Every release key must be used (the attention-branch tensors may be dropped when ``net`` has no direction
    attention) and every converted tensor must have the shape ``net`` expects; otherwise a ``ValueError``
    names the key. ``net`` must use one shared SAM (variants b_d, b_e, b_f). ``source`` names the file in errors.
    """
    release = {str(k).removeprefix("module."): v for k, v in release.items()}  # their DataParallel prefix
    pre = f"{source}: " if source else ""
    if not isinstance(net, SPANet) or net.sam_mode != "shared":
        mode = getattr(net, "sam_mode", type(net).__name__)
        raise ValueError(
            f"{pre}the release is a shared-SAM SPANet; it cannot be loaded into {mode!r} "
            "(use variant b_d, or b_f / b_e to fine-tune)"
        )
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    used: set[str] = set()

    def take(key: str, shape: tuple) -> Tensor:
        if key not in release:
            raise ValueError(f"{pre}release key {key!r} is missing")
        if tuple(release[key].shape) != tuple(shape):
            raise ValueError(
                f"{pre}release key {key!r} has shape {tuple(release[key].shape)}, expected "
                f"{tuple(shape)} for variant {net.variant!r} (is model.net.channels 32?)"
            )
        used.add(key)
        return release[key]

    out: dict[str, Tensor] = {}
    out["conv_in.weight"] = take("conv_in.0.weight", expected["conv_in.weight"]).flip(1)  # BGR -> RGB inputs

    blocks = [f"pre_blocks.{i}" for i in range(len(net.pre_blocks))]
    blocks += [f"sabs.{s}.blocks.{j}" for s, sab in enumerate(net.sabs) for j in range(len(sab.blocks))]
    blocks += [f"post_blocks.{i}" for i in range(len(net.post_blocks))]
    for n, ours in enumerate(blocks, start=1):
        for conv in _BODY_CONVS:
            key = f"{ours}.body.{conv}.weight"
            out[key] = take(f"res_block{n}.group1.{conv}.weight", expected[key])

    for conv in _SAM_CONVS:
        out[f"sams.0.{conv}.weight"] = take(f"SAM1.{conv}.weight", expected[f"sams.0.{conv}.weight"])
    channels = net.conv_in.out_channels
    for irnn in ("irnn1", "irnn2"):
        # release: per direction a depthwise 1x1 conv, weight (C, 1, 1, 1), bias (C,); ours: (4, C) each
        out[f"sams.0.{irnn}.weight"] = torch.stack(
            [take(f"SAM1.{irnn}.{d.name}_weight.weight", (channels, 1, 1, 1)).reshape(-1) for d in DIRECTIONS]
        )
        out[f"sams.0.{irnn}.bias"] = torch.stack(
            [take(f"SAM1.{irnn}.{d.name}_weight.bias", (channels,)) for d in DIRECTIONS]
        )

    attention_keys = sorted(k for k in release if k.startswith(_RELEASE_ATTENTION_PREFIX))
    if net.direction_attention:
        for key in attention_keys:
            ours = "sams.0.attention_layer." + key[len(_RELEASE_ATTENTION_PREFIX) :]
            if ours not in expected:
                raise ValueError(f"{pre}release key {key!r} has no counterpart {ours!r} in the network")
            out[ours] = take(key, expected[ours])
        log.warning(
            "Loading the release's direction-attention weights into variant %r; the release never used "
            "them (they are untrained initial values), so outputs differ from the release's",
            net.variant,
        )
    else:
        used.update(attention_keys)
        log.info(
            "Dropped the release's %d attention-branch tensors (%s*): the release discards the direction "
            "weights, so it is variant b_d",
            len(attention_keys),
            _RELEASE_ATTENTION_PREFIX,
        )

    out["conv_out.weight"] = take("conv_out.0.weight", expected["conv_out.weight"]).flip(0)  # BGR -> RGB outputs

    unused = sorted(set(release) - used)
    if unused:
        raise ValueError(f"{pre}release keys not understood: {unused}")
    for key, tensor in out.items():  # catches the (4, C) IRNN stacks
        if tuple(tensor.shape) != expected[key]:
            raise ValueError(
                f"{pre}{key!r} has shape {tuple(tensor.shape)} after conversion, the network expects {expected[key]}"
            )
    missing = sorted(set(expected) - set(out))
    if missing:
        raise ValueError(f"{pre}the release has no tensors for {missing}")
    return {k: v.contiguous() for k, v in out.items()}
