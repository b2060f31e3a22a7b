"""What the entry points share: environment set-up, building lists from config groups, result files."""

from __future__ import annotations

import json
import logging
import netrc
import os
from pathlib import Path
from typing import Any, Mapping, Optional

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


def stored_with_overrides(cfg: DictConfig, stored: Mapping, group: str, source: str) -> DictConfig:
    """The ``group`` config stored in a checkpoint, with the command line's ``group.*`` overrides applied on top.

    ``src.eval`` / ``src.predict`` rebuild the model and data of a checkpoint from the config stored in it; a
    ``data.root=...`` / ``+data.root=...`` / ``model.net.x=...`` / ``~data.x`` given on the command line must
    still count. A plain override (no ``+``) of a key the stored config does not have is an error naming the
    key (it would otherwise be silently dropped or reach the constructor as an unknown argument)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    node = OmegaConf.create(dict(stored))
    if not HydraConfig.initialized():
        return node
    for o in OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task)):
        key = o.key_or_group
        if not key.startswith(group + "."):
            continue
        sub = key[len(group) + 1:]
        parent_key, _, leaf = sub.rpartition(".")
        parent = OmegaConf.select(node, parent_key) if parent_key else node
        present = OmegaConf.is_dict(parent) and leaf in parent
        if o.is_delete():
            if not present:
                raise ValueError(f"~{key}: the {group} config stored in {source} has no key {sub!r}")
            del parent[leaf]
            continue
        if not present and not (o.is_add() or o.is_force_add()):
            keys = ", ".join(sorted(str(k) for k in (parent.keys() if OmegaConf.is_dict(parent) else [])))
            raise ValueError(f"{key}: the {group} config stored in {source} has no key {sub!r} (its keys: {keys}); "
                             f"add it with +{key}=..., or choose a config with {group}=NAME")
        value = OmegaConf.select(cfg, key)  # the composed value, with this override applied
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        OmegaConf.update(node, sub, value, merge=False, force_add=True)
        log.info("%s: %s=%s applied on top of the config stored in %s", group, key, value, source)
    return node


def write_json(data: dict, *paths: Optional[str]) -> None:
    """Write ``data`` as JSON to each path, atomically (a reader never sees half a file)."""
    from src.utils.files import atomic_write

    for p in paths:
        if not p:
            continue
        atomic_write(p, json.dumps(data, indent=2, sort_keys=False))
        log.info("wrote %s", p)


def finish_wandb() -> None:
    """Close the W&B run so the next job of a sweep starts its own run."""
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()
