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
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def _register_resolvers() -> None:
    """Resolvers the configs use (registered on import: every entry point imports this module)."""
    from src.utils.resume import hydra_run_dir

    if not OmegaConf.has_resolver("suite_run_dir"):  # conf/hydra/default.yaml: a resumed run keeps its dir
        OmegaConf.register_new_resolver("suite_run_dir", hydra_run_dir)
    if not OmegaConf.has_resolver("suite_add"):  # conf/hydra/launcher/*.yaml: CPUs = data workers + 1
        OmegaConf.register_new_resolver("suite_add", lambda a, b: int(a) + int(b))
    if not OmegaConf.has_resolver("suite_count"):  # conf/hydra/launcher/*.yaml: GPUs of trainer.devices
        OmegaConf.register_new_resolver("suite_count", _device_count)


def _device_count(devices) -> int:
    """``trainer.devices`` as a number of devices for a launcher: an int, a list of ids, or 1 for "auto"/-1."""
    if isinstance(devices, (list, tuple)) or hasattr(devices, "__len__") and not isinstance(devices, str):
        return len(devices)
    text = str(devices).strip()
    if text.lstrip("-").isdigit() and int(text) > 0:
        return int(text)
    if "," in text:
        return len([x for x in text.split(",") if x.strip()])
    return 1


_register_resolvers()


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
