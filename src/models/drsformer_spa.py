"""DRSformer (Chen et al., CVPR 2023) without its mixture-of-experts feature compensator: the network of the
authors' SPA-Data and Rain200L weights.

The authors trained their SPA-Data and Rain200L models without the MEFC ("their rain streaks are less complex")
and ship that network as a second file, ``basicsr/models/archs/DRSformer_arch_200L+SPA.py``: the same class
name and arguments, without ``encoder_level0`` and ``refinement``, so the level-1 decoder output goes straight
to the output convolution. Their ``test.py`` always builds the MEFC file, which cannot load these weights; here
the variant is its own model (``model=drsformer_spa``). Everything else, including the input-size rule (reflect
padding to a multiple of 8 where needed, crop back, no clamp), is :class:`src.models.drsformer.DRSformer`'s.
Output dict: ``{"out": (B, 3, H, W)}``.
"""

from __future__ import annotations

from typing import Sequence

from src.models.drsformer import DRSformer


class DRSformerSPA(DRSformer):
    """DRSformer without the MEFC; arguments and defaults as in the authors' class."""

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",
    ) -> None:  # noqa: N803 (the authors' argument name)
        super().__init__(
            inp_channels, out_channels, dim, num_blocks, heads, ffn_expansion_factor, bias, LayerNorm_type, mefc=False
        )
