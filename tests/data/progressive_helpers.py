"""A callback for the progressive-schedule tests: every process records the names and the size of each training
batch it gets, per global step, into ``<run dir>/batches_rank<r>.json``."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L


class RecordBatches(L.Callback):
    def __init__(self) -> None:
        self.seen: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append([trainer.global_step, list(batch["name"]), list(batch["rain"].shape)])

    def on_train_end(self, trainer, pl_module) -> None:
        out = Path(trainer.default_root_dir) / f"batches_rank{trainer.global_rank}.json"
        out.write_text(json.dumps(self.seen))
