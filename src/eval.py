"""python -m src.eval: score a checkpoint on a data config, or score a folder of any method's results.

  python -m src.eval ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt [data=NAME] [split=test|val]
      model and data default to the ones stored in the checkpoint by src.train; model=/data= override them.
      Also accepts the authors' release file with model=spanet_release.
  python -m src.eval pred_dir=DIR gt_dir=DIR          (ground truth matched by file name)
  python -m src.eval pred_dir=DIR data=realrain data.root=...   (ground truth = the data config's test split)
      folder scoring options: num_workers=N|auto (decoding processes; on the CPU they also score),
      batch_size=N (pairs per batch on a GPU), device=auto|cpu|cuda, progress=true|false.

Writes metrics.json (schema: n_images / mean / per_image, all protocols) in the run dir and to
metrics_file=PATH when given, and prints a table naming each protocol.
"""

from __future__ import annotations

import logging
import os

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.utils.report import report_table
from src.utils.run import require_set, setup_environment, stored_run_config, user_overrode, write_json

log = logging.getLogger(__name__)


def evaluate_checkpoint(cfg: DictConfig) -> dict:
    from src.utils.release import load_checkpoint, load_net_weights

    ckpt = load_checkpoint(cfg.ckpt_path)  # read once: run config and weights
    stored = stored_run_config(ckpt)
    for group in ("model", "data"):
        if stored.get(group) and not user_overrode(group):
            log.info("using the %s config stored in %s", group, cfg.ckpt_path)
            cfg[group] = OmegaConf.create(stored[group])
    if stored.get("schedule") and "batch_size" in cfg.data:
        cfg.data.batch_size = stored["schedule"].get("batch_size", 1)
    require_set(cfg, "data")
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, optimizer=None, scheduler=None)
    load_net_weights(model.net, cfg.ckpt_path, ckpt)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    if cfg.split == "val":
        trainer.validate(model, datamodule=datamodule, verbose=False)
    elif cfg.split == "test":
        trainer.test(model, datamodule=datamodule, verbose=False)
    else:
        raise ValueError(f"split={cfg.split!r}: expected 'test' or 'val'")
    return {"output": model.reports[cfg.split], "rain input": model.reports.get(f"{cfg.split}_input")}


def evaluate_folder(cfg: DictConfig) -> dict:
    from src.metrics.folder import score_folders

    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    workers = cfg.num_workers
    if workers == "auto":  # the CPUs this process may use (a SLURM allocation, taskset), at most 16
        workers = min(16, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    elif not isinstance(workers, int) or workers < 0:
        raise ValueError(f"num_workers={workers!r}: expected 'auto' or an integer >= 0")
    options = dict(device=device, num_workers=workers, batch_size=cfg.batch_size, progress=cfg.progress)
    if cfg.gt_dir:
        return {"output": score_folders(cfg.pred_dir, cfg.gt_dir, **options)}
    if not user_overrode("data"):
        raise ValueError("pred_dir= needs gt_dir=DIR or a data config (data=NAME data.root=DIR) for ground truth")
    require_set(cfg, "data")
    datamodule = instantiate(cfg.data)
    pairs = datamodule.gt_pairs(cfg.split)  # (result name, ground-truth path) of the split, in order
    return {"output": score_folders(cfg.pred_dir, None, gt_pairs=pairs, **options)}


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    setup_environment(cfg)
    L.seed_everything(cfg.seed)
    if bool(cfg.ckpt_path) == bool(cfg.pred_dir):
        raise ValueError("give exactly one of ckpt_path=FILE or pred_dir=DIR")
    reports = evaluate_checkpoint(cfg) if cfg.ckpt_path else evaluate_folder(cfg)
    result = reports["output"]
    write_json(result, f"{cfg.paths.output_dir}/metrics.json", cfg.get("metrics_file"))
    from rich.console import Console

    Console().print(report_table(reports, title=f"eval: {cfg.ckpt_path or cfg.pred_dir}"))


if __name__ == "__main__":
    main()
