"""Collect a sweep's results into a table: mean ± std over seeds, bootstrap intervals over test images, paired
per-image differences to SPANet, paper numbers beside ours, and a dot-and-whisker chart.

    python experiments/make_table.py SWEEP_DIR [--out DIR] [--protocol spanet] [--split test]
    python experiments/make_table.py --wandb ENTITY/PROJECT [--wandb-group table2] --out DIR [--protocol ...]
    python experiments/make_table.py SWEEP_DIR --extra DSC=dsc/metrics.json --extra JBO@realrain=jbo.json

A script of experiments/, not a suite entry point: it takes argparse options (``--help``); the suite's
commands (``python -m src.*``) take Hydra overrides.

Sources. SWEEP_DIR: every ``metrics.json`` below it (recursively) written by ``src.train``:
``{"task", "experiment", "model", "data", "schedule", "seed", "ckpt_path", "global_step", "val": REPORT,
"test": REPORT, "val_input": REPORT, "test_input": REPORT}`` with REPORT the ``src.metrics`` schema
(n_images / mean / per_image). Files without a ``model`` key (e.g. those of ``src.eval``) are skipped with a note.
``--wandb``: the runs of a W&B project via ``wandb.Api()``: summary keys ``<split>/psnr_<protocol>``,
``<split>/ssim_<protocol>`` (and ``<split>/input_psnr_<protocol>`` for the rainy input); config keys
``run_info.model``, ``run_info.data``, ``run_info.schedule`` (or a string ``model``/``data``) and ``seed``;
``--wandb-group NAME`` keeps the runs of one W&B group (a sweep's ``experiment_name``, e.g. table2). Per-image
test scores come from each run's logged ``test/per_image`` table (downloaded); rows without it (and the rain
input, whose per-image scores are not logged) get no interval, and their differences are of the means.
``--extra LABEL[@DATA]=FILE`` (repeatable): one more row from a ``src.eval pred_dir=...`` metrics.json (a
method scored from a folder of its outputs, e.g. the Matlab-only DSC, LP, SILS, JBO), shown with the runs of
data set DATA (default: the one data set the other runs have). Its paper number is looked up by
lower-case LABEL.

Refused (the table is not built, every offending file is named): a run that src.train marked incomplete
(``"complete": false``, with its reasons), a run with ``global_step`` 0 (its scores are those of the untrained
network), a report whose ``n_images`` disagrees with its per-image scores, runs of one data set scored on
different test images (a run cut short, a changed data set), and two runs of the same model, schedule and seed. A sweep folder's ``multirun.yaml`` says which jobs the sweep should have run: jobs that never
started, that failed (their ``error.txt``) or that left no metrics.json are listed under the table and on stderr.

Rows: one per (data set, model) -- split by schedule when a model was trained under several -- in the order
rain input, b_a..b_f, spanet, the baselines, then the rest alphabetically. Columns:

* seeds: the number of training seeds (runs) averaged; "-" for the rain input (no training) and --extra rows.
* PSNR / SSIM: mean over seeds of each run's per-image-averaged score ± the sample std over seeds (ddof 1).
* 95% CI: percentile bootstrap interval of the mean over test images (``--bootstrap`` resamples of the test
  images, ``--seed``, ``--level``); per-image scores are first averaged over seeds. It says how far the mean
  could move on another test set drawn like this one; seed-to-seed spread is the ± beside the mean.
  ``--resample-seeds`` makes it a two-level bootstrap (each resample also draws each row's seeds with
  replacement), so that the intervals cover both; with 2-3 seeds that part is coarse.
* Δ vs REF: the paired per-image difference to the reference model (``--reference``, default spanet, else b_f,
  which is SPANet in Table 4): the mean over images of (model - REF) per image, with its bootstrap interval from
  the same resamples. An interval that excludes 0 is a gap this test set resolves.
* paper PSNR / SSIM: the published number, only where it was computed under the table's protocol
  (``PaperRow.protocol``, else its table's); "-" otherwise.
* GPU-h (when runs record their cost, metrics.json's ``cost`` block): training wall time x device count,
  summed over the row's runs (CPU-h when every run ran on CPUs).

Writes table.md, table.tex (booktabs) and chart.png (PSNR and SSIM side by side: mean, 95% interval, each
seed, the paper's value) into --out (default SWEEP_DIR) and prints the Markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from src.metrics.paper import paper_reference
from src.metrics.protocols import PROTOCOL_SUMMARY, PROTOCOLS

MODEL_ORDER = (
    "input", "b_a", "b_b", "b_c", "b_d", "b_e", "b_f", "spanet", "spanet_release",
    "ddn", "jorder", "didmdn", "rescan", "clear",
)  # fmt: skip
DISPLAY = {"input": "rain input"}
REFERENCES = ("spanet", "b_f")  # the default reference of the paired differences: SPANet (B_f in Table 4)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MEASURES = ("psnr", "ssim")
DIGITS = {"psnr": 2, "ssim": 4}


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


@dataclass
class Row:
    data: str
    model: str
    label: str
    seeds: Optional[int]  # None: not a trained model (rain input, --extra)
    psnr: float
    psnr_std: Optional[float]  # None with a single seed
    ssim: float
    ssim_std: Optional[float]
    seed_psnr: list[float] = field(default_factory=list)  # one value per run (the chart's dots)
    seed_ssim: list[float] = field(default_factory=list)
    psnr_ci: Optional[tuple[float, float]] = None
    ssim_ci: Optional[tuple[float, float]] = None
    d_psnr: Optional[float] = None  # paired difference to the data set's reference row
    d_psnr_ci: Optional[tuple[float, float]] = None
    d_ssim: Optional[float] = None
    d_ssim_ci: Optional[tuple[float, float]] = None
    is_reference: bool = False
    n_images: Optional[int] = None
    hours: Optional[float] = None  # device-hours of the row's runs (see run_cost)
    paper_psnr: Optional[float] = None
    paper_ssim: Optional[float] = None
    paper_source: str = "-"
    per_image: Optional[dict[str, np.ndarray]] = None  # "names" (n,); "psnr", "ssim": (runs, n), see _per_image


# --- reading ------------------------------------------------------------------------------------------


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
            per_image = {_image_key(k): (float(v[protocol]["psnr"]), float(v[protocol]["ssim"])) for k, v in raw.items()}
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


def run_cost(record: dict) -> Optional[tuple[float, str, str]]:
    """(device-hours, device name, accelerator) of a run from its metrics.json ``cost`` block (written by
    src.train: ``device``, ``device_count``, ``accelerator``, ``wall_time_s``): device_count x wall_time_s /
    3600. None when the run records no cost."""
    cost = record.get("cost")
    if not isinstance(cost, dict):
        return None
    wall, count = cost.get("wall_time_s"), cost.get("device_count", 1)
    if not isinstance(wall, (int, float)) or isinstance(wall, bool) or not math.isfinite(wall) or wall < 0:
        return None
    count = count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1
    return wall * count / 3600.0, str(cost.get("device") or "?"), str(cost.get("accelerator") or "?").lower()


def runs_from_dir(sweep_dir: Path, split: str, protocol: str) -> list[Run]:
    """Runs of every metrics.json under sweep_dir; problems are collected and raised together."""
    files = sorted(sweep_dir.rglob("metrics.json"))
    if not files:
        raise SystemExit(f"no metrics.json found under {sweep_dir}")
    runs, problems = [], []
    for path in files:
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            problems.append(f"{path}: cannot read JSON ({err})")
            continue
        if not isinstance(record, dict) or "model" not in record:
            print(f"note: skipping {path} (not a training run's metrics.json: no 'model' key)", file=sys.stderr)
            continue
        if record.get("complete") is False:
            reasons = "; ".join(map(str, record.get("incomplete") or [])) or "no reason recorded"
            problems.append(f"{path}: the run is marked incomplete ({reasons}); finish it (resume) or remove it")
            continue
        if record.get("global_step") == 0:
            problems.append(f"{path}: the run trained 0 steps (global_step 0), so its scores are those of the "
                            f"untrained network; rerun it (is the training set smaller than one batch?)")
            continue
        report = record.get(split)
        if not isinstance(report, dict) or protocol not in report.get("mean", {}):
            problems.append(f"{path}: no '{split}' report with protocol '{protocol}' (try --split val?)")
            continue
        cost = run_cost(record)
        common = dict(
            source=str(path), data=str(record.get("data")), schedule=str(record.get("schedule") or "-"),
            seed=record.get("seed"),
        )  # fmt: skip
        scores = _scores(report, protocol, f"{path} ({split})", problems)
        if scores is None:
            continue
        runs.append(Run(model=str(record["model"]), cost=cost, **common, **scores))
        inp = record.get(f"{split}_input")
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


def runs_from_wandb(project: str, split: str, protocol: str, api: Any = None,
                    group: Optional[str] = None) -> list[Run]:
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
        runs.append(Run(model=model, psnr=float(psnr), ssim=float(ssim), per_image=per_image,
                        n_images=None if per_image is None else len(per_image), **common))
        ipsnr, issim = summary.get(f"{split}/input_psnr_{protocol}"), summary.get(f"{split}/input_ssim_{protocol}")
        if ipsnr is not None and issim is not None:
            runs.append(Run(model="input", psnr=float(ipsnr), ssim=float(issim), **common))
    if skipped:
        print(f"note: {skipped} W&B run(s) without {split}/psnr_{protocol} skipped", file=sys.stderr)
    if no_images:
        print("note: per-image scores unreadable (rows without intervals):\n  " + "\n  ".join(no_images),
              file=sys.stderr)
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
                problems.append(f"--extra {spec!r}: say which data set it belongs to, LABEL@DATA=FILE "
                                f"(the runs have {data_sets or 'none'})")
                continue
            data = data_sets[0]
        try:
            report = json.loads(Path(file).read_text())
        except (OSError, json.JSONDecodeError) as err:
            problems.append(f"--extra {spec!r}: cannot read {file} ({err})")
            continue
        if isinstance(report, dict) and "model" in report:
            problems.append(f"--extra {spec!r}: {file} is a training run's metrics.json; put it under SWEEP_DIR")
            continue
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
                lines.append(f"{r.source} ({name}): {len(r.per_image)} images"
                             + (f", missing {_few(missing)}" if missing else "")
                             + (f", not in the others {_few(extra)}" if extra else ""))
            elif r.n_images is not None and r.n_images != n_common:
                lines.append(f"{r.source} ({name}): {r.n_images} images")
        problems.append(f"runs on {data} were scored on different test images (most on {n_common}); a run cut "
                        f"short or a changed data set? Rescore or remove:\n    " + "\n    ".join(lines))
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
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.utils import get_class

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
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

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
            notes.append(f"{spec}: sweeper {target or '?'} does not expand jobs as Hydra's basic sweeper does: "
                         f"its jobs are not listed")
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


def job_report(jobs: Sequence[Job], notes: Sequence[str]) -> list[str]:
    """Markdown lines on missing and failed jobs (empty when every job of every sweep finished)."""
    lines = []
    for root in sorted({j.sweep for j in jobs}):
        mine = [j for j in jobs if j.sweep == root]
        bad = [j for j in mine if j.status != "done"]
        if not bad:
            continue
        lines.append(f"**Incomplete sweep** `{root}`: {len(mine) - len(bad)} of {len(mine)} jobs finished; "
                     f"the table holds only those. Missing or failed:")
        for j in bad:
            where = f" in `{j.folder}`" if j.folder is not None else ""
            detail = {
                "failed": f"failed{where}: {j.error} (traceback in error.txt)" if j.error else f"failed{where}",
                "no metrics.json": f"no metrics.json{where} (still running, killed or interrupted)",
                "not started": "never started (no job folder)",
            }[j.status]
            lines.append(f"- job {j.num} ({' '.join(j.overrides)}): {detail}")
        lines.append("")
    for note in notes:
        lines += [f"Note: {note}", ""]
    return lines


# --- statistics ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are computed: ``n_resamples`` resamples (0: none) from numpy ``default_rng(seed)``,
    confidence ``level``; ``seeds``: also resample each row's seeds (a two-level bootstrap)."""

    n_resamples: int = 10000
    seed: int = 0
    level: float = 0.95
    seeds: bool = False


def bootstrap_ci(values: Any, n_resamples: int = 10000, seed: int = 0, level: float = 0.95,
                 minus: Any = None, resample_seeds: bool = False) -> Optional[tuple[float, float]]:
    """Percentile bootstrap interval of a mean over images.

    ``values``: per-image scores, (n,), or (k, n) for k seeds (averaged over seeds first). With ``minus``
    (another (n,) or (k', n), the same images in the same order) the statistic is the mean of the paired
    per-image difference ``values - minus``. Each resample draws n image indices with replacement from numpy
    ``default_rng(seed)`` (one ``integers(0, n, n)`` per resample, in order), so rows bootstrapped with one seed
    share their resamples; with ``resample_seeds`` each resample also draws k seeds with replacement for
    ``values`` and then k' for ``minus`` (``integers(0, k, k)`` then ``integers(0, k', k')``) from a second
    generator, ``default_rng([seed, 1])``. Returns the (1 - level)/2 and
    (1 + level)/2 quantiles of the resampled means (numpy's default linear interpolation); None with fewer
    than 2 images or no resamples."""
    x = np.atleast_2d(np.asarray(values, dtype=np.float64))
    y = None if minus is None else np.atleast_2d(np.asarray(minus, dtype=np.float64))
    n = x.shape[1]
    if n < 2 or n_resamples < 1:
        return None
    if y is not None and y.shape[1] != n:
        raise ValueError(f"paired bootstrap of {n} against {y.shape[1]} images")
    rng = np.random.default_rng(seed)
    seed_rng = np.random.default_rng([seed, 1]) if resample_seeds else None
    means = np.empty(n_resamples)
    chunk = max(1, 2**22 // n)  # bounded memory: ~32 MB of indices at a time
    for start in range(0, n_resamples, chunk):
        size = min(n_resamples, start + chunk) - start
        index = rng.integers(0, n, size=(size, n))
        drawn = None
        if seed_rng is not None:  # one row per resample: the draws for x, then those for y
            highs = np.array([x.shape[0]] * x.shape[0] + ([] if y is None else [y.shape[0]] * y.shape[0]))
            drawn = seed_rng.integers(0, highs, size=(size, highs.size))
        per_image = _seed_mix(x, None if drawn is None else drawn[:, : x.shape[0]])
        if y is not None:
            per_image = per_image - _seed_mix(y, None if drawn is None else drawn[:, x.shape[0] :])
        means[start : start + size] = np.take_along_axis(np.broadcast_to(per_image, (size, n)), index, 1).mean(1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _seed_mix(x: np.ndarray, drawn: Optional[np.ndarray]) -> np.ndarray:
    """Per-image scores averaged over seeds: (1, n) over all k seeds, or (size, n) over the seeds ``drawn``
    (size, k) for each resample."""
    k = x.shape[0]
    if drawn is None:
        return x.mean(axis=0, keepdims=True)
    weights = (drawn[:, :, None] == np.arange(k)).sum(axis=1) / k  # (size, k): how often each seed was drawn
    return weights @ x


# --- aggregation --------------------------------------------------------------------------------------


def _model_rank(model: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(model), "") if model in MODEL_ORDER else (len(MODEL_ORDER), model)


def paper_protocol(table: Any, row: Any) -> Optional[str]:
    """The protocol a paper number was computed with: the row's own (None = unknown) or else its table's."""
    protocol = getattr(row, "protocol", table.protocol)
    return protocol if protocol is None or protocol in PROTOCOLS else table.protocol


def _per_image(members: Sequence[Run], unique: bool = False) -> Optional[dict[str, np.ndarray]]:
    """Per-image scores of a row's runs: {"names": (n,), "psnr": (runs, n), "ssim": (runs, n)} in sorted name
    order (the same for every row), or None when a run has none. ``unique``: identical runs kept once."""
    if not members or any(r.per_image is None for r in members):
        return None
    names = sorted(members[0].per_image)
    stacked = np.array([[r.per_image[n] for n in names] for r in members], dtype=np.float64)  # runs x images x 2
    if unique:
        stacked = np.unique(stacked, axis=0)
    return {"names": np.array(names), "psnr": stacked[:, :, 0], "ssim": stacked[:, :, 1]}


def summarize(runs: Sequence[Run], protocol: str, boot: Bootstrap = Bootstrap(),
              reference: Optional[str] = None) -> list[Row]:
    """Rows sorted by data set, then model order; duplicate (data, model, schedule, seed) runs are an error.
    Intervals and paired differences need per-image scores (not in W&B summaries)."""
    groups: dict[tuple[str, str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.data, run.model, run.schedule)].append(run)
    problems = []
    for (data, model, schedule), members in groups.items():
        if model == "input":
            continue
        by_seed: dict[Any, list[str]] = defaultdict(list)
        for run in members:
            by_seed[run.seed].append(run.source)
        for seed_, sources in by_seed.items():
            if len(sources) > 1:
                problems.append(f"{model} on {data} (schedule {schedule}), seed {seed_}: {', '.join(sources)}")
    if problems:
        raise SystemExit("several runs for the same model and seed (remove all but one):\n  " + "\n  ".join(problems))
    check_same_images(runs)

    schedules: dict[tuple[str, str], set[str]] = defaultdict(set)
    for data, model, schedule in groups:
        schedules[(data, model)].add(schedule)
    rows = []
    for (data, model, schedule), members in groups.items():
        if model == "input":  # the same images in every run: one row per data set, whatever the schedules
            if schedule != min(schedules[(data, model)]):
                continue
            members = [r for s in sorted(schedules[(data, model)]) for r in groups[(data, model, s)]]
        several = len(schedules[(data, model)]) > 1 and model != "input"
        label = DISPLAY.get(model, model) + (f" [{schedule}]" if several else "")
        psnrs, ssims = [r.psnr for r in members], [r.ssim for r in members]
        trained = model != "input" and all(r.trained for r in members)
        if model == "input" and len(set(zip(psnrs, ssims))) == 1:  # scored alike in every run: one value
            psnrs, ssims = psnrs[:1], ssims[:1]
        costs = [r.cost[0] for r in members if r.cost is not None]
        row = Row(
            data=data, model=model, label=label, seeds=len(members) if trained else None,
            psnr=statistics.fmean(psnrs), psnr_std=_std(psnrs), ssim=statistics.fmean(ssims), ssim_std=_std(ssims),
            seed_psnr=psnrs, seed_ssim=ssims, n_images=members[0].n_images,
            hours=math.fsum(costs) if costs and model != "input" else None,
            per_image=_per_image(members, unique=model == "input"),
        )  # fmt: skip
        if row.per_image is not None:
            row.psnr_ci, row.ssim_ci = (_interval(row.per_image[m], None, boot) for m in MEASURES)
        ref = paper_reference(data, model)
        if ref is not None and paper_protocol(*ref) == protocol:
            table, paper = ref
            row.paper_psnr, row.paper_ssim, row.paper_source = paper.psnr, paper.ssim, table.name
        rows.append(row)
    rows.sort(key=lambda r: (r.data, _model_rank(r.model), r.label))
    for data in sorted({r.data for r in rows}):
        _paired_differences([r for r in rows if r.data == data], boot, reference)
    return rows


def _interval(values: np.ndarray, minus: Optional[np.ndarray], boot: Bootstrap) -> Optional[tuple[float, float]]:
    return bootstrap_ci(values, boot.n_resamples, boot.seed, boot.level, minus, boot.seeds)


def _std(values: Sequence[float]) -> Optional[float]:
    return statistics.stdev(values) if len(values) > 1 else None


def reference_row(rows: Sequence[Row], reference: Optional[str]) -> Optional[Row]:
    """The row the paired differences are taken against: --reference (a model or row label), else spanet,
    else b_f (SPANet in the ablation); None when the data set has none or it is ambiguous (several schedules)."""
    candidates = (reference,) if reference else REFERENCES
    for name in candidates:
        found = [r for r in rows if r.label == name] or [r for r in rows if r.model == name]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            labels = ", ".join(r.label for r in found)
            print(f"note: {found[0].data}: no paired differences, {name} has several rows ({labels}); "
                  f"pick one with --reference '<label>'", file=sys.stderr)
            return None
    if reference:
        print(f"note: {rows[0].data}: no row {reference!r} to take differences against", file=sys.stderr)
    return None


def _paired_differences(rows: Sequence[Row], boot: Bootstrap, reference: Optional[str]) -> None:
    ref = reference_row(rows, reference)
    if ref is None:
        return
    ref.is_reference = True
    for row in rows:
        if row is ref:
            continue
        for measure in MEASURES:
            diff_ci: Optional[tuple[float, float]] = None
            pair = _aligned(row.per_image, ref.per_image)
            if pair is not None:
                a, b = pair
                diff = float(np.mean(a[measure].mean(axis=0) - b[measure].mean(axis=0)))
                diff_ci = _interval(a[measure], b[measure], boot)
            else:  # no per-image scores (W&B), or an --extra file naming its images otherwise: means only
                diff = getattr(row, measure) - getattr(ref, measure)
            setattr(row, f"d_{measure}", diff)
            setattr(row, f"d_{measure}_ci", diff_ci)


def _aligned(a: Optional[dict[str, np.ndarray]], b: Optional[dict[str, np.ndarray]]) -> Optional[tuple[dict, dict]]:
    """Both rows' per-image arrays in one image order, or None when they do not hold the same image names."""
    if a is None or b is None or set(a["names"]) != set(b["names"]):
        return None
    order = {n: i for i, n in enumerate(b["names"])}
    index = np.array([order[n] for n in a["names"]])
    return a, {k: v[..., index] for k, v in b.items()}


# --- output -------------------------------------------------------------------------------------------


def _pm(mean: float, std: Optional[float], digits: int, pm: str) -> str:
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f}{pm}{std:.{digits}f}"


def _paper(value: Optional[float], digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(ci: Optional[tuple[float, float]], digits: int) -> str:
    return "-" if ci is None else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _delta(row: Row, measure: str) -> str:
    if row.is_reference:
        return "(reference)"
    diff = getattr(row, f"d_{measure}")
    if diff is None:
        return "-"
    digits = DIGITS[measure]
    ci = getattr(row, f"d_{measure}_ci")
    return f"{diff:+.{digits}f}" + ("" if ci is None else f" [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]")


def _hours(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"  # short runs: two significant digits


def _reference_label(rows: Sequence[Row]) -> Optional[str]:
    return next((r.label for r in rows if r.is_reference), None)


def _cost_label(costs: Sequence[tuple[float, str, str]]) -> str:
    kinds = {accelerator for _, _, accelerator in costs}
    return "CPU-h" if kinds == {"cpu"} else "device-h" if "cpu" in kinds else "GPU-h"


def caption(rows: Sequence[Row], protocol: str, split: str, boot: Bootstrap = Bootstrap(),
            costs: Sequence[tuple[float, str, str]] = ()) -> str:
    seeds = sorted({r.seeds for r in rows if r.seeds is not None})
    n = "" if not seeds else (f"{seeds[0]} seed{'s' if seeds[0] > 1 else ''}" if len(seeds) == 1
                              else f"{seeds[0]}-{seeds[-1]} seeds (column 'seeds')")  # fmt: skip
    images = sorted({r.n_images for r in rows if r.n_images is not None})
    over = f"the {images[0]} test images" if len(images) == 1 else "the test images"
    parts = [
        f"{split} split, protocol {protocol} ({PROTOCOL_SUMMARY[protocol]}). Each image is scored on its own, then "
        f"scores are averaged over {over}; PSNR/SSIM: mean ± sample std over {n or 'runs'}."
    ]
    if any(r.psnr_ci is not None for r in rows):
        level = f"{boot.level * 100:g}%"
        if boot.seeds:
            parts.append(
                f"{level} CI: two-level percentile bootstrap of the mean ({boot.n_resamples} resamples, seed "
                f"{boot.seed}): each resample draws the test images and, for each row on its own, its seeds, with "
                f"replacement; it covers both the test set and seed-to-seed spread (coarsely with few seeds)."
            )
        else:
            parts.append(
                f"{level} CI: percentile bootstrap interval of the mean over test images ({boot.n_resamples} "
                f"resamples of the images, seed {boot.seed}; per-image scores averaged over seeds first): how far "
                f"the mean could move on another test set like this one; it leaves out seed-to-seed spread (the ±; "
                f"--resample-seeds includes it)."
            )
    ref = sorted({_reference_label([r for r in rows if r.data == d]) or "" for d in {r.data for r in rows}} - {""})
    if ref:
        parts.append(
            f"Δ vs {' / '.join(ref)}: mean over images of the paired per-image difference (model - reference) with "
            f"its bootstrap interval from the same resamples; an interval that excludes 0 is a gap this test "
            f"set resolves."
        )
    parts.append(
        f"Paper numbers: the SPANet paper's, only where they were computed under protocol {protocol} and the data "
        f"set is the paper's; '-' otherwise (e.g. runs on synthetic smoke data, or a number copied from another "
        f"paper whose protocol is not stated)."
    )
    if any(r.model == "input" for r in rows):
        parts.append("The rain-input row scores the rainy test images themselves (no training, no seed).")
    if any(r.hours is not None for r in rows):
        total = math.fsum(r.hours for r in rows if r.hours is not None)
        names = sorted({f"{name} ({accelerator})" for _, name, accelerator in costs})
        parts.append(f"{_cost_label(costs)}: training wall time x devices, summed over the row's runs "
                     f"({_hours(total)} in all; {', '.join(names)}).")
    return " ".join(parts)


def _columns(rows: Sequence[Row], costs: Sequence[tuple[float, str, str]], boot: Bootstrap) -> list[tuple[str, str, Any]]:
    """(header, alignment, cell function) of the table's columns for one data set's rows."""
    ref = _reference_label(rows)
    ci = f"{boot.level * 100:g}% CI"
    cols: list[tuple[str, str, Any]] = [
        ("model", "l", lambda r: r.label),
        ("seeds", "r", lambda r: "-" if r.seeds is None else str(r.seeds)),
        ("PSNR (dB)", "r", lambda r: _pm(r.psnr, r.psnr_std, 2, " ± ")),
        (ci, "r", lambda r: _ci(r.psnr_ci, 2)),
    ]
    if ref:
        cols.append((f"Δ PSNR vs {ref}", "r", lambda r: _delta(r, "psnr")))
    cols += [
        ("SSIM", "r", lambda r: _pm(r.ssim, r.ssim_std, 4, " ± ")),
        (ci, "r", lambda r: _ci(r.ssim_ci, 4)),
    ]
    if ref:
        cols.append((f"Δ SSIM vs {ref}", "r", lambda r: _delta(r, "ssim")))
    cols += [
        ("paper PSNR", "r", lambda r: _paper(r.paper_psnr, 2)),
        ("paper SSIM", "r", lambda r: _paper(r.paper_ssim, 4)),
        ("paper table", "l", lambda r: r.paper_source),
    ]
    if any(r.hours is not None for r in rows):
        cols.append((_cost_label(costs), "r", lambda r: _hours(r.hours)))
    return cols


def to_markdown(rows: Sequence[Row], protocol: str, split: str, boot: Bootstrap = Bootstrap(),
                costs: Sequence[tuple[float, str, str]] = (), jobs: Sequence[str] = ()) -> str:
    lines = []
    for data in sorted({r.data for r in rows}):
        sub = [r for r in rows if r.data == data]
        cols = _columns(sub, costs, boot)
        lines += [
            f"### {data} ({split} split, protocol `{protocol}`)",
            "",
            "| " + " | ".join(c[0] for c in cols) + " |",
            "|" + "|".join("---:" if c[1] == "r" else "---" for c in cols) + "|",
        ]
        lines += ["| " + " | ".join(c[2](r) for c in cols) + " |" for r in sub]
        lines.append("")
    lines.append(f"*{caption(rows, protocol, split, boot, costs)}*")
    if jobs:
        lines += ["", *jobs]
    return "\n".join(lines).rstrip("\n") + "\n"


def _tex(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("--", "-{}-")


def to_latex(rows: Sequence[Row], protocol: str, split: str, boot: Bootstrap = Bootstrap(),
             costs: Sequence[tuple[float, str, str]] = ()) -> str:
    out = []
    for data in sorted({r.data for r in rows}):
        sub = [r for r in rows if r.data == data]
        cols = _columns(sub, costs, boot)
        out += [
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            rf"\caption{{{_tex(data)}: {_tex(caption(sub, protocol, split, boot, costs))}}}",
            r"\begin{tabular}{" + "".join(c[1] for c in cols) + "}",
            r"\toprule",
            " & ".join(_tex(c[0]) for c in cols) + r" \\",
            r"\midrule",
        ]
        out += [" & ".join(_tex(c[2](r)) for c in cols) + r" \\" for r in sub]
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def plot_chart(rows: Sequence[Row], protocol: str, split: str, path: Path, boot: Bootstrap = Bootstrap()) -> None:
    """Dot-and-whisker chart, PSNR and SSIM side by side, one row of panels per data set: per model the mean
    (filled dot), its bootstrap interval (line), each seed's score (open circles) and the paper's value under
    this protocol (red diamond, just below)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    datasets = sorted({r.data for r in rows})
    counts = [sum(r.data == d for r in rows) for d in datasets]
    fig, axes = plt.subplots(
        len(datasets), 2, figsize=(9.0, 1.3 + 0.42 * sum(counts) + 0.5 * len(datasets)), squeeze=False,
        gridspec_kw={"height_ratios": counts}, sharey="row",
    )  # fmt: skip
    for (ax_psnr, ax_ssim), data in zip(axes, datasets):
        sub = [r for r in rows if r.data == data]
        for ax, measure in ((ax_psnr, "psnr"), (ax_ssim, "ssim")):
            for y, r in enumerate(sub):
                color = "black" if r.model == "input" else "tab:blue"
                seeds = r.seed_psnr if measure == "psnr" else r.seed_ssim
                if len(seeds) > 1:
                    ax.scatter(seeds, [y] * len(seeds), s=22, facecolors="none", edgecolors="0.45", linewidths=0.9,
                               zorder=2)  # fmt: skip
                ci = getattr(r, f"{measure}_ci")
                if ci is not None:
                    ax.plot(ci, [y, y], color=color, linewidth=2.2, solid_capstyle="butt", zorder=3)
                ax.plot([getattr(r, measure)], [y], "o", color=color, markersize=6.5, zorder=4)
                paper = getattr(r, f"paper_{measure}")
                if paper is not None:
                    ax.plot([paper], [y + 0.3], "D", color="tab:red", markersize=5, zorder=4)
            ax.set_yticks(range(len(sub)))
            ax.set_yticklabels([r.label for r in sub])
            ax.set_ylim(len(sub) - 0.5, -0.6)
            ax.grid(axis="x", alpha=0.3)
            ax.margins(x=0.08)
            ax.set_xlabel("PSNR (dB)" if measure == "psnr" else "SSIM")
        ax_psnr.set_title(f"{data}: PSNR", fontsize=10)
        ax_ssim.set_title(f"{data}: SSIM", fontsize=10)
    handles = [
        Line2D([], [], marker="o", color="tab:blue", linewidth=2.2, label=f"mean, {boot.level * 100:g}% bootstrap CI over images"
               + (" and seeds" if boot.seeds else "")),
        Line2D([], [], marker="o", linestyle="none", markerfacecolor="none", markeredgecolor="0.45", label="each seed"),
    ]
    if any(r.paper_psnr is not None for r in rows):
        handles.append(Line2D([], [], marker="D", linestyle="none", color="tab:red", label=f"paper ({protocol})"))
    images = sorted({r.n_images for r in rows if r.n_images is not None})
    n = f", {images[0]} test images" if len(images) == 1 else ""
    fig.suptitle(f"{split} split{n}, protocol {protocol}", fontsize=11)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- entry point --------------------------------------------------------------------------------------


def main(argv: Optional[Iterable[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", nargs="?", type=Path, help="folder searched recursively for metrics.json")
    parser.add_argument("--wandb", metavar="PROJECT", help="read the runs of this W&B project instead")
    parser.add_argument("--wandb-group", metavar="NAME", help="only the W&B runs of this group (e.g. table2)")
    parser.add_argument("--extra", metavar="LABEL[@DATA]=FILE", action="append", default=[],
                        help="add a src.eval metrics.json as the row LABEL (repeatable)")
    parser.add_argument("--out", type=Path, help="output folder (default: SWEEP_DIR)")
    parser.add_argument("--protocol", default="spanet", choices=PROTOCOLS)
    parser.add_argument("--split", default="test", choices=("test", "val"))
    parser.add_argument("--reference", metavar="MODEL",
                        help="row the paired differences are taken against (default: spanet, else b_f)")
    parser.add_argument("--bootstrap", type=int, default=10000, metavar="N",
                        help="bootstrap resamples of the test images (default 10000; 0: no intervals)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the bootstrap (default 0)")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
    parser.add_argument("--resample-seeds", action="store_true",
                        help="two-level bootstrap: resample each row's seeds too (intervals include seed spread)")
    args = parser.parse_args(None if argv is None else list(argv))
    if args.wandb is None and args.sweep_dir is None:
        parser.error("give SWEEP_DIR or --wandb PROJECT")
    if args.wandb_group and not args.wandb:
        parser.error("--wandb-group needs --wandb PROJECT")
    if args.bootstrap < 0:
        parser.error("--bootstrap must be >= 0")
    if not 0 < args.level < 1:
        parser.error("--level must be between 0 and 1")
    boot = Bootstrap(args.bootstrap, args.seed, args.level, args.resample_seeds)
    out = args.out or args.sweep_dir
    if out is None:
        parser.error("--out DIR is needed with --wandb when no SWEEP_DIR is given")

    jobs: list[str] = []
    if args.wandb:
        runs = runs_from_wandb(args.wandb, args.split, args.protocol, group=args.wandb_group)
    else:
        if not args.sweep_dir.is_dir():
            parser.error(f"SWEEP_DIR {args.sweep_dir} is not a folder")
        runs = runs_from_dir(args.sweep_dir, args.split, args.protocol)
        jobs = job_report(*sweep_jobs(args.sweep_dir))
    runs += runs_from_extras(args.extra, runs, args.protocol)
    rows = summarize(runs, args.protocol, boot, args.reference)
    costs = [r.cost for r in runs if r.cost is not None]

    out.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(rows, args.protocol, args.split, boot, costs, jobs)
    (out / "table.md").write_text(markdown)
    (out / "table.tex").write_text(to_latex(rows, args.protocol, args.split, boot, costs))
    plot_chart(rows, args.protocol, args.split, out / "chart.png", boot)
    print(markdown)
    if jobs:
        print("\n".join(ln for ln in jobs if ln), file=sys.stderr)
    print(f"wrote {out / 'table.md'}, {out / 'table.tex'}, {out / 'chart.png'}", file=sys.stderr)
    return markdown


if __name__ == "__main__":
    main()
