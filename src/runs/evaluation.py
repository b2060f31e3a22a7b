"""What ``python -m src.eval`` does, for the entry point (``src/eval.py``) and for tests and notebooks.

* :func:`evaluate`: score a checkpoint (:func:`evaluate_checkpoint`) or a folder of results
  (:func:`evaluate_folder`), write metrics.json as a :class:`~src.runs.result.ScoreResult` (to the run dir and to
  ``metrics_file`` when given), print the table, and raise :class:`IncompleteResultError` when the result cannot
  be trusted (:func:`check_result`: non-finite scores, fewer images than the split holds).
* :func:`check_request`: the refusals of impossible requests, before anything is read or written.
"""

from __future__ import annotations

import logging
import math
import os

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.runs.environment import finish_wandb
from src.runs.report import report_table
from src.runs.result import METRICS_FILE, ScoreResult
from src.utils.config import instantiate_group, require_set, stored_with_overrides, user_overrode
from src.utils.errors import ConfigValueError

log = logging.getLogger(__name__)


class IncompleteResultError(RuntimeError):
    """The scores are not finite or cover fewer images than the split holds."""


def evaluate_checkpoint(cfg: DictConfig) -> dict:
    from src.utils.checkpoint import load_net_weights, read_checkpoint, require_complete, require_finite_weights

    ckpt = read_checkpoint(cfg.ckpt_path) if cfg.ckpt_path else None  # read once: run config and weights
    stored = ckpt.run_config if ckpt else {}
    for group in ("model", "data"):
        if stored.get(group) and not user_overrode(group):
            log.info("using the %s config stored in %s", group, cfg.ckpt_path)
            cfg[group] = stored_with_overrides(cfg, stored[group], group, cfg.ckpt_path)
    if stored.get("schedule") and "batch_size" in cfg.data and not user_overrode("data.batch_size"):
        cfg.data.batch_size = stored["schedule"].get("batch_size", 1)
    require_set(cfg, "data")
    datamodule = instantiate(cfg.data)
    if ckpt is None:  # the model config's own weights (model.init_from, e.g. model=spanet_release)
        model = instantiate(cfg.model, optimizer=None, scheduler=None)
        require_complete(model.net, model.init_report, cfg.model.init_from)
    else:
        model = instantiate(cfg.model, optimizer=None, scheduler=None, init_from=None)
        load_net_weights(model.net, ckpt)
    require_finite_weights(model.net.state_dict(), str(cfg.ckpt_path or cfg.model.get("init_from")))
    loggers = instantiate_group(cfg.get("logger"))
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=[])
    try:
        if cfg.split == "val":
            trainer.validate(model, datamodule=datamodule, verbose=False)
        else:
            trainer.test(model, datamodule=datamodule, verbose=False)
    finally:
        finish_wandb()
    ds = datamodule.val_set if cfg.split == "val" else (datamodule.test_set or datamodule.val_set)
    report = {**model.reports[cfg.split], "n_expected": len(ds) if ds is not None else None}
    return {"output": report, "rain input": model.reports.get(f"{cfg.split}_input")}


def check_result(report: dict, what: str) -> list[str]:
    """Why ``report`` cannot be trusted: non-finite mean scores, fewer images than expected (empty: fine)."""
    problems = [
        f"{proto} {m} is {v}"
        for proto, scores in report.get("mean", {}).items()
        for m, v in scores.items()
        if not math.isfinite(v)
    ]
    expected = report.get("n_expected")
    if expected is not None and report["n_images"] < expected:
        problems.append(f"scored {report['n_images']} of {expected} images")
    return [f"{what}: {p}" for p in problems]


def evaluate_folder(cfg: DictConfig) -> dict:
    from src.metrics.folder import score_folders

    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    workers = cfg.num_workers
    if workers == "auto":  # the CPUs this process may use (a SLURM allocation, taskset), at most 16
        workers = min(16, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    elif not isinstance(workers, int) or workers < 0:
        raise ConfigValueError(f"num_workers={workers!r}: expected 'auto' or an integer >= 0")
    options = dict(device=device, num_workers=workers, batch_size=cfg.batch_size, progress=cfg.progress)
    if cfg.gt_dir:
        return {"output": score_folders(cfg.pred_dir, cfg.gt_dir, **options)}
    if not user_overrode("data"):
        raise ConfigValueError("pred_dir= needs gt_dir=DIR or a data config (data=NAME data.root=DIR) for ground truth")
    require_set(cfg, "data")
    datamodule = instantiate(cfg.data)
    pairs = datamodule.gt_pairs(cfg.split)  # (result name, ground-truth path) of the split, in order
    return {"output": score_folders(cfg.pred_dir, None, gt_pairs=pairs, **options)}


def check_request(cfg: DictConfig) -> None:
    """Refuse what cannot work before anything is read or written."""
    if cfg.ckpt_path and cfg.pred_dir:
        raise ConfigValueError("give one of ckpt_path=FILE or pred_dir=DIR, not both")
    if not cfg.ckpt_path and not cfg.pred_dir and not cfg.model.get("init_from"):
        raise ConfigValueError(
            "give ckpt_path=FILE, pred_dir=DIR, or a model whose config names its weights (model=spanet_release)"
        )
    if cfg.split not in ("test", "val"):
        raise ConfigValueError(f"split={cfg.split!r}: expected 'test' or 'val'")


def evaluate(cfg: DictConfig) -> dict:
    """Score, write metrics.json (and metrics_file), print the table; returns the reports."""
    reports = evaluate_folder(cfg) if cfg.pred_dir else evaluate_checkpoint(cfg)
    result = reports["output"]
    problems = check_result(result, str(cfg.ckpt_path or cfg.pred_dir))
    ScoreResult(report=result, complete=not problems, problems=problems).write(
        f"{cfg.paths.output_dir}/{METRICS_FILE}", cfg.get("metrics_file")
    )
    from rich.console import Console

    Console().print(report_table(reports, title=f"eval: {cfg.ckpt_path or cfg.pred_dir}"))
    if problems:
        raise IncompleteResultError(
            "the result cannot be trusted (written with complete: false):\n  " + "\n  ".join(problems)
        )
    return reports
