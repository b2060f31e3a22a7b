"""metrics.json, typed: :class:`RunResult` (``src.train``) and :class:`ScoreResult` (``src.eval``), versioned.

Every metrics.json the suite writes goes through :meth:`RunResult.write` / :meth:`ScoreResult.write`, and every
reader (``python -m src.table``, the notebooks, :func:`incomplete_reasons`) through :func:`read_result`. A
file carries ``"version"``; files without it were written before the field existed and are version 1 (the same
keys, less ``version`` and ``started``). A file of a newer version than :data:`VERSION` is refused with a
message saying so. Keys a reader does not know are kept (``extra``) and written back unchanged.

A REPORT (``val``, ``test``, the ``*_input`` of the rainy input, and the body of an eval file) is the schema of
``src.metrics``: ``{"n_images": int, "mean": {protocol: {"psnr", "ssim"}}, "per_image": {name: {protocol:
{"psnr", "ssim"}}}}``; eval adds ``n_expected``.

Adding a field: a dataclass field below (default ``None``, so that older files read), its place in
``to_dict``, and :data:`VERSION` + 1 when readers must tell the versions apart.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, TypedDict, Union

from src.utils.files import write_json

#: the version this code writes
VERSION = 2
METRICS_FILE = "metrics.json"


class Report(TypedDict, total=False):
    """A ``src.metrics`` report (see the module docstring)."""

    n_images: int
    mean: dict[str, dict[str, float]]
    per_image: dict[str, dict[str, dict[str, float]]]
    n_expected: Optional[int]


class ResultVersionError(ValueError):
    """A metrics.json written by a newer version of the suite than this one."""


#: the keys of a training run's metrics.json, in the order they are written (``extra`` run_info keys follow
#: ``schedule``)
TRAIN_KEYS = (
    "version",
    "task",
    "experiment",
    "model",
    "data",
    "schedule",
    "seed",
    "test_ckpt",
    "ckpt_path",
    "global_step",
    "max_steps",
    "complete",
    "incomplete",
    "shortened_on_purpose",
    "bad_files",
    "val",
    "val_input",
    "test",
    "test_input",
    "test_note",
    "cost",
    "compute",
    "resumed_from",
    "interruptions",
    "started",
)


@dataclass
class RunResult:
    """metrics.json of a ``src.train`` run: what ran, how far, its scores and its cost."""

    task: Optional[str] = "train"
    experiment: Optional[str] = None  # the sweep's experiment_name (W&B group)
    model: Optional[str] = None  # config names (run_info): model=, data=, schedule=
    data: Optional[str] = None
    schedule: Optional[str] = None
    seed: Optional[int] = None
    test_ckpt: Optional[str] = None  # "best" | "last": which weights val/test scored
    ckpt_path: Optional[str] = None  # the checkpoint scored (None: the final weights in memory)
    global_step: Optional[int] = None
    max_steps: Optional[int] = None
    complete: Optional[bool] = None  # None: not recorded (files of early versions)
    incomplete: list[str] = field(default_factory=list)  # why not complete
    shortened_on_purpose: Optional[bool] = None  # debug configs / limit_*_batches
    bad_files: Optional[dict] = None  # {"skipped": n, "first": [...]} (data.on_bad_file=skip)
    val: Optional[Report] = None
    val_input: Optional[Report] = None
    test: Optional[Report] = None
    test_input: Optional[Report] = None
    test_note: Optional[str] = None  # why there is no test report (a data set without a test split)
    cost: Optional[dict] = None  # src/runs/cost.py
    compute: Optional[dict] = None  # compute=: {"mode", "factor", ...} (src/runs/compute.py)
    resumed_from: Optional[str] = None
    interruptions: list[dict] = field(default_factory=list)
    started: Optional[str] = None  # ISO time the run's first part started (version 2)
    version: int = VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # other keys (more run_info, newer minor fields)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> RunResult:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in record.items() if k in known}
        values.setdefault("version", 1)
        for key in ("incomplete", "interruptions"):
            if values.get(key) is None:
                values[key] = []
        return cls(**values, extra={k: v for k, v in record.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out: dict[str, Any] = {}
        for key in TRAIN_KEYS:
            out[key] = values[key]
            if key == "schedule":
                out.update(self.extra)
        return out

    def __getitem__(self, key: str) -> Any:
        """``result["test"]``: a key of metrics.json, as in the file."""
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def report(self, split: str) -> Optional[Report]:
        """The report of ``split``: "val", "test", "val_input" or "test_input"."""
        return getattr(self, split, None) if split in ("val", "test", "val_input", "test_input") else None

    def objective(self) -> Optional[float]:
        """Test PSNR (protocol spanet), else validation's: the value a sweeper would optimise."""
        report = self.test or self.val or {}
        return report.get("mean", {}).get("spanet", {}).get("psnr")

    def write(self, run_dir: Union[str, os.PathLike]) -> Path:
        path = Path(run_dir) / METRICS_FILE
        write_json(self.to_dict(), path)
        return path


@dataclass
class ScoreResult:
    """metrics.json of ``src.eval``: one REPORT at the top level, plus whether it can be trusted."""

    report: Report
    complete: Optional[bool] = None
    problems: list[str] = field(default_factory=list)
    version: int = VERSION

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ScoreResult:
        body = {k: v for k, v in record.items() if k not in ("version", "complete", "problems")}
        return cls(
            report=body,
            complete=record.get("complete"),
            problems=list(record.get("problems") or []),
            version=record.get("version", 1),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, **self.report, "complete": self.complete}
        if self.problems:
            out["problems"] = self.problems
        return out

    def write(self, *paths: Optional[Union[str, os.PathLike]]) -> None:
        write_json(self.to_dict(), *paths)


def parse_result(record: Any, source: str = "metrics.json") -> Union[RunResult, ScoreResult]:
    """A metrics.json document as its type: a training run's has a ``model`` key, an eval file has not."""
    if not isinstance(record, dict):
        raise ValueError(f"{source}: holds a {type(record).__name__}, not a metrics.json object")
    version = record.get("version", 1)
    if not isinstance(version, int) or version > VERSION:
        raise ResultVersionError(
            f"{source}: metrics.json version {version!r}, but this suite reads versions 1 to "
            f"{VERSION}; update the suite to read it"
        )
    return RunResult.from_dict(record) if "model" in record else ScoreResult.from_dict(record)


def read_result(path: Union[str, os.PathLike]) -> Union[RunResult, ScoreResult]:
    """Read a metrics.json (a file, or a run dir holding one). Raises OSError / ``json.JSONDecodeError`` for an
    unreadable file and :class:`ResultVersionError` for one written by a newer suite."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    return parse_result(json.loads(path.read_text()), str(path))


def incomplete_reasons(result: RunResult, expected: Mapping[str, Optional[int]], status: str = "stopped") -> list[str]:
    """What the run did not do: steps short of ``max_steps``, images of a split left unscored (``expected``: the
    images each split holds; ``status``: how training ended, e.g. "interrupted")."""
    reasons = []
    step, max_steps = result.global_step or 0, result.max_steps or 0
    if max_steps > 0 and step < max_steps:
        reasons.append(f"training {status} at step {step} of max_steps={max_steps}")
    for split in ("val", "test"):
        report, n = result.report(split), expected.get(split)
        if report is not None and n is not None and report["n_images"] < n:
            reasons.append(f"{split}: scored {report['n_images']} of {n} images")
    return reasons


def newest_run(folder: Union[str, os.PathLike]) -> Optional[Path]:
    """The run dir under ``folder`` (searched recursively) whose run started last: by ``started`` (version 2),
    else by the time its metrics.json was written. None when there is no readable training metrics.json."""
    found = []
    for path in Path(folder).rglob(METRICS_FILE):
        try:
            result = read_result(path)
        except (OSError, ValueError):
            continue
        if isinstance(result, RunResult):
            when = result.started or _iso(path.stat().st_mtime)
            found.append((when, str(path.parent)))
    return Path(max(found)[1]) if found else None


def _iso(timestamp: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(timestamp))
