"""The table's numbers: rows of mean ± std over seeds, percentile bootstrap intervals over test images, paired
per-image differences to a reference row, paper numbers under the table's protocol."""

from __future__ import annotations

import math
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from src.metrics.paper import paper_reference
from src.metrics.protocols import PROTOCOLS
from src.table.read import DISPLAY, Run, check_same_images

MODEL_ORDER = (
    "input", "b_a", "b_b", "b_c", "b_d", "b_e", "b_f", "spanet", "spanet_release",
    "ddn", "jorder", "didmdn", "rescan", "clear",
)  # fmt: skip
REFERENCES = ("spanet", "b_f")  # the default reference of the paired differences: SPANet (B_f in Table 4)
MEASURES = ("psnr", "ssim")
BEST = "best"  # --reference best: the differences are taken against the row of highest mean PSNR


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
    paper_other: Optional[str] = None  # the published number under another protocol (not comparable), said so
    configs: list[Any] = field(default_factory=list)  # the runs' saved configs (src/table/complexity.py)
    params: Optional[int] = None  # parameters of the network the runs trained
    macs: Optional[int] = None  # MACs of one forward pass at the table's size
    s_per_mp: Optional[float] = None  # inference seconds per megapixel (--profile, on the table's machine)
    peak_bytes: Optional[int] = None  # peak memory of that pass


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are computed: ``n_resamples`` resamples (0: none) from numpy ``default_rng(seed)``,
    confidence ``level``; ``seeds``: also resample each row's seeds (a two-level bootstrap)."""

    n_resamples: int = 10000
    seed: int = 0
    level: float = 0.95
    seeds: bool = False


def bootstrap_ci(
    values: Any,
    n_resamples: int = 10000,
    seed: int = 0,
    level: float = 0.95,
    minus: Any = None,
    resample_seeds: bool = False,
) -> Optional[tuple[float, float]]:
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


def summarize(
    runs: Sequence[Run], protocol: str, boot: Bootstrap = Bootstrap(), reference: Optional[str] = None
) -> list[Row]:
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
        if model != "input":
            row.configs = [r.config for r in members if r.config is not None]
        _paper_numbers(row, protocol)
        rows.append(row)
    rows.sort(key=lambda r: (r.data, _model_rank(r.model), r.label))
    for data in sorted({r.data for r in rows}):
        _paired_differences([r for r in rows if r.data == data], boot, reference)
    return rows


def _paper_numbers(row: Row, protocol: str) -> None:
    """The published number of the row's model: beside ours when computed under ``protocol``; else, when a paper
    has one under another protocol, ``paper_other`` says which number, where and under what protocol."""
    ref = paper_reference(row.data, row.model)
    if ref is not None and paper_protocol(*ref) != protocol:  # another table may hold one under this protocol
        ref = paper_reference(row.data, row.model, protocol) or ref
    if ref is None:
        return
    table, paper = ref
    copied = " (copied)" if getattr(paper, "copied", False) else ""
    under = paper_protocol(*ref)
    if under == protocol:
        row.paper_psnr, row.paper_ssim, row.paper_source = paper.psnr, paper.ssim, table.name + copied
        return
    ssim = "-" if paper.ssim is None else f"{paper.ssim:.4f}"
    row.paper_other = (
        f"{row.label}: {paper.psnr:.2f} / {ssim} in {table.name}{copied}, under "
        f"{'an unstated protocol' if under is None else 'protocol ' + under}"
    )


def _interval(values: np.ndarray, minus: Optional[np.ndarray], boot: Bootstrap) -> Optional[tuple[float, float]]:
    return bootstrap_ci(values, boot.n_resamples, boot.seed, boot.level, minus, boot.seeds)


def _std(values: Sequence[float]) -> Optional[float]:
    return statistics.stdev(values) if len(values) > 1 else None


def reference_row(rows: Sequence[Row], reference: Optional[str]) -> Optional[Row]:
    """The row the paired differences are taken against: --reference (a model or row label, or "best": the
    trained row of highest mean PSNR), else spanet, else b_f (SPANet in the ablation); None when the data set has
    none or it is ambiguous (several schedules)."""
    if reference == BEST:
        trained = [r for r in rows if r.seeds is not None]
        return max(trained, key=lambda r: r.psnr) if trained else None
    candidates = (reference,) if reference else REFERENCES
    for name in candidates:
        found = [r for r in rows if r.label == name] or [r for r in rows if r.model == name]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            labels = ", ".join(r.label for r in found)
            print(
                f"note: {found[0].data}: no paired differences, {name} has several rows ({labels}); "
                f"pick one with --reference '<label>'",
                file=sys.stderr,
            )
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
