"""What the entry points share: environment set-up, building lists from config groups, result files."""

from __future__ import annotations

import json
import logging
import netrc
import os
from pathlib import Path
from typing import Any, Optional

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def wandb_default_mode() -> None:
    """W&B offline unless the user chose a mode or is logged in (WANDB_API_KEY or a ~/.netrc entry)."""
    if "WANDB_MODE" in os.environ:
        return
    logged_in = bool(os.environ.get("WANDB_API_KEY"))
    if not logged_in:
        try:
            logged_in = netrc.netrc().authenticators("api.wandb.ai") is not None
        except (FileNotFoundError, netrc.NetrcParseError):
            pass
    os.environ["WANDB_MODE"] = "online" if logged_in else "offline"


def setup_environment(cfg: DictConfig) -> None:
    wandb_default_mode()
    if torch.cuda.is_available() and cfg.get("matmul_precision"):
        torch.set_float32_matmul_precision(cfg.matmul_precision)


def require_set(cfg: DictConfig, group: str) -> None:
    """Fail with the override to pass when a key of ``cfg[group]`` is still ``???`` (e.g. ``data.root``)."""
    from omegaconf import OmegaConf

    node = cfg.get(group)
    missing = sorted(OmegaConf.missing_keys(node)) if node is not None else []
    if missing:
        key = missing[0]  # a full key such as "data.root"
        what = "DIR (the folder that holds the data set)" if key.endswith(".root") else "VALUE"
        raise ValueError(f"{key} is not set: pass {key}={what}")


def instantiate_group(group: Optional[DictConfig]) -> list[Any]:
    """Instantiate every entry of a config group like ``callbacks`` or ``logger``; ``null`` entries are off."""
    if not group:
        return []
    out = []
    for key, conf in group.items():
        if conf is None:
            continue
        if not isinstance(conf, DictConfig) or "_target_" not in conf:
            raise ValueError(f"config entry {key!r} has no _target_: {conf}")
        out.append(instantiate(conf))
    return out


def user_overrode(group: str) -> bool:
    """True when the command line chose ``group=...`` explicitly (Hydra task overrides)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    return any(o.lstrip("+~").split("=", 1)[0] == group for o in HydraConfig.get().overrides.task)


def write_json(data: dict, *paths: Optional[str]) -> None:
    for p in paths:
        if not p:
            continue
        p = Path(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(data, indent=2, sort_keys=False))
        log.info("wrote %s", p)


def finish_wandb() -> None:
    """Close the W&B run so the next job of a sweep starts its own run."""
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()
