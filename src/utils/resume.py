"""A training run dir over several processes: resume, the one-writer lock, logger continuity, interruptions.

* :func:`resume_checkpoint` - which checkpoint ``fit`` continues from (``ckpt_path=`` / ``resume=auto`` / a job
  that SLURM requeued), and :func:`run_dir_of` - the run dir such a checkpoint belongs to (conf/hydra/default.yaml
  continues a run in its own dir when ``ckpt_path`` is its ``checkpoints/last.ckpt``).
* :class:`RunDirLock` - two processes never write one run dir.
* :func:`wandb_run_id` - the W&B run id kept in the run dir, so a resumed run continues the same W&B run.
* :func:`continue_csv` - the CSV log of a resumed run is appended to, from the checkpoint's step on.
* :func:`record_interruption` - ``interrupted.json`` in the run dir, a line in the sweep's ``interrupted.jsonl``.
* :func:`process_rank`, :func:`sweep_job`, :func:`resume_command`, :func:`use_run_dir_wandb_id` - what src.train
  needs to know about its process, its sweep job, the command that resumes it and its W&B run.
"""

from __future__ import annotations

import csv
import fcntl
import json
import logging
import os
import shlex
import socket
import time
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)

LAST = "last.ckpt"
WANDB_ID_FILE = "wandb_run_id.txt"
INTERRUPTED_FILE = "interrupted.json"
RESUME_CHOICES = (None, "auto", "never")


def run_dir_of(ckpt_path: Optional[str]) -> Optional[Path]:
    """The run dir of ``<run dir>/checkpoints/last.ckpt`` written by src.train (it has a .hydra/ folder);
    None for any other file (a best.ckpt, a foreign or released checkpoint start a new run dir)."""
    if not ckpt_path:
        return None
    p = Path(str(ckpt_path)).expanduser()
    if p.name != LAST or p.parent.name != "checkpoints":
        return None
    run = p.parent.parent
    return run if (run / ".hydra").is_dir() else None


def hydra_run_dir(task: str, ckpt_path: Optional[str], default: str) -> str:
    """Resolver ``suite_run_dir`` of conf/hydra/default.yaml: training from a run's last.ckpt continues in that
    run's dir; everything else gets ``default`` (a new timestamped dir)."""
    run = run_dir_of(ckpt_path) if task == "train" else None
    return str(run) if run is not None else default


def requeued_by_slurm() -> bool:
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def resume_checkpoint(resume: Optional[str], ckpt_path: Optional[str], run_dir: Path) -> Optional[str]:
    """The checkpoint ``trainer.fit`` starts from.

    ``ckpt_path`` set: that file (``resume`` must then be unset). ``resume=auto``: ``<run dir>/checkpoints/
    last.ckpt`` when it exists, else a fresh start. ``resume`` unset: fresh, except a job that SLURM requeued
    (``SLURM_RESTART_COUNT`` > 0), which continues like ``auto``. ``resume=never``: always fresh.
    """
    if resume not in RESUME_CHOICES:
        raise ValueError(f"resume={resume!r}: expected auto, never or null")
    if ckpt_path:
        if resume is not None:
            raise ValueError(f"pass either ckpt_path= or resume={resume}, not both")
        if not Path(str(ckpt_path)).is_file():
            raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such file")
        return str(ckpt_path)
    if resume == "never" or (resume is None and not requeued_by_slurm()):
        return None
    last = run_dir / "checkpoints" / LAST
    if last.is_file():
        log.info("resuming from %s", last)
        return str(last)
    log.info("resume=%s: %s does not exist yet, starting from scratch", resume or "auto (SLURM requeue)", last)
    return None


class RunDirLock:
    """An exclusive ``flock`` on ``<run dir>/.lock`` held while a run writes the dir.

    The operating system drops it when the process ends in any way (also SIGKILL), so no stale lock survives a
    crash. The file names the holder (host, pid, start time) for the error message of the second process."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._fd: Optional[int] = None

    def acquire(self) -> "RunDirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 1024, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RuntimeError(
                f"run dir {self.path.parent} is in use by {holder}: two runs must not write one run dir; wait "
                f"for that run to end, or choose another dir (hydra.run.dir=...)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host {socket.gethostname()} pid {os.getpid()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of this run dir: read from ``wandb_run_id.txt``, or made and stored there."""
    path = Path(run_dir) / WANDB_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    import secrets
    import string

    alphabet = string.ascii_lowercase + string.digits  # W&B's own run ids: 8 of these
    run_id = "".join(secrets.choice(alphabet) for _ in range(8))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


def continue_csv(metrics_csv: Path, step: int) -> list[str]:
    """Prepare a resumed run's CSV log: keep the rows logged before ``step`` (those after it were logged past the
    checkpoint and are logged again by the resumed run); returns the header for the logger to append with."""
    if not metrics_csv.is_file():
        return []
    with open(metrics_csv, newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = [r for r in reader if r.get("step", "") == "" or int(float(r["step"])) < step]
    tmp = metrics_csv.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, metrics_csv)
    return header


def continue_csv_logger(logger) -> None:
    """Make a Lightning ``CSVLogger`` append to its existing ``metrics.csv`` instead of deleting it, as it does
    when its dir is not empty (the rows logged past the checkpoint are dropped at the start of training by
    :class:`src.lit.preemption.ContinueLogs`)."""
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    class AppendingWriter(ExperimentWriter):
        def _check_log_dir_exists(self) -> None:  # keep the file: this run continues it
            pass

    path = Path(logger.log_dir) / ExperimentWriter.NAME_METRICS_FILE
    header = continue_csv(path, step=2**62) if path.is_file() else []
    writer = AppendingWriter(log_dir=logger.log_dir)
    writer.metrics_keys = header
    logger._experiment = writer


def record_interruption(run_dir: Path, info: dict, sweep_dir: Optional[Path] = None) -> None:
    """``<run dir>/interrupted.json`` (removed again when a resume of the run finishes) and, in a sweep, a line
    in ``<sweep dir>/interrupted.jsonl`` naming the job."""
    info = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / INTERRUPTED_FILE).write_text(json.dumps(info, indent=2) + "\n")
    with open(Path(run_dir) / "interruptions.jsonl", "a") as f:
        f.write(json.dumps(info) + "\n")
    if sweep_dir is not None:
        with open(Path(sweep_dir) / "interrupted.jsonl", "a") as f:
            f.write(json.dumps(info) + "\n")


def forget_earlier_run(run_dir: Path) -> None:
    """A run that starts afresh in a dir an earlier run used (``overwrite=true``) continues none of its records:
    not its W&B run id, not its interruptions."""
    for name in (WANDB_ID_FILE, INTERRUPTED_FILE, "interruptions.jsonl"):
        (Path(run_dir) / name).unlink(missing_ok=True)


def interruptions(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "interruptions.jsonl"
    if not path.is_file():
        return []
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s:%d: not a JSON record (a write cut short?); left out", path, n)
    return records


def process_rank() -> int:
    """This process's global rank as the launcher set it (0 for the process that owns the run dir): torchrun /
    Lightning's launcher, SLURM (when it started several tasks), or LSF's jsrun."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key, "").isdigit():
            if key == "SLURM_PROCID" and int(os.environ.get("SLURM_NTASKS", "1") or 1) == 1:
                continue
            return int(os.environ[key])
    return 0


def sweep_job() -> tuple[Path | None, dict]:
    """(sweep dir, what names this job) under Hydra multirun; (None, {}) for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None, {}
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None, {}
    return Path(hc.sweep.dir), {"job": hc.job.num, "overrides": list(hc.overrides.task)}


def resume_command(checkpoint: str | None) -> str | None:
    """The command that continues an interrupted run: its own overrides + ckpt_path=<its last.ckpt>."""
    from hydra.core.hydra_config import HydraConfig

    if not checkpoint:
        return None
    overrides = []
    if HydraConfig.initialized():
        overrides = [o for o in HydraConfig.get().overrides.task
                     if not o.lstrip("+~").startswith(("ckpt_path=", "resume=", "hydra."))]
    return " ".join(["python -m src.train", *map(shlex.quote, overrides), shlex.quote(f"ckpt_path={checkpoint}")])


def use_run_dir_wandb_id(cfg: DictConfig, run_dir: Path, rank0: bool) -> None:
    """Every W&B logger of the run continues the run dir's W&B run (id kept in the run dir)."""
    loggers = cfg.get("logger") or {}
    for key, conf in loggers.items():
        if conf is not None and str(conf.get("_target_", "")).endswith("WandbLogger") and rank0:
            with open_dict(cfg):
                conf.id = wandb_run_id(run_dir)
                conf.resume = "allow"
