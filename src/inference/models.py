"""The networks a prediction runs: one per checkpoint, each built as its own model, and their labels.

* :func:`checkpoint_files`: ``ckpt_path`` as files: one file, a list, or a run / sweep directory (every
  ``checkpoints/best.ckpt`` under it, ``last.ckpt`` where a run has no best), in natural order (job 2 before
  job 10).
* :func:`model_config`: what each file is built as (:attr:`src.utils.checkpoint.Checkpoint.kind`): a
  checkpoint of ``src.train`` from the model config stored in it (unless ``model=`` is given); the authors'
  release file as ``model=spanet_release``, the only network its weights belong to; any other weights file as
  the ``model=`` given. ``model.*`` overrides apply on top in every case.
* :func:`grid_labels`: a column label per checkpoint: its model, plus what else differs between the runs that
  wrote them (their ``.hydra/overrides.yaml``: ``b_a seed=1``, ``b_a seed=2``), never bare job numbers.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Sequence

import torch
import yaml
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.inference.engine import Derainer
from src.utils.checkpoint import Checkpoint
from src.utils.config import stored_with_overrides, user_overrode
from src.utils.errors import ConfigValueError
from src.utils.files import natural_key

log = logging.getLogger(__name__)

CONF = Path(__file__).resolve().parents[2] / "conf"
RELEASE_MODEL = "spanet_release"
#: overrides that say where or how a run was logged, not what it computed: left out of labels
NOT_LABELS = ("hydra.", "paths.", "logger", "ckpt_path", "resume", "overwrite", "experiment_name", "tags")


def checkpoint_files(spec) -> list[Path]:
    """``ckpt_path`` as a list of files (see the module docstring)."""
    if spec is None:
        return []
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    files: list[Path] = []
    for item in items:
        p = Path(str(item))
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            found = []
            for ckpt_dir in sorted(p.rglob("checkpoints"), key=lambda d: natural_key(d.as_posix())):
                best, last = ckpt_dir / "best.ckpt", ckpt_dir / "last.ckpt"
                if best.is_file() or last.is_file():
                    found.append(best if best.is_file() else last)
            if not found:
                raise ConfigValueError(f"ckpt_path={p}: no checkpoints/best.ckpt or last.ckpt under this directory")
            files += found
        else:
            raise ConfigValueError(f"ckpt_path={p}: no such checkpoint file or directory")
    return files


def _model_choice() -> Optional[str]:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get("model") if HydraConfig.initialized() else None


def _composed_model(name: str) -> dict:
    """conf/model/<name>.yaml as composed by Hydra (inside the running entry point, or on its own)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [f"model={name}", "input=_", "output=_", "model.init_from=null"]
    if GlobalHydra.instance().is_initialized():
        composed = compose(config_name="predict", overrides=overrides)
    else:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            composed = compose(config_name="predict", overrides=overrides)
    return OmegaConf.to_container(composed.model, resolve=True)


def model_config(cfg: DictConfig, ckpt: Optional[Checkpoint]) -> tuple[DictConfig, str]:
    """(model config, label) for one checkpoint (None: the model config's own ``init_from`` weights)."""
    given = _model_choice() or "model"
    if ckpt is not None and ckpt.kind == "release" and given != RELEASE_MODEL:
        if user_overrode("model"):
            log.warning(
                "%s is the authors' SPANet release: built as model=%s (the network its weights belong "
                "to), not model=%s",
                ckpt.path,
                RELEASE_MODEL,
                given,
            )
        return stored_with_overrides(cfg, _composed_model(RELEASE_MODEL), "model", str(ckpt.path)), RELEASE_MODEL
    stored = ckpt.run_config.get("model") if ckpt is not None and ckpt.kind == "suite" else None
    if stored and not user_overrode("model"):  # model.* overrides still apply, on top of the stored config
        return stored_with_overrides(cfg, stored, "model", str(ckpt.path)), str(ckpt.model or given)
    return OmegaConf.create(OmegaConf.to_container(cfg.model, resolve=True)), given


def build_model(cfg: DictConfig, ckpt_path: Optional[Path], device: torch.device):
    """(network in eval mode on ``device``, label) for one checkpoint file (read once), or, with ``ckpt_path``
    None, the model config's own ``init_from`` weights (e.g. model=spanet_release)."""
    from src.utils.checkpoint import load_net_weights, read_checkpoint, require_complete, require_finite_weights

    if ckpt_path is None:
        if not cfg.model.get("init_from"):
            raise ConfigValueError(
                "ckpt_path: give a checkpoint of src.train or the authors' release file, a list "
                "of them or a run / sweep directory, or a model whose config names its weights, "
                "e.g. model=spanet_release"
            )
        config, label = model_config(cfg, None)
        model = instantiate(config, optimizer=None, scheduler=None)  # loads model.init_from
        require_complete(model.net, model.init_report, config.init_from)
        return model.eval().to(device), label
    ckpt = read_checkpoint(ckpt_path)
    config, label = model_config(cfg, ckpt)
    model = instantiate(config, optimizer=None, scheduler=None, init_from=None)
    load_net_weights(model.net, ckpt)
    require_finite_weights(model.net.state_dict(), str(ckpt_path))
    return model.eval().to(device), label


def run_overrides(ckpt: Path) -> Optional[dict[str, str]]:
    """{key: value} of the command line of the run that wrote ``<run>/checkpoints/<file>`` (None: not found)."""
    path = ckpt.parent.parent / ".hydra" / "overrides.yaml"
    if ckpt.parent.name != "checkpoints" or not path.is_file():
        return None
    items = yaml.safe_load(path.read_text()) or []
    pairs = (str(item).lstrip("+~").split("=", 1) for item in items)
    return {kv[0]: kv[1] if len(kv) > 1 else "" for kv in pairs if not kv[0].startswith(NOT_LABELS)}


def grid_labels(names: Sequence[str], files: Sequence[Optional[Path]]) -> list[str]:
    """Column labels: each model's name plus the overrides that differ between the runs (see module doc); made
    unique by run folder, then by position, where that is not enough."""
    labels = list(names)
    overrides = [run_overrides(f) if f is not None else None for f in files]
    runs = [o for o in overrides if o is not None]
    if len(runs) > 1:
        keys = sorted(
            {k for o in runs for k in o if len({o.get(k) for o in runs}) > 1 and k != "model"}, key=natural_key
        )
        for k, o in enumerate(overrides):
            if o is not None and keys:
                labels[k] = " ".join([labels[k]] + [f"{key}={o[key]}" for key in keys if key in o])
    return unique_labels(labels, files)


def unique_labels(labels: Sequence[str], files: Sequence[Optional[Path]]) -> list[str]:
    """Make labels unique by adding the run folder's name (``checkpoints/``'s parent) where two coincide."""
    out = list(labels)
    for k, label in enumerate(labels):
        if labels.count(label) > 1 and files[k] is not None:
            f = files[k]
            run = f.parent.parent.name if f.parent.name == "checkpoints" else f.stem
            out[k] = f"{label} ({run})"
    if len(set(out)) < len(out):
        out = [f"{label} #{k + 1}" for k, label in enumerate(out)]
    return out


def build_derainers(cfg: DictConfig, ckpts: list[Path], device: torch.device) -> list[Derainer]:
    """One :class:`Derainer` per checkpoint (or the model's own weights), labelled for figures and folders."""
    if cfg.labels and len(cfg.labels) != max(len(ckpts), 1):
        raise ConfigValueError(f"labels= has {len(cfg.labels)} names for {max(len(ckpts), 1)} checkpoint(s)")
    derainers, names = [], []
    for path in ckpts or [None]:
        module, name = build_model(cfg, path, device)
        names.append(name)
        derainers.append(
            Derainer(
                module,
                device,
                name,
                tile=cfg.tile or None,
                tile_overlap=cfg.tile_overlap,
                tile_blend=cfg.tile_blend,
                batch_size=cfg.batch_size,
                half=cfg.half,
            )
        )
    labels = [str(x) for x in cfg.labels] if cfg.labels else grid_labels(names, ckpts or [None])
    for d, label in zip(derainers, labels):
        d.label = label
    return derainers
