"""Small sizes of the big networks for the tests that build every conf/model/*.yaml (one training step, a fast
dev run): config name -> ``model.net.*`` overrides. The authors' sizes (10-34M parameters) would make those tests
far too slow on a CPU; the structure (every level, every kind of block) stays, only widths and depths shrink.
Models not listed run at their default size."""

from __future__ import annotations

_NERD_RAIN_SMALL = ["model.net.dim=4", "model.net.num_blocks=[1,1,1]", "model.net.hidden_list=[16,16,16]"]

SMALL_SIZES: dict[str, list[str]] = {
    "restormer": [
        "model.net.dim=4",
        "model.net.num_blocks=[1,1,1,1]",
        "model.net.num_refinement_blocks=1",
        "model.net.heads=[1,2,2,4]",
    ],
    "drsformer": ["model.net.dim=4", "model.net.num_blocks=[1,1,1,1]", "model.net.heads=[1,2,2,4]"],
    "drsformer_spa": ["model.net.dim=4", "model.net.num_blocks=[1,1,1,1]", "model.net.heads=[1,2,2,4]"],
    "nafnet": [
        "model.net.width=4",
        "model.net.enc_blk_nums=[1,1,1,1]",
        "model.net.middle_blk_num=1",
        "model.net.dec_blk_nums=[1,1,1,1]",
    ],
    "nerd_rain": _NERD_RAIN_SMALL,
    "nerd_rain_s": _NERD_RAIN_SMALL,
}


def small_size(model: str) -> list[str]:
    """The overrides that shrink ``model=<model>`` for tests ([] for models that are small already)."""
    return list(SMALL_SIZES.get(model, []))
