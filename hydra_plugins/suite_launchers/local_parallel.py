"""``hydra/launcher=local_parallel``: N jobs of a sweep at once on one machine, each with its own GPU(s).

Hydra loads launchers only from its ``hydra_plugins`` package, so the class lives here; the helpers (GPU slots,
the record of a job that died) are in src/runs/launchers.py. Config: conf/hydra/launcher/local_parallel.yaml.
Every job gets a result: a job whose process is killed (SIGKILL, out of memory) is a failed job with its
``error.txt``, and the sweep goes on with the others.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher
from src.runs.devices import visible_gpus
from src.runs.launchers import died_job_return, gpu_slots

log = logging.getLogger(__name__)


def local_executor(params: dict, gpus: tuple[int, ...]):
    """submitit's local executor for one job: its own process, CUDA_VISIBLE_DEVICES = ``gpus`` ("" for none)."""
    import submitit

    executor = submitit.LocalExecutor(folder=params["submitit_folder"])
    executor.update_parameters(
        timeout_min=params.get("timeout_min") or 10080,
        tasks_per_node=1,
        gpus_per_node=len(gpus),
        visible_gpus=gpus,
        stderr_to_stdout=bool(params.get("stderr_to_stdout")),
    )
    return executor


class LocalParallelLauncher(LocalLauncher):
    """submitit's local launcher, N jobs at a time, each with its own GPUs (``CUDA_VISIBLE_DEVICES``)."""

    def __init__(
        self, n_parallel: Optional[int] = None, gpus_per_job: int = 1, poll_s: float = 0.5, **params: Any
    ) -> None:
        super().__init__(**params)
        self.n_parallel = n_parallel
        self.gpus_per_job = int(gpus_per_job)
        self.poll_s = float(poll_s)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None
        slots = gpu_slots(visible_gpus(), self.gpus_per_job, self.n_parallel)
        params = dict(self.params)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(
            "local_parallel: %d job(s), %d at a time, GPUs per job: %s",
            len(job_overrides),
            len(slots),
            [list(s) for s in slots] if slots[0] else "none",
        )
        pending = list(enumerate(job_overrides))
        results: list[Optional[JobReturn]] = [None] * len(job_overrides)
        running: dict[int, tuple[int, Any]] = {}  # slot -> (position, job)
        while pending or running:
            for slot in range(len(slots)):
                if slot in running or not pending:
                    continue
                pos, overrides = pending.pop(0)
                idx = initial_job_idx + pos
                executor = local_executor(params, slots[slot])
                log.info(
                    "\t#%d : %s (GPUs: %s)",
                    idx,
                    " ".join(filter_overrides(overrides)),
                    ",".join(map(str, slots[slot])) or "none",
                )
                job = executor.submit(
                    self, list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()
                )
                running[slot] = (pos, job)
            for slot, (pos, job) in list(running.items()):
                if job.done():
                    del running[slot]
                    results[pos] = self._result(job, job_overrides[pos], initial_job_idx + pos)
            time.sleep(self.poll_s)
        return results  # type: ignore[return-value]

    def _result(self, job: Any, overrides: Sequence[str], num: int) -> JobReturn:
        try:
            return job.results()[0]
        except Exception as err:  # noqa: BLE001 - the job's process died (a signal, a crash): record it, go on
            log.error("job #%d ended without a result: %s", num, str(err).strip().splitlines()[0])
            return died_job_return(self, overrides, num, job, err)
