"""Signals: SIGTERM / SIGINT / SIGUSR1 stop training at the next step boundary with a resumable last.ckpt.

* SIGTERM (``kill``, a cluster's pre-emption or time limit) -> save ``last.ckpt``, exit 143 (128 + 15).
* SIGINT (Ctrl-C) -> the same, exit 130; a second Ctrl-C stops at once without saving.
* SIGUSR1 -> save ``last.ckpt``; on SLURM, when Lightning's SLURM environment has ``auto_requeue`` (its default),
  requeue the job with ``scontrol requeue`` (the requeued job continues from that checkpoint in the same run
  dir, see ``resume`` in conf/train.yaml); exit 138 (128 + 10).

The handler only records the signal; the checkpoint is written by :class:`Preemption` at the end of the current
training step, where the model, optimiser, scheduler, loop counters and data order agree, so the resumed run is
exactly the uninterrupted one. (Lightning's own SLURM handler saves inside the signal handler, possibly in the
middle of an optimiser step, and Lightning's SIGTERM handling ends the process with status 0; both are replaced
here for the duration of training. Lightning's :class:`~lightning.fabric.plugins.environments.SLURMEnvironment`
still decides whether to requeue and which signal requeues.) Under DDP the ranks agree on stopping at the same
step (a signal to any rank stops all). Signals during the final validation/test end the run after that stage
with the same exit status, without a new checkpoint (training is over by then).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Optional

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment

from src.runs import compat

log = logging.getLogger(__name__)

EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130, signal.SIGUSR1: 138}


class RunInterrupted(SystemExit):
    """Raised out of ``trainer.fit`` after a signal; a ``SystemExit`` whose code is the exit status."""

    def __init__(self, signum: int, step: int, checkpoint: Optional[str], requeued: bool = False) -> None:
        super().__init__(EXIT_CODES.get(signal.Signals(signum), 128 + signum))
        self.signum = int(signum)
        self.signal_name = signal.Signals(signum).name
        self.step = step
        self.checkpoint = checkpoint
        self.requeued = requeued

    def __str__(self) -> str:
        where = f"; resumable from {self.checkpoint}" if self.checkpoint else ""
        return f"interrupted by {self.signal_name} at step {self.step}{where}"


class SignalGuard:
    """Records SIGTERM / SIGINT / SIGUSR1 instead of dying; ``install()`` may be called again to take them back
    from Lightning (which registers its own SIGTERM handler at every ``fit``/``validate``/``test``)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        if self.received is None:
            log.warning(
                "received %s: stopping at the end of this training step with a checkpoint", signal.Signals(signum).name
            )
            self.received = signum

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for s in self.SIGNALS:
            previous = signal.signal(s, self._handler)
            self._previous.setdefault(s, previous)

    def restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for s, h in self._previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        self._previous = {}

    def __enter__(self) -> SignalGuard:
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        self.restore()


def slurm_requeue(environment) -> bool:
    """``scontrol requeue`` this SLURM job when Lightning's SLURM environment asks for auto-requeue."""
    if not isinstance(environment, SLURMEnvironment) or not environment.auto_requeue:
        return False
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job_id = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ.get("SLURM_JOB_ID", "")
    if not re.fullmatch(r"[0-9_]+", job_id):
        log.warning("SIGUSR1 on SLURM but no usable SLURM_JOB_ID (%r): not requeued", job_id)
        return False
    try:
        result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    except FileNotFoundError:
        log.warning("scontrol not found: SLURM job %s not requeued", job_id)
        return False
    if result.returncode:
        log.warning("scontrol requeue %s failed (%s): %s", job_id, result.returncode, result.stderr.strip())
        return False
    log.warning("requeued SLURM job %s; it continues from the checkpoint in the same run dir", job_id)
    return True


class Preemption(L.Callback):
    """Saves ``last.ckpt`` and raises :class:`RunInterrupted` at the first step boundary after a signal."""

    def __init__(self, guard: SignalGuard, ckpt_path: str) -> None:
        self.guard = guard
        self.ckpt_path = str(ckpt_path)

    def on_train_start(self, trainer, pl_module) -> None:
        self.guard.install()  # after Lightning registered its own SIGTERM handler for this fit

    def _received(self, trainer) -> bool:
        flag = self.guard.received is not None
        if trainer.world_size > 1:
            flag = trainer.strategy.reduce_boolean_decision(flag, all=False)
        return flag

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._received(trainer):
            return
        if self._validation_due(trainer):
            # stop after this step's validation (its scores, best.ckpt and last.ckpt are written first); a stop
            # here would make the resumed run skip it
            self._after_validation = True
            return
        self._stop(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if getattr(self, "_after_validation", False):
            self._stop(trainer)

    @staticmethod
    def _validation_due(trainer) -> bool:
        try:  # Lightning's own decision, made right after this hook
            return compat.validation_due(trainer)
        except Exception:  # noqa: BLE001 - another Lightning version: stop now (the resumed run skips one validation)
            return False

    def _stop(self, trainer) -> None:
        signum = self.guard.received or signal.SIGTERM  # another rank received it
        if not self._saved_at_this_step(trainer):
            Path(self.ckpt_path).parent.mkdir(parents=True, exist_ok=True)
            # the whole training state (optimiser, loops, callbacks): what a resume needs. It is still read
            # weights-only (tensors and plain containers); Lightning's "weights_only" here means "weights alone"
            trainer.save_checkpoint(self.ckpt_path, weights_only=False)
        requeued = False
        if signum == signal.SIGUSR1 and trainer.is_global_zero:
            requeued = slurm_requeue(compat.cluster_environment(trainer))
        raise RunInterrupted(signum, trainer.global_step, self.ckpt_path, requeued)

    def _saved_at_this_step(self, trainer) -> bool:
        """Whether a ModelCheckpoint wrote ``ckpt_path`` at this step (at the validation just before)."""
        from lightning.pytorch.callbacks import ModelCheckpoint

        target = Path(self.ckpt_path).resolve()
        for cb in trainer.callbacks:
            if isinstance(cb, ModelCheckpoint) and compat.last_step_saved(cb) == trainer.global_step:
                if target in {Path(p).resolve() for p in (cb.last_model_path, cb.best_model_path) if p}:
                    return True
        return False
