"""The options of ``src.predict`` (conf/predict.yaml), checked before anything is read or written.

An impossible value is refused with :class:`~src.utils.errors.ConfigValueError` naming the key (one ``error:``
line, exit status 2). ``tile``: ``auto``, a size in pixels, or ``0`` / ``null`` (whole images, as documented);
a negative size is refused, as is a tile no larger than ``tile_overlap`` (tiles could not advance).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig, ListConfig

from src.utils.errors import ConfigValueError

PROTOCOLS = ("spanet", "y_matlab", "rgb_uint8")


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, key: str, value, expected: str) -> None:
    if not ok:
        raise ConfigValueError(f"{key}={value!r}: expected {expected}")


def pick_device(name: str) -> torch.device:
    """``device=auto|cpu|cuda|cuda:N`` -> a torch device (auto: CUDA when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigValueError(f"device={name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigValueError(f"device={name}: no CUDA device is available here; use device=cpu or auto")
    return device


def check_options(cfg: DictConfig) -> torch.device:
    """Refuse impossible values of predict's options; returns the device to run on."""
    tile = cfg.tile
    _require(
        tile is None or tile == "auto" or (_int(tile) and tile >= 0),
        "tile",
        tile,
        "auto, a tile size in pixels, or 0 / null (whole images)",
    )
    overlap, blend = cfg.tile_overlap, cfg.tile_blend
    _require(_int(overlap) and overlap >= 0, "tile_overlap", overlap, "an integer >= 0")
    _require(blend is None or (_int(blend) and blend >= 0), "tile_blend", blend, "null or an integer >= 0")
    if _int(tile) and 0 < tile <= overlap:
        raise ConfigValueError(
            f"tile={tile} must be larger than tile_overlap={overlap} (tiles overlap by that "
            "much); pass a larger tile, a smaller tile_overlap, or tile=0 for whole images"
        )
    for key in ("batch_size", "grid_cell_width"):
        _require(_int(cfg[key]) and cfg[key] >= 1, key, cfg[key], "an integer >= 1")
    fps = cfg.video.fps
    _require(
        isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0, "video.fps", fps, "a frame rate > 0"
    )
    _require(cfg.protocol in PROTOCOLS, "protocol", cfg.protocol, " | ".join(PROTOCOLS))
    labels = cfg.labels
    names = isinstance(labels, (list, ListConfig)) and all(isinstance(x, (str, int, float)) for x in labels)
    _require(labels is None or names, "labels", labels, "null or a list of names, e.g. labels=[ours,release]")
    device = pick_device(str(cfg.device))
    if cfg.half and device.type != "cuda":
        raise ConfigValueError(f"half=true needs a CUDA device (float16 autocast); this run uses {device}")
    return device
