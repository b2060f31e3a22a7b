"""python -m src.predict ckpt_path=FILE input=DIR_OR_FILE output=DIR [model=NAME] [save_raw=true]

Derains every image (any size, RGB / grayscale / RGBA) and writes, per input ``<stem>``:
  <stem>.png       the derained image, 8-bit RGB (clipped to [0, 1], x255, rounded half up)
  <stem>_att.png   the first SAM attention map as a heat map (models with attention only)
  <stem>.npy       with save_raw=true: H x W x 3 float32 RGB, the unclipped network output
  <stem>_att.npy   with save_raw=true: H x W float32 attention map
ckpt_path takes a checkpoint of src.train (its model config is used unless model= is given) or the authors'
release file with model=spanet_release; without ckpt_path, model=spanet_release uses the release in weights/.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import imageio.v3 as iio
import numpy as np
import torch
from hydra.utils import instantiate
from matplotlib import colormaps
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from src.data.io import ImageReadError, is_image_file, read_image
from src.metrics.protocols import to_uint8_image
from src.utils.run import user_overrode

log = logging.getLogger(__name__)


def list_inputs(path: str) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"input={path}: no such file or directory")
    files = sorted(f for f in p.iterdir() if f.is_file() and is_image_file(f.name))
    if not files:
        raise FileNotFoundError(f"input={path}: the directory holds no image files")
    return files


def build_model(cfg: DictConfig, device: torch.device):
    """The network with its weights: from ckpt_path (read once), or from the model config's own init_from."""
    from src.utils.checkpoint import load_net_weights, read_checkpoint

    if not cfg.ckpt_path:
        if not cfg.model.get("init_from"):
            raise ValueError("give ckpt_path=FILE (a checkpoint of src.train, or the authors' release file), or a "
                             "model whose config names its weights, e.g. model=spanet_release")
        return instantiate(cfg.model, optimizer=None, scheduler=None).eval().to(device)  # loads model.init_from
    ckpt = read_checkpoint(cfg.ckpt_path)
    stored = ckpt.run_config.get("model")
    if stored and not user_overrode("model"):
        cfg.model = OmegaConf.create(stored)
    model = instantiate(cfg.model, optimizer=None, scheduler=None, init_from=None)
    load_net_weights(model.net, ckpt)
    return model.eval().to(device)


def describe_mode(path: Path) -> str | None:
    """How the file's colour mode is converted to RGB, or None when it already is RGB."""
    with Image.open(path) as im:
        mode = im.mode
    if mode in ("L", "I;16", "I;16B", "I;16L", "I", "1", "LA"):
        return f"grayscale ({mode}) -> replicated to 3 RGB channels" + ("; alpha dropped" if mode == "LA" else "")
    if mode in ("RGBA", "PA"):
        return f"{mode} -> alpha channel dropped (not composited)"
    if mode not in ("RGB",):
        return f"{mode} -> converted to RGB"
    return None


def heat_map(att: np.ndarray) -> np.ndarray:
    """H x W map in [0, 1] -> uint8 H x W x 3 with matplotlib's 'inferno' colour map."""
    return to_uint8_image(colormaps["inferno"](np.clip(att, 0, 1))[..., :3])


@torch.inference_mode()
def predict(cfg: DictConfig) -> list[Path]:
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    files = list_inputs(cfg.input)
    model = build_model(cfg, device)
    out_dir = Path(cfg.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    failed, written = [], []
    for f in files:
        try:
            note = describe_mode(f)
            img = read_image(f)
        except (ImageReadError, OSError) as e:
            failed.append(f"{f}: {e}")
            continue
        if note:
            log.info("%s: %s", f.name, note)
        x = torch.from_numpy(img.transpose(2, 0, 1).copy())[None].to(device)
        out = model.predict_full(x)
        y = out["out"][0].float().cpu().numpy().transpose(1, 2, 0)
        iio.imwrite(out_dir / f"{f.stem}.png", to_uint8_image(y))
        written.append(out_dir / f"{f.stem}.png")
        att = out.get("att")
        a = att[0][0, 0].float().cpu().numpy() if att else None
        if a is not None:
            iio.imwrite(out_dir / f"{f.stem}_att.png", heat_map(a))
        if cfg.save_raw:
            np.save(out_dir / f"{f.stem}.npy", y.astype(np.float32))
            if a is not None:
                np.save(out_dir / f"{f.stem}_att.npy", a.astype(np.float32))
    log.info("derained %d of %d images into %s", len(written), len(files), out_dir)
    if failed:
        raise ImageReadError("could not read %d input file(s):\n  %s" % (len(failed), "\n  ".join(failed)))
    return written


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
