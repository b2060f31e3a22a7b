"""DID-MDN's training loss (Zhang & Patel, CVPR 2018), as in the authors' derain_train_2018.py.

The release computes every term on images in [-1, 1] (its data normalisation); so does this loss, mapping
``out`` and ``clean`` (both [0, 1]) by ``2v - 1`` first::

    total = L1(out, clean)                                                        "l1"
          + perceptual_weight * (L1(relu1_2(out), relu1_2(clean))
                                 + L1(relu2_2(out), relu2_2(clean)))              "perceptual" (1.8)
          + density_weight * CE(density_logits, label)                            "density"

* The perceptual term needs VGG16 weights, which cannot be downloaded here: it is off unless
  ``vgg_weights`` names a file (a torchvision ``vgg16`` state dict, keys ``features.0/2/5/7.*``, or the
  release's ``vgg16.weight``, keys ``conv1_1.*``...). The VGG gets the [-1, 1] images directly, without
  ImageNet normalisation, as the release feeds it. Its weights are frozen and not saved in checkpoints.
* The density term applies only when the network returns ``density_logits`` (its optional classifier is on)
  and only to samples with a known label (``batch["label"] >= 0``); mean over those samples.
"""

from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: VGG16 layer names -> index in torchvision's ``vgg16().features``.
_VGG16_LAYERS = {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7}


class VGG16Relu12Relu22(nn.Module):
    """The first two VGG16 blocks, frozen: (B, 3, H, W) -> [relu1_2 (B, 64, H, W), relu2_2 (B, 128, H/2, W/2)].

    ``state_dict``: a torchvision ``vgg16`` state dict (``features.0/2/5/7.*``) or a release-style one
    (``conv1_1.*``, ``conv1_2.*``, ``conv2_1.*``, ``conv2_2.*``). The weights are non-persistent buffers: they
    follow ``.to(device)`` but stay out of checkpoints and out of the optimiser.
    """

    def __init__(self, state_dict: dict[str, Tensor], source: str = "state dict") -> None:
        super().__init__()
        for name, idx in _VGG16_LAYERS.items():
            for p in ("weight", "bias"):
                for key in (f"{name}.{p}", f"features.{idx}.{p}"):
                    if key in state_dict:
                        self.register_buffer(f"{name}_{p}", state_dict[key].detach().float().clone(), persistent=False)
                        break
                else:
                    raise KeyError(
                        f"{source}: no VGG16 weights for {name}.{p} (looked for {name}.{p} and features.{idx}.{p})"
                    )

    def _conv_relu(self, x: Tensor, name: str) -> Tensor:
        return F.relu(F.conv2d(x, getattr(self, f"{name}_weight"), getattr(self, f"{name}_bias"), padding=1))

    def forward(self, x: Tensor) -> list[Tensor]:
        relu1_2 = self._conv_relu(self._conv_relu(x, "conv1_1"), "conv1_2")
        h = F.max_pool2d(relu1_2, 2)
        relu2_2 = self._conv_relu(self._conv_relu(h, "conv2_1"), "conv2_2")
        return [relu1_2, relu2_2]


class DIDMDNLoss(nn.Module):
    """DID-MDN loss; see the module docstring. Parts: ``l1`` and, when on, ``perceptual`` and ``density``."""

    def __init__(
        self,
        perceptual_weight: float = 1.8,
        vgg_weights: Optional[str] = None,
        density_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.perceptual_weight = float(perceptual_weight)
        self.density_weight = float(density_weight)
        self.vgg: Optional[VGG16Relu12Relu22] = None
        if vgg_weights:
            path = os.path.expanduser(str(vgg_weights))
            if not os.path.isfile(path):
                raise FileNotFoundError(f"model.loss.vgg_weights: no such file {path!r}")
            from src.utils.checkpoint import read_checkpoint

            state = read_checkpoint(path).state_dict()  # weights only; a clear error for any other file
            self.vgg = VGG16Relu12Relu22(state, source=f"model.loss.vgg_weights={path}")

    def forward(self, outputs: dict, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        out, clean = outputs["out"] * 2 - 1, batch["clean"] * 2 - 1
        parts = {"l1": F.l1_loss(out, clean)}
        total = parts["l1"]
        if self.vgg is not None and self.perceptual_weight:
            with torch.no_grad():
                target_feats = self.vgg(clean)
            parts["perceptual"] = sum(F.l1_loss(f, t) for f, t in zip(self.vgg(out), target_feats))
            total = total + self.perceptual_weight * parts["perceptual"]
        logits = outputs.get("density_logits")
        if logits is not None and self.density_weight:
            label = batch["label"].to(logits.device).long().reshape(-1)
            known = label >= 0
            if known.any():
                parts["density"] = F.cross_entropy(logits[known], label[known])
                total = total + self.density_weight * parts["density"]
        return total, parts
