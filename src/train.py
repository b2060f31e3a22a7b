"""python -m src.train [overrides]: build data, model, trainer from config; fit; validate and test the chosen weights.

Writes into the run dir (logs/<task>/runs/<timestamp>/): .hydra/ (resolved config), checkpoints/ (best by
val/psnr_spanet, last), metrics.json (:class:`src.runs.result.RunResult`), logger files. ``test_ckpt``: ``best``
(default) scores the best checkpoint by the monitored validation score, ``last`` the final weights (the SPANet
paper's practice). A run that stops early or scores fewer images than its splits hold says so in metrics.json
(``complete: false``) and exits non-zero, unless the debug configs asked for it. Everything around fit (the
run-dir lock, resume, signals, interruption records, metrics.json) is :class:`src.runs.training.TrainingRun`'s;
docs/DEVELOPING.md says where each part of a run's life lives.
"""

from __future__ import annotations

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.runs.compute import apply_compute
from src.runs.environment import setup_environment
from src.runs.guards import check_train_config, refuse_existing_run
from src.runs.resolvers import register_resolvers
from src.runs.result import RunResult
from src.runs.trainer import IncompleteRunError, tested_weights
from src.runs.training import TrainingRun, picture_line, raise_if_incomplete
from src.utils.config import require_set
from src.utils.errors import refusals_exit

__all__ = ["IncompleteRunError", "main", "train"]


def train(cfg: DictConfig) -> RunResult:
    setup_environment(cfg)
    check_train_config(cfg)
    require_set(cfg, "data")
    refuse_existing_run(cfg.paths.output_dir, cfg)
    compute = apply_compute(cfg)  # compute=equal_*: the schedule stretched to the budget (after the resume check)
    with TrainingRun(cfg) as run:
        if run.finished is not None:
            return run.finished
        L.seed_everything(cfg.seed, workers=True)
        datamodule = instantiate(cfg.data)
        model = instantiate(cfg.model, **({"init_from": None} if run.ckpt_path else {}))  # resuming restores all
        model.suite_config = OmegaConf.to_container(cfg, resolve=True)
        trainer = run.trainer(model)
        with run.job(trainer):
            trainer.fit(model, datamodule=datamodule, ckpt_path=run.ckpt_path, weights_only=True)
            run.stop_if_signalled(trainer)
            ckpt = tested_weights(cfg, trainer)
            trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)
            if cfg.get("test") and datamodule.test_set is not None:  # no test split: not tested on val again
                trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)
            run.stop_if_signalled(trainer)
            result = run.result(trainer, datamodule, model, ckpt, compute)
        run.finish(result, trainer)
    return result


register_resolvers()  # ${suite_run_dir}, ${suite_count}, ${suite_add}: before Hydra composes the config


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@refusals_exit
def main(cfg: DictConfig) -> float | None:
    result = train(cfg)
    raise_if_incomplete(result, cfg.paths.output_dir)
    if picture_line(cfg.paths.output_dir):
        print(picture_line(cfg.paths.output_dir), flush=True)  # the last line a run prints
    return result.objective()  # the value a sweeper would optimise


if __name__ == "__main__":
    main()
