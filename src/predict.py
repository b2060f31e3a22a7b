"""python -m src.predict ckpt_path=FILE|[A,B,..]|DIR input=IMAGE|DIR|VIDEO output=DIR [model=NAME] [...]

Derains what you bring: an image, a folder of images (any size, RGB / grayscale / RGBA), a video file, or a
folder of frames (``video.frames=true``), with one checkpoint or several. Outputs and options are listed in
conf/predict.yaml and :mod:`src.inference.run`; in short, per input ``<stem>``:
  <stem>.png / <stem>_att.png     derained image, attention heat map (models with attention)
  <stem>.npy / <stem>_att.npy     save_raw=true: unclipped float32 output and attention map
  <stem>_compare.png              compare=true: rain | derained | attention [| gt with PSNR/SSIM under protocol=]
  <clip>.mp4 [_att.mp4]           videos: same frame rate and size
  comparison_grid.png             several checkpoints: all methods side by side (each in output/<label>/)
Large images run in overlapping tiles (tile=auto: whole images when they fit half the free memory).
Nothing is overwritten without overwrite=true, and output= may not be (inside) an input folder.
ckpt_path takes checkpoints of src.train (their stored model config is used unless model= is given), a run or
sweep directory (every checkpoints/best.ckpt under it), or the authors' release file with model=spanet_release;
without ckpt_path, model=spanet_release uses the release in weights/.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import hydra
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from src.utils.image_io import ImageReadError, decode, is_image_file, to_float
from src.inference.engine import Derainer
from src.inference.outputs import (
    check_output_dir,
    check_outputs,
    check_stems,
    checkpoint_files,
    collect_inputs,
    unique_labels,
)
from src.inference.run import Job, derain_clip, derain_images, plan_clip_outputs, plan_image_outputs
from src.utils.checkpoint import Checkpoint
from src.runs.environment import setup_environment
from src.runs.resolvers import register_resolvers
from src.utils.config import stored_with_overrides, user_overrode
from src.utils.errors import refusals_exit

log = logging.getLogger(__name__)

# --- config loading -------------------------------------------------------------------------------------------
def model_config(cfg: DictConfig, ckpt: Optional[Checkpoint]) -> DictConfig:
    """The model config for one checkpoint: the one stored in it, unless ``model=`` was given (a copy: with
    several checkpoints each gets its own)."""
    stored = ckpt.run_config.get("model") if ckpt is not None else None
    if stored and not user_overrode("model"):  # model.* overrides still apply, on top of the stored config
        return stored_with_overrides(cfg, stored, "model", str(ckpt.path))
    return OmegaConf.create(OmegaConf.to_container(cfg.model, resolve=True))


def model_label(cfg: DictConfig, ckpt: Optional[Checkpoint]) -> str:
    """The name a model goes by in figures: the run's ``model=`` for our checkpoints, else the one given."""
    if ckpt is not None and ckpt.model and not user_overrode("model"):
        return str(ckpt.model)
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices.get("model") or "model")
    return ckpt.path.stem if ckpt is not None else "model"


def build_model(cfg: DictConfig, ckpt_path: Optional[Path], device: torch.device):
    """(network in eval mode on ``device``, label) for one checkpoint file (read once), or, with ``ckpt_path``
    None, the model config's own ``init_from`` weights (e.g. model=spanet_release)."""
    from src.utils.checkpoint import load_net_weights, read_checkpoint, require_finite_weights

    if ckpt_path is None:
        if not cfg.model.get("init_from"):
            raise ValueError("give ckpt_path=FILE (a checkpoint of src.train, or the authors' release file), a list "
                             "of them or a run / sweep directory, or a model whose config names its weights, e.g. "
                             "model=spanet_release")
        model = instantiate(model_config(cfg, None), optimizer=None, scheduler=None)  # loads model.init_from
        return model.eval().to(device), model_label(cfg, None)
    ckpt = read_checkpoint(ckpt_path)
    model = instantiate(model_config(cfg, ckpt), optimizer=None, scheduler=None, init_from=None)
    load_net_weights(model.net, ckpt)
    require_finite_weights(model.net.state_dict(), str(ckpt_path))
    return model.eval().to(device), model_label(cfg, ckpt)


# --- image reading ----------------------------------------------------------------------------------------------
def read_input(path: Path) -> np.ndarray:
    """An input image as float32 RGB in [0, 1] (the suite's one reader); logs how a non-RGB file was converted."""
    decoded = decode(path)  # raises ImageReadError naming the path
    if decoded.note:
        log.info("%s: %s", path.name, decoded.note)
    return to_float(decoded.array)


def image_size(path: Path) -> Optional[tuple[int, int]]:
    """(width, height) from the file header, for batching same-sized images; None when unreadable."""
    try:
        with Image.open(path) as im:
            return im.size
    except OSError:
        return None


# --- the run ------------------------------------------------------------------------------------------------
def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def gt_files(gt: Optional[str], stems: list[str]) -> dict[str, Path]:
    """``gt=FILE|DIR`` -> {input stem: ground-truth file}; every input needs one."""
    if not gt:
        return {}
    p = Path(gt)
    if p.is_file():
        if len(stems) != 1:
            raise ValueError(f"gt={gt} is one file but there are {len(stems)} inputs; pass a folder of "
                             "ground truths named like the inputs")
        return {stems[0]: p}
    if not p.is_dir():
        raise FileNotFoundError(f"gt={gt}: no such file or directory")
    found = {f.stem: f for f in sorted(p.iterdir()) if f.is_file() and is_image_file(f.name)}
    missing = [s for s in stems if s not in found]
    if missing:
        raise FileNotFoundError(f"gt={gt}: no ground truth for {len(missing)} input(s): {missing[:5]}")
    return {s: found[s] for s in stems}


def predict(cfg: DictConfig) -> list[Path]:
    """Derain ``cfg.input`` with every checkpoint of ``cfg.ckpt_path``; returns the files written."""
    setup_environment(cfg)
    device = pick_device(cfg.device)
    inputs = collect_inputs(cfg.input, frames=cfg.video.frames)
    if inputs.kind == "images":
        check_stems(inputs.files)
    if cfg.protocol not in ("spanet", "y_matlab", "rgb_uint8"):
        raise ValueError(f"protocol={cfg.protocol}: expected spanet, y_matlab or rgb_uint8")
    gt = gt_files(cfg.gt, [f.stem for f in inputs.files]) if inputs.kind == "images" else {}
    if cfg.gt and inputs.kind != "images":
        raise ValueError("gt= scores images; it is not supported for videos")
    out_dir = Path(cfg.output)
    ckpts = checkpoint_files(cfg.ckpt_path)
    gt_folders = [Path(cfg.gt)] if cfg.gt and Path(cfg.gt).is_dir() else []
    single_files = [p for p in (Path(cfg.input), Path(cfg.gt or "")) if p.is_file()]
    check_output_dir(out_dir, inputs.folders + gt_folders, single_files)

    derainers = []
    for path in ckpts or [None]:
        module, label = build_model(cfg, path, device)
        derainers.append(Derainer(module, device, label, tile=cfg.tile, tile_overlap=cfg.tile_overlap,
                                  tile_blend=cfg.tile_blend, batch_size=cfg.batch_size, half=cfg.half))
    labels = unique_labels(list(cfg.labels) if cfg.labels else [d.label for d in derainers], ckpts or [None])
    if len(labels) != len(derainers):
        raise ValueError(f"labels= has {len(labels)} names for {len(derainers)} checkpoints")
    for d, label in zip(derainers, labels):
        d.label = label

    job = Job(out_dir, compare=cfg.compare, save_raw=cfg.save_raw, protocol=cfg.protocol, gt=gt,
              attention_video=cfg.video.attention, fps=cfg.video.fps, codec=cfg.video.codec,
              grid_cell_width=cfg.grid_cell_width, progress=cfg.progress)
    if inputs.kind == "images":
        planned = plan_image_outputs(inputs.files, derainers, job)
    else:
        planned = plan_clip_outputs(inputs, derainers, job)
    check_outputs(planned, list(inputs.files) + list(gt.values()) + ckpts, cfg.overwrite)

    if inputs.kind == "images":
        written, failed = derain_images(inputs.files, derainers, job, read_input, image_size, cfg.batch_size)
    else:
        written, failed = derain_clip(inputs, derainers, job, read_input, cfg.batch_size)
    total = len(inputs.files)
    log.info("derained %d of %d input file(s) into %s (%d file(s) written)", total - len(failed), total, out_dir,
             len(written))
    if failed:
        raise ImageReadError("could not read %d of %d input file(s); the others were derained:\n  %s"
                             % (len(failed), total, "\n  ".join(failed)))
    if not written:  # e.g. a video that decodes to no frames: nothing was derained, so this is no success
        raise ImageReadError(f"input={inputs.root}: no image or frame could be derained; nothing was written")
    return written


register_resolvers()  # ${suite_run_dir} & co. in conf/hydra: before Hydra composes the config


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
@refusals_exit
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
