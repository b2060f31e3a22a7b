"""One trained network ready to derain: device, precision, batching and tiling in one place.

:class:`Derainer` wraps a :class:`src.lit.module.DerainModule` (its ``predict_full`` takes any image size: each
network pads and crops for itself) and derains float32 (B, 3, H, W) batches on the CPU into float32 results on the CPU:

* ``tile=None``: the whole image in one pass;
* ``tile=N``: :func:`src.inference.tiling.tiled_forward` on N x N tiles whenever H or W exceeds N;
* ``tile="auto"``: the network's memory per pixel, measured once per network, device and code version and cached on
  disk (:func:`src.inference.tiling.cached_bytes_per_pixel`); per batch, whole images when they fit
  ``memory_fraction`` of the device's free memory, otherwise the largest square tile that does, with the overlap
  measured for the network (:func:`src.inference.tiling.auto_overlap`; ``tile_overlap`` is for ``tile=N``). The
  choice and its reason are logged once per image size.
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

from src.inference.tiling import auto_overlap_and_source, cached_bytes_per_pixel, free_memory, tiled_forward

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
    _announced: set = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if self.half and self.device.type != "cuda":
            raise ValueError(
                f"half=true needs a CUDA device (device=cuda or auto on a GPU machine); this run uses {self.device}"
            )
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
        """The network on a batch already on the device (each network pads and crops for itself)."""
        with self._autocast():
            return self.module.predict_full(batch)

    def tile_for(self, batch: int, h: int, w: int) -> Optional[int]:
        """The tile side to use for a (batch, 3, h, w) input, or None for whole-image inference."""
        return self.plan(batch, h, w)[0]

    def plan(self, batch: int, h: int, w: int) -> tuple[Optional[int], int, str]:
        """(tile side or None for whole images, overlap, why) for a (batch, 3, h, w) input."""
        if self.tile is None:
            return None, self.tile_overlap, "tile=0: whole images"
        if self.tile != "auto":
            fits = h <= self.tile and w <= self.tile
            return (None if fits else int(self.tile)), self.tile_overlap, f"tile={self.tile}"
        free = self.memory_fraction * free_memory(self.device)
        if self._bpp is None and batch * h * w * PESSIMISTIC_BYTES_PER_PIXEL <= free:
            return None, self.tile_overlap, "fits at any network's cost"  # no need to measure
        if self._bpp is None:
            self._bpp, cached = cached_bytes_per_pixel(self.forward, self.net, self.device)
            log.info(
                "%s: %.0f bytes of %s memory per pixel (%s)",
                self.label,
                self._bpp,
                self.device.type,
                "memory probe cached" if cached else "measured now, cached for next time",
            )
        need, budget = batch * h * w * self._bpp, free / self._bpp  # budget: pixels per forward pass
        overlap, source = auto_overlap_and_source(self.net)
        if need <= free:
            return (
                None,
                overlap,
                f"whole: needs {need / 1e9:.2f} GB at {self._bpp:.0f} B/px, {free / 1e9:.2f} GB "
                f"is {self.memory_fraction:g} of the free memory",
            )
        side = max(128, overlap + 64, int(math.sqrt(budget / self.batch_size)) // 16 * 16)
        if h <= side and w <= side:
            return None, overlap, f"whole: the {side}-pixel tile that fits covers the image"
        why = (
            f"tiles of {side} px with overlap {overlap} ({source}): whole needs {need / 1e9:.2f} GB at "
            f"{self._bpp:.0f} B/px, {free / 1e9:.2f} GB is {self.memory_fraction:g} of the free memory"
        )
        return side, overlap, why

    @property
    def net(self) -> nn.Module:
        """The network inside the wrapped module (what the overlap table and the memory probe know)."""
        return getattr(self.module, "net", self.module)

    def _announce(self, h: int, w: int, why: str) -> None:
        """One line per image size: the tile and overlap chosen, and why."""
        if (h, w) not in self._announced:
            self._announced.add((h, w))
            log.info("%s, %dx%d: %s", self.label, w, h, why)

    @torch.inference_mode()
    def derain(self, x: Tensor, on_tiles: Optional[Callable[[int], None]] = None) -> dict:
        """x: (B, 3, H, W) float32 on the CPU -> {"out": (B, 3, H, W), "att": (B, 1, H, W) or None}, CPU float32."""
        b, _, h, w = x.shape
        tile, overlap, why = self.plan(1, h, w)
        self._announce(h, w, why)
        outs, atts = [], []
        if tile is None:
            step = b if self.tile != "auto" or self.tile_for(b, h, w) is None else 1  # split what does not fit
            for k in range(0, b, step):
                res = self.forward(x[k : k + step].to(self.device))
                outs.append(res["out"].float().cpu())
                att = res.get("att")
                atts.append(att[0].float().cpu() if att else None)
        else:
            for k in range(b):
                res = tiled_forward(
                    self.forward, x[k : k + 1], tile, overlap, self.batch_size, self.tile_blend, self.device, on_tiles
                )
                outs.append(res["out"])
                atts.append(res["att"][0] if res["att"] else None)
        out = torch.cat(outs)
        att = torch.cat(atts) if all(a is not None for a in atts) else None
        return {"out": out, "att": att, "tile": tile}
