"""The one LightningModule of the suite: any derainer network + its loss + optimiser/scheduler from config.

* ``net``: an ``nn.Module`` following docs/DEVELOPING.md (forward -> dict with "out", RGB on [0, 1], unclamped).
* ``loss``: ``forward(outputs, batch) -> (total, parts)``.
* ``optimizer`` / ``scheduler``: partials (``_partial_: true`` in ``conf/schedule``); the scheduler steps every
  iteration by default, because the paper counts its schedule in iterations.

Validation and test run on full images as they are (a network with a size constraint pads inside its own
forward, see docs/DEVELOPING.md). Every image is scored on its own with all protocols of ``src.metrics`` (per
image, then averaged over images), for the network output and, as a reference, for the rainy input itself (whose
scores are computed once per image and reused at every later validation: ``src.metrics.ScoreCache``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import lightning as L
import torch
from torch import nn

from src.metrics import ProtocolMetrics, ScoreCache
from src.utils.checkpoint import NonFiniteError, require_finite_weights


def _float32(v):
    """Floating tensors of a network's output (nested in dicts, lists, tuples) as float32."""
    if torch.is_tensor(v):
        return v.float() if v.is_floating_point() else v
    if isinstance(v, dict):
        return {k: _float32(t) for k, t in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_float32(t) for t in v)
    return v


class DerainModule(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Optional[Callable[..., torch.optim.Optimizer]] = None,
        scheduler: Optional[Callable[..., Any]] = None,
        scheduler_interval: str = "step",
        init_from: Optional[str] = None,
        init_sha256: Optional[str] = None,
    ) -> None:
        """``init_from``: a weights file (the authors' release, a suite checkpoint, a state dict) loaded into
        ``net`` now, as far as it fits (:func:`src.utils.checkpoint.init_weights` reports what was not; the report
        is kept as :attr:`init_report`, which prediction and evaluation require to be complete);
        ``init_sha256``: the file must have this sha256 (conf/model/spanet_release.yaml pins the release)."""
        super().__init__()
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.init_report: Optional[dict] = None  # what init_from loaded (None: no init_from)
        if init_from:
            from src.utils.checkpoint import init_weights

            self.init_report = init_weights(self.net, init_from, sha256=init_sha256)
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.metrics = nn.ModuleDict({k: ProtocolMetrics() for k in ("val", "val_input", "test", "test_input")})
        self.input_scores = {k: ScoreCache() for k in ("val", "test")}  # the rainy input's scores, per stage
        self.reports: dict[str, dict] = {}  # last full report per stage (see ProtocolMetrics.report)
        self.suite_config: Optional[dict] = None  # resolved run config, stored in checkpoints by train.py
        self.bad_files: list[str] = []  # training files skipped as unreadable (data.on_bad_file=skip), this process

    # --- forward ------------------------------------------------------------------------------
    def forward(self, rain: torch.Tensor, label: Optional[torch.Tensor] = None) -> dict:
        if getattr(self.net, "uses_label", False):
            return self.net(rain, label=label)
        return self.net(rain)

    def predict_full(self, rain: torch.Tensor, label: Optional[torch.Tensor] = None) -> dict:
        """Forward on full images of any size (the network handles its own size constraints)."""
        return self(rain, label)

    # --- steps --------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self(batch["rain"], batch.get("label"))
        with torch.autocast(self.device.type, enabled=False):  # under bf16-mixed the losses run in float32
            total, parts = self.loss(_float32(out), batch)
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"non-finite training loss at step {self.global_step} (parts: "
                f"{ {k: float(v) for k, v in parts.items()} }); lower the learning rate (schedule.optimizer.lr)"
            )
        bs = batch["rain"].shape[0]
        for errors in batch.get("bad_files") or ():  # data.on_bad_file=skip: files skipped for this batch
            self.bad_files += [e for e in errors.split("\n") if e]
        self.log("train/loss", total, prog_bar=True, batch_size=bs)
        for k, v in parts.items():
            self.log(f"train/loss_{k}", v, batch_size=bs)
        return total

    def _eval_step(self, batch: dict, stage: str) -> dict:
        out = self.predict_full(batch["rain"], batch.get("label"))
        names = list(batch["name"])
        self.metrics[stage].update(out["out"].detach().float(), batch["clean"], names)
        input_scores = self.input_scores[stage](batch["rain"], batch["clean"], names)
        self.metrics[f"{stage}_input"].update_scores(input_scores, names)
        return out

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        return self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        return self._eval_step(batch, "test")

    def _eval_epoch_end(self, stage: str) -> None:
        for key in (stage, f"{stage}_input"):
            metric = self.metrics[key]
            if not metric.update_called:
                continue
            report = metric.report()
            self.reports[key] = report
            prefix = f"{stage}/" if key == stage else f"{stage}/input_"
            for name, value in metric.compute().items():
                self.log(f"{prefix}{name}", value, prog_bar=(key == stage and name == "psnr_spanet"), sync_dist=False)
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")
        if not self.trainer.sanity_checking:
            self._require_finite("val")

    def _require_finite(self, stage: str) -> None:
        """Stop a diverged run here, before the checkpoint callbacks save anything of this validation."""
        where = f"step {self.global_step}, {stage}"
        require_finite_weights(dict(self.named_parameters()), where)
        report = self.reports.get(stage) or {}
        bad = [
            f"{proto} {m}"
            for proto, scores in report.get("mean", {}).items()
            for m, v in scores.items()
            if isinstance(v, float) and not math.isfinite(v)
        ]
        if bad:
            raise NonFiniteError(
                f"{where}: non-finite validation metrics ({', '.join(bad)}); the network output "
                f"is not a number (lower the learning rate, schedule.optimizer.lr)"
            )

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # --- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise ValueError("model.optimizer is not set: compose a schedule (e.g. schedule=spanet_paper)")
        opt = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return opt
        sched = self.scheduler_factory(optimizer=opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": self.scheduler_interval}}

    # --- checkpoints --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.suite_config is not None:
            checkpoint["suite_config"] = self.suite_config
