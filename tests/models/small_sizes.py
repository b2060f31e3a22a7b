"""Shrunken sizes for the tests that train every conf/model/*.yaml (tests/models/test_every_model_config.py,
tests/lit/test_train.py): model name -> ``model.net.<arg>=<value>`` overrides. Only models too slow for a CPU test
at their authors' size are listed; the structure (every layer kind, every connection) stays the same."""

from __future__ import annotations

_NERD_RAIN_SMALL = ["model.net.dim=4", "model.net.num_blocks=[1,1,1]", "model.net.hidden_list=[16,16,16]"]

SMALL_SIZES: dict[str, list[str]] = {
    "nerd_rain": _NERD_RAIN_SMALL,
    "nerd_rain_s": _NERD_RAIN_SMALL,
}
