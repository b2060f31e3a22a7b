"""Reading a sweep's results for the table: every run's scores (from metrics.json via
:class:`src.runs.result.RunResult`, from W&B, or a ``src.eval`` file given with ``--extra``), and every job the
sweep should have run with its status. Problems are collected and raised together (``SystemExit`` naming each
file)."""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from src.runs.result import ResultVersionError, RunResult, ScoreResult, parse_result
from src.table.complexity import run_config

DISPLAY = {"input": "rain input"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Run:
    """One run's score on one data set (``model`` is "input" for the rainy input, scored in every run)."""

    source: str  # file path or W&B run path
    model: str
    data: str
    schedule: str
    seed: Optional[int]
    psnr: float
    ssim: float
    per_image: Optional[dict[str, tuple[float, float]]] = None  # image name -> (psnr, ssim); None from W&B
    n_images: Optional[int] = None
    cost: Optional[tuple[float, str, str]] = None  # (device-hours, device name, accelerator), see run_cost
    trained: bool = True  # False for --extra rows (scored from a folder of outputs: no seed)
    config: Optional[Path] = None  # the run's saved config (.hydra/config.yaml), to build its network


def _image_key(name: str) -> str:
    """Image names as compared across sources: src.eval pred_dir reports name files ("x.png"), runs do not."""
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and f".{suffix.lower()}" in IMAGE_SUFFIXES else name


def _scores(report: dict, protocol: str, where: str, problems: list[str]) -> Optional[dict[str, Any]]:
    """(psnr, ssim, per_image, n_images) of a src.metrics report under protocol, or None with a problem."""
    mean = report.get("mean", {}).get(protocol) if isinstance(report, dict) else None
    if not isinstance(mean, dict) or "psnr" not in mean or "ssim" not in mean:
        problems.append(f"{where}: no mean.{protocol}.psnr/ssim")
        return None
    per_image, n = None, report.get("n_images")
    raw = report.get("per_image")
    if isinstance(raw, dict) and raw:
        try:
            per_image = {
                _image_key(k): (float(v[protocol]["psnr"]), float(v[protocol]["ssim"])) for k, v in raw.items()
            }
        except (KeyError, TypeError, ValueError):
            problems.append(f"{where}: per_image entries lack {protocol}.psnr/ssim")
            return None
        if len(per_image) != len(raw):
            problems.append(f"{where}: per_image names collide once file suffixes are dropped")
            return None
        if n is not None and n != len(per_image):
            problems.append(f"{where}: n_images is {n} but per_image holds {len(per_image)} images")
            return None
        n = len(per_image)
    return dict(psnr=float(mean["psnr"]), ssim=float(mean["ssim"]), per_image=per_image, n_images=n)


def run_cost(record: Any) -> Optional[tuple[float, str, str]]:
    """(device-hours, device name, accelerator) of a run from its metrics.json ``cost`` block (written by
    src.train: ``device``, ``device_count``, ``accelerator``, ``wall_time_s``): device_count x wall_time_s /
    3600. None when the run records no cost. ``record``: a :class:`~src.runs.result.RunResult` or its dict."""
    cost = record.cost if isinstance(record, RunResult) else record.get("cost")
    if not isinstance(cost, dict):
        return None
    wall, count = cost.get("wall_time_s"), cost.get("device_count", 1)
    if not isinstance(wall, (int, float)) or isinstance(wall, bool) or not math.isfinite(wall) or wall < 0:
        return None
    count = count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1
    return wall * count / 3600.0, str(cost.get("device") or "?"), str(cost.get("accelerator") or "?").lower()


def read_run(path: Path, problems: list[str]) -> Optional[RunResult]:
    """The training run's result in ``path``, or None: a problem noted (unreadable, newer version), or a note on
    stderr for a file that is not a training run's (a src.eval file)."""
    try:
        record = json.loads(path.read_text())
        result = parse_result(record, str(path)) if isinstance(record, dict) else None
    except (OSError, json.JSONDecodeError) as err:
        problems.append(f"{path}: cannot read JSON ({err})")
        return None
    except ResultVersionError as err:
        problems.append(str(err))
        return None
    if not isinstance(result, RunResult):
        print(f"note: skipping {path} (not a training run's metrics.json: no 'model' key)", file=sys.stderr)
        return None
    if result.complete is False:
        reasons = "; ".join(map(str, result.incomplete or [])) or "no reason recorded"
        problems.append(f"{path}: the run is marked incomplete ({reasons}); finish it (resume) or remove it")
        return None
    if result.global_step == 0:
        problems.append(
            f"{path}: the run trained 0 steps (global_step 0), so its scores are those of the "
            f"untrained network; rerun it (is the training set smaller than one batch?)"
        )
        return None
    return result


def runs_from_dir(sweep_dir: Path, split: str, protocol: str) -> list[Run]:
    """Runs of every metrics.json under sweep_dir; problems are collected and raised together."""
    files = sorted(sweep_dir.rglob("metrics.json"))
    if not files:
        raise SystemExit(f"no metrics.json found under {sweep_dir}")
    runs, problems = [], []
    for path in files:
        result = read_run(path, problems)
        if result is None:
            continue
        report = result.report(split)
        if not isinstance(report, dict) or protocol not in report.get("mean", {}):
            problems.append(f"{path}: no '{split}' report with protocol '{protocol}' (try --split val?)")
            continue
        common = dict(
            source=str(path), data=str(result.data), schedule=str(result.schedule or "-"), seed=result.seed,
        )  # fmt: skip
        scores = _scores(report, protocol, f"{path} ({split})", problems)
        if scores is None:
            continue
        runs.append(Run(model=str(result.model), cost=run_cost(result), config=run_config(path), **common, **scores))
        inp = result.report(f"{split}_input")
        if isinstance(inp, dict) and protocol in inp.get("mean", {}):
            scores = _scores(inp, protocol, f"{path} ({split}_input)", problems)
            if scores is not None:
                runs.append(Run(model="input", **common, **scores))
    if problems:
        raise SystemExit("cannot build the table:\n  " + "\n  ".join(problems))
    return runs


def _config_value(config: dict, *keys: str) -> Any:
    """config["run_info"]["model"], also flattened as "run_info/model" or "run_info.model"."""
    node: Any = config
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            node = None
            break
        node = node[key]
    if node is None:
        for sep in ("/", "."):
            node = config.get(sep.join(keys), node)
    return node


def wandb_per_image(run: Any, split: str, protocol: str) -> Optional[dict[str, tuple[float, float]]]:
    """A W&B run's per-image scores: the ``test/per_image`` table that src.train logs (columns ``image``,
    ``psnr_<protocol>``, ``ssim_<protocol>``, ...), downloaded from the run's files; None when there is none."""
    ref = run.summary.get(f"{split}/per_image")
    if not isinstance(ref, dict) or not ref.get("path"):
        return None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        with run.file(ref["path"]).download(root=tmp, replace=True) as handle:  # an open text file
            table = json.load(handle)
    columns = list(table["columns"])
    i, p, q = columns.index("image"), columns.index(f"psnr_{protocol}"), columns.index(f"ssim_{protocol}")
    return {_image_key(str(row[i])): (float(row[p]), float(row[q])) for row in table["data"]}


def runs_from_wandb(project: str, split: str, protocol: str, api: Any = None, group: Optional[str] = None) -> list[Run]:
    """Runs of a W&B project (``entity/project``) read through ``wandb.Api()``, of one group if given; with
    their per-image test scores where the run logged them (intervals and paired differences)."""
    if api is None:
        import wandb

        api = wandb.Api()
    runs, skipped, problems, no_images = [], 0, [], []
    listed = api.runs(project) if group is None else api.runs(project, filters={"group": group})
    for run in listed:
        summary, config = run.summary, dict(run.config)
        psnr, ssim = summary.get(f"{split}/psnr_{protocol}"), summary.get(f"{split}/ssim_{protocol}")
        if psnr is None or ssim is None:
            skipped += 1
            continue
        source = f"wandb:{project}/{run.id}"
        if summary.get("trainer/global_step") == 0:
            problems.append(f"{source}: the run trained 0 steps (trainer/global_step 0)")
            continue
        model = _config_value(config, "run_info", "model") or config.get("model")
        if not isinstance(model, str):
            problems.append(f"{source}: config has no model config name (run_info.model or a string 'model')")
            continue
        data = _config_value(config, "run_info", "data") or config.get("data")
        schedule = _config_value(config, "run_info", "schedule") or config.get("schedule") or "-"
        common = dict(
            source=source, data=data if isinstance(data, str) else "?",
            schedule=schedule if isinstance(schedule, str) else "-", seed=config.get("seed"),
        )  # fmt: skip
        try:
            per_image = wandb_per_image(run, split, protocol)
        except Exception as err:  # noqa: BLE001 - network, a deleted file, another table layout: means only
            per_image = None
            no_images.append(f"{source} ({type(err).__name__}: {err})")
        runs.append(
            Run(
                model=model,
                psnr=float(psnr),
                ssim=float(ssim),
                per_image=per_image,
                n_images=None if per_image is None else len(per_image),
                **common,
            )
        )
        ipsnr, issim = summary.get(f"{split}/input_psnr_{protocol}"), summary.get(f"{split}/input_ssim_{protocol}")
        if ipsnr is not None and issim is not None:
            runs.append(Run(model="input", psnr=float(ipsnr), ssim=float(issim), **common))
    if skipped:
        print(f"note: {skipped} W&B run(s) without {split}/psnr_{protocol} skipped", file=sys.stderr)
    if no_images:
        print(
            "note: per-image scores unreadable (rows without intervals):\n  " + "\n  ".join(no_images), file=sys.stderr
        )
    if problems:
        raise SystemExit("cannot build the table:\n  " + "\n  ".join(problems))
    if not runs:
        where = f"W&B project {project}" + (f", group {group}" if group else "")
        raise SystemExit(f"no runs with {split}/psnr_{protocol} in {where}")
    return runs


def runs_from_extras(specs: Sequence[str], runs: Sequence[Run], protocol: str) -> list[Run]:
    """``--extra LABEL[@DATA]=FILE`` rows: FILE is a src.eval metrics.json (n_images / mean / per_image)."""
    data_sets = sorted({r.data for r in runs})
    extras, problems = [], []
    for spec in specs:
        label, sep, file = spec.partition("=")
        label, _, data = label.partition("@")
        if not sep or not label or not file:
            problems.append(f"--extra {spec!r}: expected LABEL=FILE or LABEL@DATA=FILE")
            continue
        if not data:
            if len(data_sets) != 1:
                problems.append(
                    f"--extra {spec!r}: say which data set it belongs to, LABEL@DATA=FILE "
                    f"(the runs have {data_sets or 'none'})"
                )
                continue
            data = data_sets[0]
        try:
            record = json.loads(Path(file).read_text())
            report = parse_result(record, file) if isinstance(record, dict) else record
        except (OSError, ValueError) as err:  # unreadable, not JSON, a newer version
            problems.append(f"--extra {spec!r}: cannot read {file} ({err})")
            continue
        if isinstance(report, RunResult):
            problems.append(f"--extra {spec!r}: {file} is a training run's metrics.json; put it under SWEEP_DIR")
            continue
        report = report.report if isinstance(report, ScoreResult) else report
        scores = _scores(report, protocol, f"--extra {spec!r}: {file} (a src.eval metrics.json?)", problems)
        if scores is None:
            continue
        extras.append(Run(source=file, model=label, data=data, schedule="-", seed=None, trained=False, **scores))
    if problems:
        raise SystemExit("cannot build the table:\n  " + "\n  ".join(problems))
    return extras


def check_same_images(runs: Sequence[Run]) -> None:
    """Every run of a data set must be scored on the same test images (the same names where the runs carry
    per-image scores; --extra rows, whose files may be named otherwise, the same number); otherwise name the
    odd ones and stop."""
    problems = []
    for data in sorted({r.data for r in runs}):
        members = [r for r in runs if r.data == data]
        sets = Counter(frozenset(r.per_image) for r in members if r.per_image is not None and r.trained)
        sizes = Counter(r.n_images for r in members if r.n_images is not None)
        if len(sets) <= 1 and len(sizes) <= 1:
            continue
        common = sets.most_common(1)[0][0] if sets else frozenset()
        n_common = len(common) if sets else sizes.most_common(1)[0][0]
        lines = []
        for r in members:
            name = DISPLAY.get(r.model, r.model)
            if r.per_image is not None and r.trained and frozenset(r.per_image) != common:
                missing, extra = sorted(common - set(r.per_image)), sorted(set(r.per_image) - common)
                lines.append(
                    f"{r.source} ({name}): {len(r.per_image)} images"
                    + (f", missing {_few(missing)}" if missing else "")
                    + (f", not in the others {_few(extra)}" if extra else "")
                )
            elif r.n_images is not None and r.n_images != n_common:
                lines.append(f"{r.source} ({name}): {r.n_images} images")
        problems.append(
            f"runs on {data} were scored on different test images (most on {n_common}); a run cut "
            f"short or a changed data set? Rescore or remove:\n    " + "\n    ".join(lines)
        )
    if problems:
        raise SystemExit("cannot build the table:\n  " + "\n  ".join(problems))


def _few(names: Sequence[str], k: int = 3) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


# --- the sweep's jobs ---------------------------------------------------------------------------------


@dataclass
class Job:
    sweep: Path  # the folder holding multirun.yaml
    num: int
    overrides: list[str]
    status: str  # "done", "failed", "no metrics.json", "not started"
    folder: Optional[Path] = None
    error: str = ""


def _override_key(parser: Any, text: str) -> str:
    """``key=value`` as Hydra normalises it, so that a job's stored overrides match the sweep's expansion."""
    (override,) = parser.parse_overrides([text])
    return f"{override.get_key_element()}={override.get_value_element_as_str()}"


def _expands_like_basic_sweeper(target: str) -> bool:
    """True for Hydra's basic sweeper and its subclasses (the suite's listing sweeper), whose jobs are the
    product of the sweep's parameters."""
    from hydra.utils import get_class

    from src.runs.compat import BasicSweeper

    try:
        return issubclass(get_class(target), BasicSweeper)
    except Exception:  # noqa: BLE001 - not importable here: judge by the name
        return target.rsplit(".", 1)[-1] in ("BasicSweeper", "ListingSweeper")


def _error_line(text: str) -> str:
    """The exception line of an error.txt: its first line ("Type: message"), or a bare traceback's last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("Traceback (most recent call last)") else lines[0]


def sweep_jobs(sweep_dir: Path) -> tuple[list[Job], list[str]]:
    """Every job that the sweeps (``multirun.yaml``) below sweep_dir should have run, with its status; and notes
    about sweeps whose jobs cannot be listed (a sweeper other than Hydra's basic one)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from src.runs.compat import BasicSweeper

    parser = OverridesParser.create()
    jobs, notes = [], []
    for spec in sorted(sweep_dir.rglob("multirun.yaml")):
        root = spec.parent
        try:
            cfg = OmegaConf.load(spec)
            sweeper = cfg.hydra.sweeper
            target = str(sweeper.get("_target_", ""))
            params = sweeper.get("params") or {}
            arguments = [f"{k}={v}" for k, v in params.items()] + list(cfg.hydra.overrides.task)
        except Exception as err:  # noqa: BLE001 - a foreign or hand-edited file: say so, list nothing
            notes.append(f"{spec}: cannot read the sweep's jobs ({type(err).__name__}: {err})")
            continue
        if not _expands_like_basic_sweeper(target):
            notes.append(
                f"{spec}: sweeper {target or '?'} does not expand jobs as Hydra's basic sweeper does: "
                f"its jobs are not listed"
            )
            continue
        try:
            batches = BasicSweeper.split_arguments(parser.parse_overrides(arguments), None)
            expected = [[_override_key(parser, o) for o in job] for batch in batches for job in batch]
        except Exception as err:  # noqa: BLE001 - e.g. a sweep syntax that needs the config to expand
            notes.append(f"{spec}: cannot expand the sweep's jobs ({type(err).__name__}: {err})")
            continue
        folders = {}
        for stored in root.rglob(".hydra/overrides.yaml"):
            folder = stored.parent.parent
            if folder == root:
                continue
            try:
                folders[frozenset(_override_key(parser, o) for o in OmegaConf.load(stored))] = folder
            except Exception:  # noqa: BLE001 - unreadable overrides: the folder is matched by its number below
                pass
        for num, overrides in enumerate(expected):
            folder = folders.get(frozenset(overrides))
            if folder is None and (root / str(num)).is_dir() and not (root / str(num) / ".hydra").is_dir():
                folder = root / str(num)  # the default subdir (the job number), before Hydra wrote .hydra/
            job = Job(sweep=root, num=num, overrides=overrides, status="not started", folder=folder)
            if folder is not None:
                error, metrics = folder / "error.txt", folder / "metrics.json"
                # a job that failed and was then resumed to the end has an error.txt older than its metrics.json
                if error.is_file() and (not metrics.is_file() or error.stat().st_mtime >= metrics.stat().st_mtime):
                    job.status, job.error = "failed", _error_line(error.read_text(errors="replace"))
                else:
                    job.status = "done" if metrics.is_file() else "no metrics.json"
            jobs.append(job)
    return jobs, notes
