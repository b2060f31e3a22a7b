"""A callback for tests: the training process sends itself a signal after a given step (as a kill would)."""

from __future__ import annotations

import os
import signal

import lightning as L


class SignalAt(L.Callback):
    def __init__(self, step: int, signal_name: str = "SIGKILL") -> None:
        self.step = int(step)
        self.signum = getattr(signal, signal_name)
        self.sent = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)
