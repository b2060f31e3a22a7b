"""One trained network ready to derain: device, precision, batching and tiling in one place.

:class:`Derainer` wraps a :class:`src.lit.module.DerainModule` (its ``predict_full`` pads for the network and
crops back) and derains float32 (B, 3, H, W) batches on the CPU into float32 results on the CPU:

* ``tile=None``: the whole image in one pass;
* ``tile=N``: :func:`src.inference.tiling.tiled_forward` on N x N tiles whenever H or W exceeds N;
* ``tile="auto"``: measures the network's memory per pixel once (:func:`src.inference.tiling.bytes_per_pixel`)
  and, per batch, runs whole images when they fit ``memory_fraction`` of the device's free memory, otherwise the
  largest square tile that does.
* ``half=True`` (CUDA only): float16 autocast, inputs and outputs stay float32.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import torch
from torch import Tensor, nn

from src.inference.tiling import bytes_per_pixel, free_memory, tiled_forward

log = logging.getLogger(__name__)

#: Bytes per pixel above any suite network's forward pass (SPANet needs about 1 kB in float32): inputs this
#: small are run whole without measuring.
PESSIMISTIC_BYTES_PER_PIXEL = 16384


@dataclass
class Derainer:
    module: nn.Module
    device: torch.device
    label: str = "model"
    tile: Union[None, int, str] = "auto"
    tile_overlap: int = 128
    tile_blend: Optional[int] = None
    batch_size: int = 1
    half: bool = False
    memory_fraction: float = 0.5
    has_attention: bool = field(default=False, init=False)
    _bpp: Optional[float] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.half and self.device.type != "cuda":
            raise ValueError("half=true needs a CUDA device (device=cuda or auto on a GPU machine); "
                             f"this run uses {self.device}")
        if isinstance(self.tile, str) and self.tile != "auto":
            raise ValueError(f"tile={self.tile!r}: expected auto, 0 / null (whole images) or a size in pixels")
        if isinstance(self.tile, int) and self.tile <= 0:
            self.tile = None
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: must be >= 1")
        probe = self.forward(torch.zeros(1, 3, 32, 32, device=self.device))
        self.has_attention = bool(probe.get("att"))

    def _autocast(self):
        if self.half:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def forward(self, batch: Tensor) -> dict:
        """The network on a batch already on the device (pads and crops for the network)."""
        with self._autocast():
            return self.module.predict_full(batch)

    def tile_for(self, batch: int, h: int, w: int) -> Optional[int]:
        """The tile side to use for a (batch, 3, h, w) input, or None for whole-image inference."""
        if self.tile is None:
            return None
        if self.tile != "auto":
            return None if h <= self.tile and w <= self.tile else int(self.tile)
        if self._bpp is None and batch * h * w * PESSIMISTIC_BYTES_PER_PIXEL <= self.memory_fraction * free_memory(
                self.device):
            return None  # fits even at a pessimistic cost: no need to measure
        if self._bpp is None:
            self._bpp = bytes_per_pixel(self.forward, self.device)
            log.info("%s: about %.0f bytes of %s memory per pixel", self.label, self._bpp, self.device.type)
        budget = self.memory_fraction * free_memory(self.device) / self._bpp  # pixels per forward pass
        if batch * h * w <= budget:
            return None
        side = max(128, int(math.sqrt(budget / self.batch_size)) // 16 * 16)
        return None if h <= side and w <= side else side

    @torch.inference_mode()
    def derain(self, x: Tensor, on_tiles: Optional[Callable[[int], None]] = None) -> dict:
        """x: (B, 3, H, W) float32 on the CPU -> {"out": (B, 3, H, W), "att": (B, 1, H, W) or None}, CPU float32."""
        b, _, h, w = x.shape
        tile = self.tile_for(1, h, w)
        outs, atts = [], []
        if tile is None:
            step = b if self.tile != "auto" or self.tile_for(b, h, w) is None else 1  # split what does not fit
            for k in range(0, b, step):
                res = self.forward(x[k:k + step].to(self.device))
                outs.append(res["out"].float().cpu())
                att = res.get("att")
                atts.append(att[0].float().cpu() if att else None)
        else:
            for k in range(b):
                res = tiled_forward(self.forward, x[k:k + 1], tile, self.tile_overlap, self.batch_size,
                                    self.tile_blend, self.device, on_tiles)
                outs.append(res["out"])
                atts.append(res["att"][0] if res["att"] else None)
        out = torch.cat(outs)
        att = torch.cat(atts) if all(a is not None for a in atts) else None
        return {"out": out, "att": att, "tile": tile}
