"""Score a folder of derained images against a folder of ground truth, under every protocol.

Matching rule (when no explicit pairs are given). Image files (see :data:`IMAGE_SUFFIXES`) are collected
recursively in both folders and keyed by their path relative to the folder, without extension (``sub/000``).
A prediction keyed ``K`` matches the ground-truth file keyed ``K`` or, failing that, ``K`` followed by one of
:data:`GT_NAME_SUFFIXES` (case-insensitive), e.g. prediction ``000.png`` <-> ground truth ``000gt.png`` (the
SPA-Data test layout) or ``000_clean.png``. Every prediction must match exactly one ground-truth file and
every ground-truth file must be matched by a prediction.

Explicit pairs (``gt_pairs``, e.g. provided by a data config): a list of ``(pred_name, gt_path)``;
``pred_name`` is a path relative to ``pred_dir`` with or without extension, ``gt_path`` is absolute or
relative to ``gt_dir``. Exactly those pairs are scored; a prediction file not listed is an error.

Side files of ``src.predict`` are left out, and counted (``n_left_out`` in the report, and a log line), so
that ``pred_dir=<predict's output folder>`` scores exactly the derained images: an image without a ground
truth of its own in a subfolder named in :data:`PREDICT_SIDE_FOLDERS` (``attention/x.png``,
``compare/x.png``), or named ``x_att`` / ``x_compare`` (earlier versions of ``src.predict``), where ``x`` is a
prediction that was matched. ``n_expected`` is the number of ground-truth images (every one must be matched).

Reading: the suite's one image reader (:mod:`src.utils.image_io`, the same as training and prediction):
8-bit and 16-bit PNG, JPEG, BMP, TIFF, WebP; values scaled to [0, 1] by 255 or 65535 in float64; grayscale ->
3 identical channels (logged), alpha dropped. Unreadable files, missing counterparts and size mismatches are
collected and raised together in one ``ValueError`` that names them.

Speed and memory: files are decoded by ``num_workers`` worker processes (a torch ``DataLoader``), a bounded
number of pairs ahead of the scoring, so memory does not grow with the folder (beyond the per-image scores
of the report). On the CPU the workers also score their pairs (one thread each); on a GPU the main process
scores batches of ``batch_size`` same-sized pairs on the device.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from src.metrics.metric import MEASURES, ProtocolMetrics
from src.metrics.protocols import GAUSS_WIN, PROTOCOL_SUMMARY, PROTOCOLS, score_all
from src.utils.image_io import IMAGE_EXTENSIONS, ImageReadError, decode, to_float

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

IMAGE_SUFFIXES = IMAGE_EXTENSIONS
"""File name endings collected as images (the reader's :data:`~src.utils.image_io.IMAGE_EXTENSIONS`)."""
PREDICT_SIDE_FOLDERS = ("attention", "compare")
"""Subfolders in which ``src.predict`` writes its side files (heat maps, comparison figures) beside the outputs."""
_PREDICT_SIDE_SUFFIXES = ("_att", "_compare")
GT_NAME_SUFFIXES = ("gt", "_gt", "-gt", "_clean", "-clean", "clean", "_norain", "norain")
"""Suffixes a ground-truth file name may carry after the prediction's name (matching is case-insensitive)."""


def read_rgb(path: PathLike) -> tuple[np.ndarray, bool]:
    """Read an image file as float64 RGB (H, W, 3) in [0, 1]; returns (image, was_grayscale).

    The suite's reader (:func:`src.utils.image_io.decode`) divided by 255 or 65535 in float64. Raises
    :class:`~src.utils.image_io.ImageReadError` (a ``ValueError``) naming the file for anything unreadable.
    """
    decoded = decode(path)
    return to_float(decoded.array, np.float64), decoded.grey


def _index(folder: Path) -> dict[str, Path]:
    """Image files under folder, keyed by relative path without extension (posix separators)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    index: dict[str, Path] = {}
    for p in files:
        key = p.relative_to(folder).with_suffix("").as_posix()
        if key in index:
            raise ValueError(f"{folder}: two images share the name {key!r}: {index[key].name}, {p.name}")
        index[key] = p
    return index


class Matching(NamedTuple):
    pairs: list[tuple[str, Path, Path]]  # (name, prediction file, ground-truth file)
    problems: list[str]
    left_out: list[Path]  # side files of src.predict
    n_expected: int  # ground-truth images to score


def _is_side_file(key: str, matched: set[str]) -> bool:
    """``key`` names a side file of src.predict for a matched prediction (see the module docstring)."""
    parent, _, name = key.rpartition("/")
    head, _, folder = parent.rpartition("/")
    if folder in PREDICT_SIDE_FOLDERS and (f"{head}/{name}" if head else name) in matched:
        return True
    return any(key.endswith(s) and key[: -len(s)] in matched for s in _PREDICT_SIDE_SUFFIXES)


def _unmatched(unmatched: dict[str, Path], matched: set[str], problem: str) -> tuple[list[str], list[Path]]:
    """(problems, left-out side files) of the predictions that found no ground truth."""
    left_out = [p for key, p in unmatched.items() if _is_side_file(key, matched)]
    return [problem.format(p) for p in unmatched.values() if p not in left_out], left_out


def match_folders(pred_dir: PathLike, gt_dir: PathLike) -> Matching:
    """Pairs ``(name, pred_file, gt_file)`` by the module's matching rule, problems, and side files left out."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    preds, gts = _index(pred_dir), _index(gt_dir)
    gt_lower: dict[str, list[str]] = {}
    for key in gts:
        gt_lower.setdefault(key.lower(), []).append(key)
    pairs, problems, used, unmatched = [], [], set(), {}
    for key, pred_file in preds.items():
        if key in gts:
            candidates = [key]
        else:
            candidates = [g for s in GT_NAME_SUFFIXES for g in gt_lower.get((key + s).lower(), [])]
        if not candidates:
            unmatched[key] = pred_file
        elif len(candidates) > 1:
            problems.append(f"prediction {pred_file} matches several ground-truth files: {candidates}")
        else:
            pairs.append((key, pred_file, gts[candidates[0]]))
            used.add(candidates[0])
    more, left_out = _unmatched(unmatched, {k for k, _, _ in pairs}, f"no ground truth for prediction {{}} in {gt_dir}")
    problems += more
    for key, gt_file in gts.items():
        if key not in used:
            problems.append(f"no prediction in {pred_dir} for ground truth {gt_file}")
    return Matching(pairs, problems, left_out, len(gts))


def _explicit_pairs(pred_dir: Path, gt_dir: Optional[Path], gt_pairs: Iterable[Sequence[PathLike]]) -> Matching:
    preds = _index(pred_dir)
    by_name = {p.relative_to(pred_dir).as_posix(): p for p in preds.values()}
    pairs, problems, used, n_expected = [], [], set(), 0
    for item in gt_pairs:
        n_expected += 1
        pred_name, gt_path = str(item[0]), Path(item[1])
        key = pred_name if pred_name in preds else Path(pred_name).with_suffix("").as_posix()
        pred_file = preds.get(pred_name) or by_name.get(pred_name)
        gt_file = gt_path if gt_path.is_absolute() or gt_dir is None else gt_dir / gt_path
        if pred_file is None:
            problems.append(f"listed prediction {pred_name!r} not found in {pred_dir}")
        if not gt_file.is_file():
            problems.append(f"listed ground truth {gt_file} (for {pred_name!r}) does not exist")
        if pred_file is not None and gt_file.is_file():
            pairs.append((key, pred_file, gt_file))
            used.add(pred_file)
    matched = {p.relative_to(pred_dir).with_suffix("").as_posix() for p in used}
    unmatched = {k: p for k, p in preds.items() if p not in used}
    more, left_out = _unmatched(unmatched, matched, "prediction {} is not in the list of pairs")
    return Matching(pairs, problems + more, left_out, n_expected)


class _PairReader(Dataset):
    """Item i: pair i decoded ((3, H, W) uint8 / uint16 tensors, as in the files: the protocols divide by 255 or
    65535 in float64 as :func:`read_rgb` does) or, with ``score=True``, already scored on the CPU.

    Returns a dict: ``name``, ``problems`` (list of messages), ``grey`` (paths of grayscale files), and either
    ``images`` (pred, gt) or ``scores`` ({"psnr_spanet": float, ...}) when there was no problem.
    """

    def __init__(self, pairs: Sequence[tuple[str, Path, Path]], score: bool) -> None:
        self.pairs = pairs
        self.score = score

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name, pred_file, gt_file = self.pairs[index]
        item: dict[str, Any] = {"name": name, "problems": [], "grey": []}
        images = []
        for path in (pred_file, gt_file):
            try:
                decoded = decode(path)
            except ImageReadError as err:
                item["problems"].append(str(err))
                continue
            array = decoded.array if decoded.array.flags.writeable else decoded.array.copy()  # torch wants writable
            images.append(torch.from_numpy(array).permute(2, 0, 1))
            if decoded.grey:
                item["grey"].append(str(path))
        if item["problems"]:
            return item
        pred, gt = images
        if pred.shape != gt.shape:
            item["problems"].append(
                f"size mismatch: prediction {pred_file} is {pred.shape[2]}x{pred.shape[1]}, "
                f"ground truth {gt_file} is {gt.shape[2]}x{gt.shape[1]} (WxH)"
            )
        elif min(pred.shape[1:]) < GAUSS_WIN:
            item["problems"].append(
                f"{pred_file}: images of {pred.shape[1]}x{pred.shape[2]} pixels are smaller "
                f"than the {GAUSS_WIN}x{GAUSS_WIN} SSIM window"
            )
        elif self.score:
            scores = score_all(pred[None], gt[None])
            item["scores"] = {f"{m}_{p}": float(scores[p][m][0]) for p in PROTOCOLS for m in MEASURES}
        else:
            item["images"] = (pred, gt)
        return item


def _as_list(items: list) -> list:
    return items


def score_folders(
    pred_dir: PathLike,
    gt_dir: Optional[PathLike],
    gt_pairs: Optional[Iterable[Sequence[PathLike]]] = None,
    device: Union[str, torch.device] = "cpu",
    num_workers: int = 0,
    batch_size: int = 8,
    progress: bool = False,
) -> dict[str, Any]:
    """Score every prediction in ``pred_dir`` against its ground truth; returns the report dict.

    Pairs come from the module's matching rule, or from ``gt_pairs`` [(pred_name, gt_path), ...] (then
    ``gt_dir`` may be None if the ground-truth paths are absolute).
    Report schema (as :meth:`ProtocolMetrics.report`): ``{"n_images", "mean": {protocol: {"psnr", "ssim"}},
    "per_image": {name: {protocol: {"psnr", "ssim"}}}}``, names being the predictions' relative paths
    without extension, in the order of the pairs; plus ``n_expected`` (ground-truth images to score) and
    ``n_left_out`` (side files of src.predict, see the module docstring).
    ``device``: where the metrics are computed. ``num_workers``: decoding processes (0: decode in this
    process); on the CPU each worker also scores its pairs. ``batch_size``: pairs per batch (on a GPU, the
    pairs of one batch with the same size are scored together). ``progress``: show a progress bar.
    All problems (missing counterparts, unreadable files, size mismatches) are collected and raised in one
    ``ValueError``.
    """
    if gt_dir is None and gt_pairs is None:
        raise ValueError("score_folders needs gt_dir or gt_pairs")
    if num_workers < 0 or batch_size < 1:
        raise ValueError(f"num_workers must be >= 0 and batch_size >= 1, got {num_workers} and {batch_size}")
    pred_dir = Path(pred_dir)
    gt_dir = Path(gt_dir) if gt_dir is not None else None
    for what, folder in (("prediction", pred_dir), ("ground-truth", gt_dir)):
        if folder is not None and not folder.is_dir():
            raise ValueError(f"{what} folder {folder} does not exist or is not a folder")
    matching = match_folders(pred_dir, gt_dir) if gt_pairs is None else _explicit_pairs(pred_dir, gt_dir, gt_pairs)
    pairs, problems = matching.pairs, list(matching.problems)

    device = torch.device(device)
    on_cpu = device.type == "cpu"
    metrics = ProtocolMetrics().to(device)
    grayscale: list[str] = []
    loader = DataLoader(
        _PairReader(pairs, score=on_cpu),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_as_list,
        pin_memory=not on_cpu and num_workers > 0,
    )
    with _progress_bar(len(pairs), progress) as advance:
        for items in loader:
            batch: list[dict[str, Any]] = []
            for item in items:
                problems += item["problems"]
                grayscale += item["grey"]
                if not problems:  # after a problem: keep checking the remaining files, stop scoring
                    batch.append(item)
            if on_cpu:
                for item in batch:
                    metrics.update_scores(
                        {k: torch.tensor([v], dtype=torch.float64) for k, v in item["scores"].items()}, [item["name"]]
                    )
            else:
                _score_on_device(metrics, batch, device)
            advance(len(items))

    if not pairs and not problems:
        problems.append(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {pred_dir}")
    if problems:
        listing = "\n  ".join(problems)
        against = gt_dir if gt_dir is not None else "the listed ground truth"
        raise ValueError(f"cannot score {pred_dir} against {against}; {len(problems)} problem(s):\n  {listing}")
    if grayscale:
        log.warning(
            "%d grayscale image(s) were repeated to 3 channels, e.g. %s", len(grayscale), ", ".join(grayscale[:3])
        )
    if matching.left_out:
        log.info(
            "left out %d side file(s) of src.predict (%s, e.g. %s)",
            len(matching.left_out),
            ", ".join(f"{f}/" for f in PREDICT_SIDE_FOLDERS),
            matching.left_out[0],
        )
    return {**metrics.report(), "n_expected": matching.n_expected, "n_left_out": len(matching.left_out)}


def _score_on_device(metrics: ProtocolMetrics, batch: list[dict[str, Any]], device: torch.device) -> None:
    """Score decoded pairs on ``device``, consecutive pairs of the same size as one batch."""
    start = 0
    while start < len(batch):
        shape = batch[start]["images"][0].shape
        end = start + 1
        while end < len(batch) and batch[end]["images"][0].shape == shape:
            end += 1
        group = batch[start:end]
        pred = torch.stack([item["images"][0] for item in group]).to(device, non_blocking=True)
        gt = torch.stack([item["images"][1] for item in group]).to(device, non_blocking=True)  # uint8 / uint16
        metrics.update(pred, gt, [item["name"] for item in group])
        start = end


class _progress_bar:
    """``with _progress_bar(total, enabled) as advance: advance(n)`` -- a rich progress bar, or nothing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.bar = total, enabled and total > 0, None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(
            "scoring",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            "eta",
            TimeRemainingColumn(),
            transient=False,
        )
        self.bar.start()
        task = self.bar.add_task("scoring", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc) -> bool:
        if self.bar is not None:
            self.bar.stop()
        return False


def format_table(report: dict[str, Any], title: Optional[str] = None) -> str:
    """Plain-text table of a report's means, one row per protocol (protocol named in every row), then one
    line per protocol saying what it measures."""
    protocols = [p for p in PROTOCOLS if p in report["mean"]]
    lines = [title] if title else []
    lines.append(f"{'protocol':<10}  {'PSNR (dB)':>9}  {'SSIM':>6}  images")
    for protocol in protocols:
        mean = report["mean"][protocol]
        lines.append(f"{protocol:<10}  {mean['psnr']:>9.2f}  {mean['ssim']:>6.4f}  {report['n_images']}")
    lines.append("(per image, then averaged over images)")
    lines += [f"* {p}: {PROTOCOL_SUMMARY[p]}" for p in protocols]
    return "\n".join(lines)
