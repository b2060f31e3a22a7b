"""A training run dir over several processes: :class:`RunDir` owns what survives a process.

* the one-writer lock (:class:`RunDirLock`): a POSIX lock that dies with the process holding it;
* resume resolution: which checkpoint ``fit`` continues from (:meth:`RunDir.resume_checkpoint`: ``ckpt_path=``,
  ``resume=auto``, a job that SLURM requeued), and the run dir a checkpoint belongs to (:func:`run_dir_of`,
  the ``suite_run_dir`` resolver of conf/hydra/default.yaml);
* the config-diff refusal: a resume must be the same run (:meth:`RunDir.refuse_changed_resume`);
* interruption records: ``interrupted.json`` (the command that resumes), ``interruptions.jsonl`` and, in a
  sweep, the sweep's ``interrupted.jsonl`` (:meth:`RunDir.record_interruption`);
* the W&B run id kept in the dir, so a resumed run continues its W&B run (:meth:`RunDir.wandb_run_id`);
* the run's result, metrics.json (:mod:`src.runs.result`), and whether the run already finished.

The cost of the run's earlier parts travels in its checkpoints (:mod:`src.runs.cost`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shlex
import socket
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from src.runs.result import METRICS_FILE, RunResult, read_result
from src.utils.errors import OutputExistsError

log = logging.getLogger(__name__)

LAST = "last.ckpt"
WANDB_ID_FILE = "wandb_run_id.txt"
INTERRUPTED_FILE = "interrupted.json"
INTERRUPTIONS_FILE = "interruptions.jsonl"
LOCK_FILE = ".lock"
RESUME_CHOICES = (None, "auto", "never")

#: what a resumed run may change: where the data lie, how they are loaded, how long the run goes on
RESUME_MAY_CHANGE = (
    "schedule.max_steps",
    "data.root",
    "data.num_workers",
    "data.pin_memory",
    "data.persistent_workers",
    "data.on_bad_file",
)
#: what must stay as the interrupted run had it (its .hydra/config.yaml): what it learns from, and the numerics
RESUME_MUST_MATCH = (
    "model",
    "data",
    "schedule",
    "seed",
    "compute",
    "matmul_precision",
    "trainer.precision",
    "trainer.gradient_clip_val",
    "trainer.gradient_clip_algorithm",
    "trainer.accumulate_grad_batches",
    "trainer.deterministic",
)


class RunDirExistsError(OutputExistsError):
    """The run dir (or sweep dir) already holds a run; nothing was written there."""


class RunDirInUseError(RunDirExistsError, RuntimeError):
    """Another live process writes the run dir (or a job dir of the sweep); nothing was written there."""


class ResumeConfigError(RunDirExistsError):
    """A resume into a run dir whose run was configured differently; nothing was written there."""


# --- the process and its Hydra job --------------------------------------------------------------------------


def process_rank() -> int:
    """This process's global rank as the launcher set it (0 for the process that owns the run dir): torchrun /
    Lightning's launcher, SLURM (when it started several tasks), or LSF's jsrun."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key, "").isdigit():
            if key == "SLURM_PROCID" and int(os.environ.get("SLURM_NTASKS", "1") or 1) == 1:
                continue
            return int(os.environ[key])
    return 0


def requeued_by_slurm() -> bool:
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


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
        overrides = [
            o
            for o in HydraConfig.get().overrides.task
            if not o.lstrip("+~").startswith(("ckpt_path=", "resume=", "hydra."))
        ]
    return " ".join(["python -m src.train", *map(shlex.quote, overrides), shlex.quote(f"ckpt_path={checkpoint}")])


# --- which dir, which checkpoint ------------------------------------------------------------------------------


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


# --- the lock -------------------------------------------------------------------------------------------------

_HELD: dict[str, RunDirLock] = {}  # the locks this process holds, by resolved path


class RunDirLock:
    """An exclusive lock on ``<run dir>/.lock`` held while a run writes the dir.

    A POSIX record lock (``fcntl.lockf``) belongs to the process that took it: the operating system drops it when
    that process ends in any way (also SIGKILL), and processes forked from it (data loader workers, which may
    outlive a killed parent by seconds) do not hold it, so a lock whose holder is dead is never a lock. Once the
    run goes ahead, :meth:`note_holder` writes who holds it (host, pid, start time) into the file for the message
    of a refused process; a process that is refused, or finds nothing to do, leaves the file as it was. A second
    lock on the same dir in the same process is refused too (POSIX locks do not exclude their own process, and
    closing a second descriptor of the file would drop the first lock): :mod:`src.runs.guards` hands the lock it
    took before Hydra wrote the dir to the run instead."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: Optional[int] = None
        self._noted = False

    def acquire(self, note: bool = True) -> RunDirLock:
        """Take the lock (:class:`RunDirInUseError` naming the holder when a live process has it); ``note``:
        write this process into the file now."""
        key = str(self.path.resolve())
        if key in _HELD:
            self._refuse(os.pread(_HELD[key]._fd, 1024, 0))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 1024, 0)
            os.close(fd)  # this process holds no lock on the file: closing drops nothing
            self._refuse(holder)
        self._fd = fd
        _HELD[key] = self
        if note:
            self.note_holder()
        return self

    def _refuse(self, holder: bytes) -> None:
        who = holder.decode(errors="replace").strip() or "another process"
        raise RunDirInUseError(
            f"run dir {self.path.parent} is in use by {who}: two runs must not write one run dir; "
            f"wait for that run to end, or choose another dir (hydra.run.dir=...)"
        ) from None

    def note_holder(self) -> None:
        """Write this process (host, pid, since when) into the lock file, once."""
        if self._fd is not None and not self._noted:
            os.ftruncate(self._fd, 0)
            os.pwrite(
                self._fd,
                f"host {socket.gethostname()} pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(),
                0,
            )
            self._noted = True

    def release(self) -> None:
        if self._fd is not None:
            _HELD.pop(str(self.path.resolve()), None)
            os.close(self._fd)  # drops the lock
            self._fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(run_dir: str | os.PathLike) -> Optional[str]:
    """Why ``run_dir`` cannot be written now (a live process holds its lock), or None."""
    if not (Path(run_dir) / LOCK_FILE).is_file():
        return None
    try:
        RunDirLock(run_dir).acquire(note=False).release()
    except RunDirInUseError as err:
        return str(err)
    return None


# --- the run dir ----------------------------------------------------------------------------------------------


class RunDir:
    """The dir of one training run and the records that carry it over interruptions."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @property
    def last_checkpoint(self) -> Path:
        return self.path / "checkpoints" / LAST

    def lock(self) -> RunDirLock:
        return RunDirLock(self.path)

    def resume_checkpoint(self, resume: Optional[str], ckpt_path: Optional[str]) -> Optional[str]:
        """The checkpoint ``trainer.fit`` starts from.

        ``ckpt_path`` set: that file (``resume`` must then be unset). ``resume=auto``: ``<run dir>/checkpoints/
        last.ckpt`` when it exists, else a fresh start. ``resume`` unset: fresh, except a job that SLURM requeued
        (``SLURM_RESTART_COUNT`` > 0), which continues like ``auto``. ``resume=never``: always fresh.
        """
        from src.utils.errors import ConfigValueError

        if resume not in RESUME_CHOICES:
            raise ConfigValueError(f"resume={resume!r}: expected auto, never or null")
        if ckpt_path:
            if resume is not None:
                raise ConfigValueError(f"pass either ckpt_path= or resume={resume}, not both")
            if not Path(str(ckpt_path)).is_file():
                raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such file")
            return str(ckpt_path)
        if resume == "never" or (resume is None and not requeued_by_slurm()):
            return None
        if self.last_checkpoint.is_file():
            log.info("resuming from %s", self.last_checkpoint)
            return str(self.last_checkpoint)
        log.info(
            "resume=%s: %s does not exist yet, starting from scratch",
            resume or "auto (SLURM requeue)",
            self.last_checkpoint,
        )
        return None

    def finished(self, max_steps: int) -> Optional[RunResult]:
        """The run's result when it already ran to the end at this ``max_steps`` (a resume has nothing to do):
        metrics.json says complete, or shortened on purpose, and no interruption is pending."""
        if not (self.path / METRICS_FILE).is_file() or (self.path / INTERRUPTED_FILE).exists():
            return None
        try:
            result = read_result(self.path)
        except (OSError, ValueError):
            return None
        if not isinstance(result, RunResult) or result.max_steps != max_steps:
            return None
        return result if result.complete or result.shortened_on_purpose else None

    def refuse_changed_resume(self, cfg: Mapping[str, Any]) -> None:
        """Refuse to resume a run with another model, data, schedule, seed or numerics than the run had (compared,
        unresolved, with the run dir's ``.hydra/config.yaml``): ``ckpt_path=`` alone composes the DEFAULT config,
        which would silently continue the run as something else. Only :data:`RESUME_MAY_CHANGE` may differ."""
        saved = self.path / ".hydra" / "config.yaml"
        if not saved.is_file():
            return
        from omegaconf import OmegaConf

        before, now = _flat_keys(OmegaConf.load(saved)), _flat_keys(cfg)
        diffs = [
            f"{k}: {before.get(k, '<unset>')!r} in the run, {now.get(k, '<unset>')!r} now"
            for k in sorted(set(before) | set(now))
            if k not in RESUME_MAY_CHANGE and before.get(k) != now.get(k)
        ]
        if diffs:
            overrides = self.path / ".hydra" / "overrides.yaml"
            raise ResumeConfigError(
                f"{self.path}: this command would resume that run with another configuration ({len(diffs)} "
                "difference(s): "
                + "; ".join(diffs[:6])
                + ("; ..." if len(diffs) > 6 else "")
                + f"). Resume with the run's own overrides (listed in {overrides}; interrupted.json, when the run "
                "was interrupted, holds the whole command), or start a new run with model.init_from=<its checkpoint>"
            )

    # --- records ----------------------------------------------------------------------------------------------

    def record_interruption(self, info: dict, sweep_dir: Optional[Path] = None) -> None:
        """``interrupted.json`` (removed again when a resume of the run finishes), a line in
        ``interruptions.jsonl`` and, in a sweep, a line in ``<sweep dir>/interrupted.jsonl`` naming the job."""
        info = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / INTERRUPTED_FILE).write_text(json.dumps(info, indent=2) + "\n")
        logs = [self.path / INTERRUPTIONS_FILE] + ([Path(sweep_dir) / "interrupted.jsonl"] if sweep_dir else [])
        for log_file in logs:
            with open(log_file, "a") as f:
                f.write(json.dumps(info) + "\n")

    def interruptions(self) -> list[dict]:
        path = self.path / INTERRUPTIONS_FILE
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

    def forget_earlier_run(self) -> None:
        """A run that starts afresh in a dir an earlier run used (``overwrite=true``) continues none of its records:
        not its W&B run id, not its interruptions."""
        for name in (WANDB_ID_FILE, INTERRUPTED_FILE, INTERRUPTIONS_FILE):
            (self.path / name).unlink(missing_ok=True)

    def finish(self, result: RunResult) -> Path:
        """Write the run's metrics.json; the interruption it resumed from is over."""
        path = result.write(self.path)
        (self.path / INTERRUPTED_FILE).unlink(missing_ok=True)
        return path

    def wandb_run_id(self) -> str:
        """The W&B run id of this run dir: read from ``wandb_run_id.txt``, or made and stored there."""
        path = self.path / WANDB_ID_FILE
        if path.is_file():
            return path.read_text().strip()
        import secrets
        import string

        alphabet = string.ascii_lowercase + string.digits  # W&B's own run ids: 8 of these
        run_id = "".join(secrets.choice(alphabet) for _ in range(8))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id + "\n")
        return run_id


def _flat_keys(cfg: Any) -> dict[str, Any]:
    """The keys of :data:`RESUME_MUST_MATCH` in ``cfg`` (unresolved), flattened to dotted names."""
    from omegaconf import DictConfig, OmegaConf

    out: dict[str, Any] = {}
    for key in RESUME_MUST_MATCH:
        node = OmegaConf.select(cfg, key, default=None) if isinstance(cfg, DictConfig) else _select(cfg, key)
        if isinstance(node, DictConfig):
            node = OmegaConf.to_container(node, resolve=False)
        out.update(_flat(node, key))
    return out


def _select(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = cfg.get(part) if hasattr(cfg, "get") else None
    return cfg


def _flat(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}.{key}"))
        return out
    return {prefix: node}
