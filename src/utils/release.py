"""Load network weights: the authors' released SPANet checkpoint, or one of our own Lightning checkpoints.

The release (``../shared/weights/spanet_release.pt``, their ``model/latest``) is a dict
``{'net': state_dict (79 tensors), 'clock': 40000, 'opt': ...}`` whose tensors were saved on CUDA. Its network
differs from :class:`src.models.spanet.SPANet` in three ways this module handles:

* names: ``res_block1..17`` / ``SAM1`` / per-direction IRNN convs -> our ``pre_blocks`` / ``sabs`` /
  ``post_blocks`` / ``sams.0`` and IRNN ``weight``/``bias`` of shape (4, C) in the order up, right, down, left;
* colour order: the release reads BGR images, we feed RGB. ``conv_in`` input channels and ``conv_out`` output
  channels are reversed, so our network on an RGB image gives the release's output on the BGR image (as RGB);
* the release computes the SAM direction weights but discards them (non in-place ``mul``), so it behaves like
  variant b_d (no direction-attention branch). Its attention tensors are untrained initial values; by default
  they are dropped and a b_d network is built. Loading into b_f / b_e (for fine-tuning) keeps them, but then
  the branch becomes active and the output no longer equals the release's.

Use :func:`spanet_from_release` as a Hydra ``_target_`` (conf/model/spanet_release.yaml) and
:func:`load_net_weights` to put either kind of file into an existing network.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Mapping, Optional

import torch
from torch import Tensor, nn

from src.models.irnn import DIRECTIONS
from src.models.spanet import SPANet

log = logging.getLogger(__name__)

_BODY_CONVS = ("conv1", "conv2", "conv3")
_SAM_CONVS = ("conv_in", "conv2", "conv3", "conv_out")
_RELEASE_ATTENTION_PREFIX = "SAM1.attention_layer."


def load_checkpoint(path: str | Path) -> dict:
    """torch.load on CPU with ``weights_only=True``; clear errors for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Our Lightning checkpoints may carry hyper-parameters (OmegaConf objects) that weights_only refuses.
        log.info("%s holds non-tensor objects; loading it as a trusted checkpoint (weights_only=False)", path)
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a checkpoint dict, got {type(obj).__name__}")
    return obj


def is_release_state_dict(state: Mapping[str, Tensor]) -> bool:
    """True for a state dict in the release's naming (``conv_in.0.weight``, ``SAM1.*``, ``res_block*``)."""
    return "conv_in.0.weight" in state and any(k.startswith("res_block") for k in state)


def convert_release_state_dict(
    release: Mapping[str, Tensor], net: SPANet, source: str = "release state dict"
) -> dict[str, Tensor]:
    """Map a release ``'net'`` state dict to ``net``'s parameter names (BGR->RGB flip included), strictly.

    Every release key must be used (the attention-branch tensors may be dropped when ``net`` has no direction
    attention) and every converted tensor must have the shape ``net`` expects; otherwise a ``ValueError``
    names the key. ``net`` must use one shared SAM (variants b_d, b_e, b_f). ``source`` names the file in errors.
    """
    if not isinstance(net, SPANet) or net.sam_mode != "shared":
        mode = getattr(net, "sam_mode", type(net).__name__)
        raise ValueError(f"{source}: the release is a shared-SAM SPANet; it cannot be loaded into {mode!r} "
                         "(use variant b_d, or b_f / b_e to fine-tune)")
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    used: set[str] = set()

    def take(key: str, shape: tuple) -> Tensor:
        if key not in release:
            raise ValueError(f"{source}: release key {key!r} is missing")
        if tuple(release[key].shape) != tuple(shape):
            raise ValueError(f"{source}: release key {key!r} has shape {tuple(release[key].shape)}, expected "
                             f"{tuple(shape)} for variant {net.variant!r} (is model.net.channels 32?)")
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
            [take(f"SAM1.{irnn}.{d.name}_weight.weight", (channels, 1, 1, 1)).reshape(-1) for d in DIRECTIONS])
        out[f"sams.0.{irnn}.bias"] = torch.stack(
            [take(f"SAM1.{irnn}.{d.name}_weight.bias", (channels,)) for d in DIRECTIONS])

    attention_keys = sorted(k for k in release if k.startswith(_RELEASE_ATTENTION_PREFIX))
    if net.direction_attention:
        for key in attention_keys:
            ours = "sams.0.attention_layer." + key[len(_RELEASE_ATTENTION_PREFIX):]
            if ours not in expected:
                raise ValueError(f"{source}: release key {key!r} has no counterpart {ours!r} in the network")
            out[ours] = take(key, expected[ours])
        log.warning("%s: loading the release's direction-attention weights into variant %r; the release never "
                    "used them (they are untrained initial values), so outputs differ from the release's",
                    source, net.variant)
    else:
        used.update(attention_keys)
        log.info("%s: dropped %d attention-branch tensors (%s*): the release discards the direction weights, "
                 "so it is variant b_d", source, len(attention_keys), _RELEASE_ATTENTION_PREFIX)

    out["conv_out.weight"] = take("conv_out.0.weight", expected["conv_out.weight"]).flip(0)  # BGR -> RGB outputs

    unused = sorted(set(release) - used)
    if unused:
        raise ValueError(f"{source}: release keys not understood: {unused}")
    for key, tensor in out.items():  # catches the (4, C) IRNN stacks
        if tuple(tensor.shape) != expected[key]:
            raise ValueError(f"{source}: {key!r} has shape {tuple(tensor.shape)} after conversion, the network "
                             f"expects {expected[key]}")
    missing = sorted(set(expected) - set(out))
    if missing:
        raise ValueError(f"{source}: the release has no tensors for {missing}")
    return {k: v.contiguous() for k, v in out.items()}


def load_net_weights(net: nn.Module, path: str | Path, ckpt: Optional[Mapping] = None) -> nn.Module:
    """Load weights into ``net`` (in place, strictly) from a release file or one of our Lightning checkpoints.

    ``ckpt``: the file's contents when the caller already read them with :func:`load_checkpoint` (``path``
    then only names the file in messages), so a large checkpoint is read once.

    * release: dict with ``'net'`` in the release's naming (``module.`` prefixes of their multi-GPU runs are
      stripped) -> :func:`convert_release_state_dict`;
    * Lightning: dict with ``'state_dict'`` whose network keys start with ``net.`` (the DerainModule attribute);
    * a dict with ``'net'`` already in our naming (e.g. saved with ``{'net': net.state_dict()}``).
    Returns ``net``.
    """
    if ckpt is None:
        ckpt = load_checkpoint(path)
    if "state_dict" in ckpt:
        state = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
        if not state:
            raise ValueError(f"{path}: 'state_dict' has no 'net.*' keys; is this a checkpoint of this suite?")
    elif "net" in ckpt and isinstance(ckpt["net"], Mapping):
        state = {k.removeprefix("module."): v for k, v in ckpt["net"].items()}  # their DataParallel prefix
        if is_release_state_dict(state):
            state = convert_release_state_dict(state, net, source=str(path))
    elif ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        state = dict(ckpt)  # a bare state dict, e.g. DID-MDN's released generator
    else:
        raise ValueError(f"{path}: neither a release checkpoint ('net') nor a Lightning checkpoint ('state_dict'); "
                         f"top-level keys: {sorted(ckpt)}")
    if hasattr(net, "convert_release_state_dict") and net.is_release_state_dict(state):
        try:  # a baseline's weights released by its authors (RESCAN, DID-MDN): their names and channel order
            state = net.convert_release_state_dict(state)
        except (KeyError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit the network: {err}") from None
    return net


def spanet_from_release(path: str | Path, variant: str = "b_d", irnn_backend: str = "auto", **net_kwargs) -> SPANet:
    """Build ``SPANet(variant, ...)`` and load the released checkpoint into it (Hydra factory).

    With the default ``b_d`` the network on an RGB image reproduces the release on the BGR image. ``net_kwargs``
    go to :class:`SPANet` (e.g. ``channels`` must stay 32; ``irnn_init_weight`` is overwritten by the file).
    """
    net = SPANet(variant=variant, irnn_backend=irnn_backend, **net_kwargs)
    return load_net_weights(net, path)
