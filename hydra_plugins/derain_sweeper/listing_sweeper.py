"""``hydra/sweeper=listing``: Hydra's basic sweeper that runs EVERY job and then lists every failed one.

Hydra's basic sweeper stops at the first batch that holds a failed job and re-raises only that job's error,
so a sweep with several failures names one and later batches never run. This sweeper runs all batches, writes
``<sweep dir>/sweep_summary.json`` and, when any job failed, logs one line per failed job and raises
:class:`FailedJobsError` listing them all (the command exits non-zero). Each failed job's own dir holds
``error.txt`` with the traceback (``src.runs.guards.RunGuard``). A launcher that fails for a whole batch (a cluster
job that died without a result under ``hydra/launcher=slurm``) fails that batch's jobs, each recorded with the
launcher's error; the sweep goes on. A multirun into an existing sweep dir is refused (``overwrite=true`` or
``resume=auto`` lift that), and so is one while a job dir of that sweep is in use by a live run.

``sweep_summary.json``::

    {"n_jobs": 4, "n_failed": 2,
     "jobs": [{"num": 0, "dir": "<job dir>", "overrides": ["model=b_a", "seed=1"], "status": "completed",
               "error": null},
              {"num": 1, "dir": "...", "overrides": [...], "status": "failed", "error": "ValueError: ..."}, ...]}
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf

from src.runs import compat
from src.runs.compat import BasicSweeper

log = logging.getLogger(__name__)
SUMMARY_FILE = "sweep_summary.json"


class FailedJobsError(RuntimeError):
    """Some jobs of a sweep failed; the message lists each with its dir and error."""


@dataclass
class ListingSweeperConf:
    _target_: str = "hydra_plugins.derain_sweeper.listing_sweeper.ListingSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Any] = None


ConfigStore.instance().store(group="hydra/sweeper", name="listing", node=ListingSweeperConf, provider="derain")


def job_record(num: int, ret: Any) -> dict:
    failed = ret.status == JobStatus.FAILED
    err = compat.job_error(ret) if failed else None
    job_dir = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg is not None else None
    return {
        "num": num,
        "dir": job_dir,
        "overrides": list(ret.overrides or []),
        "status": "failed" if failed else "completed",
        "error": None if err is None else f"{type(err).__name__}: {err}".strip(),
    }


def lost_record(num: int, overrides: Any, err: BaseException) -> dict:
    """The record of a job whose launcher failed before it returned a result."""
    return {
        "num": num,
        "dir": None,
        "overrides": list(overrides),
        "status": "failed",
        "error": f"{type(err).__name__}: {err}".strip(),
    }


def refuse_used_sweep_dir(sweep_dir: Path, config: Any) -> None:
    """A sweep dir that holds a sweep is not written over (unless overwrite=true or resume=auto), and not at all
    while a live run holds the lock of one of its job dirs."""
    from src.runs.rundir import LOCK_FILE, RunDirExistsError, RunDirInUseError, lock_holder

    if not (sweep_dir / "multirun.yaml").exists():
        return
    if not config.get("overwrite") and config.get("resume") != "auto":
        raise RunDirExistsError(
            f"{sweep_dir} already holds a sweep (multirun.yaml); refusing to write over its "
            f"jobs. Choose a new hydra.sweep.dir, or pass overwrite=true"
        )
    for lock in sorted(sweep_dir.rglob(LOCK_FILE)):
        holder = lock_holder(lock.parent)
        if holder:
            raise RunDirInUseError(f"{sweep_dir}: a job of this sweep is still running ({holder})")


class ListingSweeper(BasicSweeper):
    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        params_conf = compat.sweeper_params(self)
        params_conf.extend(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(parser.parse_overrides(params_conf), self.max_batch_size)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        refuse_used_sweep_dir(sweep_dir, self.config)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        returns, records = [], []
        initial_job_idx = 0
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            try:
                results = self.launcher.launch(batch, initial_job_idx=initial_job_idx)
                records += [job_record(initial_job_idx + i, r) for i, r in enumerate(results)]
            except Exception as err:  # noqa: BLE001 - the launcher lost the whole batch: record every job of it
                log.error(
                    "the launcher failed for jobs %d-%d: %s", initial_job_idx, initial_job_idx + len(batch) - 1, err
                )
                results = []
                records += [lost_record(initial_job_idx + i, overrides, err) for i, overrides in enumerate(batch)]
            initial_job_idx += len(batch)
            returns.append(results)
            self._write_summary(sweep_dir, records)  # kept up to date while the sweep runs

        failed = [r for r in records if r["status"] == "failed"]
        if failed:
            lines = [f"job {r['num']} ({' '.join(r['overrides'])}): {r['error']}\n    dir: {r['dir']}" for r in failed]
            for line in lines:
                log.error("failed %s", line)
            raise FailedJobsError(
                f"{len(failed)} of {len(records)} jobs of the sweep failed (each failed job dir "
                f"holds error.txt; summary: {sweep_dir / SUMMARY_FILE}):\n  " + "\n  ".join(lines)
            )
        return returns

    @staticmethod
    def _write_summary(sweep_dir: Path, records: list) -> None:
        summary = {"n_jobs": len(records), "n_failed": sum(r["status"] == "failed" for r in records), "jobs": records}
        tmp = sweep_dir / (SUMMARY_FILE + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2))
        tmp.replace(sweep_dir / SUMMARY_FILE)
