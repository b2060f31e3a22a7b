"""python -m src.eval: score a checkpoint on a data config, or score a folder of any method's results.

  python -m src.eval ckpt_path=logs/train/runs/<run>/checkpoints/best.ckpt [data=NAME] [split=test|val]
      model and data default to the ones stored in the checkpoint by src.train; model=/data= override them.
      Also accepts the authors' release file with model=spanet_release; `python -m src.eval model=spanet_release`
      (no ckpt_path) scores the release shipped in weights/.
  python -m src.eval pred_dir=DIR gt_dir=DIR          (ground truth matched by file name)
  python -m src.eval pred_dir=DIR data=realrain data.root=...   (ground truth = the data config's test split)
      folder scoring options: num_workers=N|auto (decoding processes; on the CPU they also score),
      batch_size=N (pairs per batch on a GPU), device=auto|cpu|cuda, progress=true|false.

Writes metrics.json (schema: n_images / mean / per_image, all protocols; plus ``n_expected`` and ``complete``,
and for folders ``n_left_out``: side files of src.predict in pred_dir, not scored) in the run dir and to
metrics_file=PATH when given, and prints a table naming each protocol.

``data.*`` / ``model.*`` overrides (with or without ``+``) apply on top of the configs stored in the checkpoint.
The command exits non-zero when the result cannot be trusted: non-finite weights or scores, or fewer images
scored than the split holds (``complete: false`` in metrics.json). An existing metrics_file or run dir is not
written over unless ``overwrite=true``, and metrics_file is claimed for the run (:mod:`src.utils.claim`): a
second eval writing it at the same time is refused. Refusals print one ``error:`` line, exit status 2.
``logger=csv|tensorboard|wandb|many`` logs the scores and the config.
"""

from __future__ import annotations

import hydra
import lightning as L
from omegaconf import DictConfig

from src.runs.environment import setup_environment
from src.runs.evaluation import check_request, evaluate
from src.runs.guards import refuse_existing_run
from src.runs.resolvers import register_resolvers
from src.utils.claim import OutputClaim
from src.utils.errors import refusals_exit
from src.utils.files import refuse_existing

register_resolvers()  # ${suite_run_dir} & co. in conf/hydra: before Hydra composes the config


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
@refusals_exit
def main(cfg: DictConfig) -> None:
    setup_environment(cfg)
    L.seed_everything(cfg.seed)
    check_request(cfg)
    refuse_existing_run(cfg.paths.output_dir, cfg)
    if not cfg.get("metrics_file"):
        evaluate(cfg)
        return
    with OutputClaim.for_file(cfg.metrics_file):  # a second eval writing the same file now is refused
        if not cfg.get("overwrite"):
            refuse_existing([cfg.metrics_file], what="metrics_file")
        evaluate(cfg)


if __name__ == "__main__":
    main()
