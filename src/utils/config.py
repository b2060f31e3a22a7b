"""Reading a composed Hydra config: keys still unset, config groups as lists, what the command line chose, and
a stored config with the command line's overrides on top. Leaf helpers: OmegaConf and Hydra only."""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def require_set(cfg: DictConfig, group: str) -> None:
    """Fail with the override to pass when a key of ``cfg[group]`` is still ``???`` (e.g. ``data.root``)."""
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

    node = OmegaConf.create(dict(stored))
    if not HydraConfig.initialized():
        return node
    for o in OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task)):
        key = o.key_or_group
        if not key.startswith(group + "."):
            continue
        sub = key[len(group) + 1 :]
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
            raise ValueError(
                f"{key}: the {group} config stored in {source} has no key {sub!r} (its keys: {keys}); "
                f"add it with +{key}=..., or choose a config with {group}=NAME"
            )
        value = OmegaConf.select(cfg, key)  # the composed value, with this override applied
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        OmegaConf.update(node, sub, value, merge=False, force_add=True)
        log.info("%s: %s=%s applied on top of the config stored in %s", group, key, value, source)
    return node
