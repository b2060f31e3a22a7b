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

Reading (imageio): 8-bit and 16-bit PNG, JPEG, BMP, TIFF; values scaled to [0, 1] by 255 or 65535;
grayscale -> 3 identical channels (logged), RGBA / gray+alpha -> alpha dropped. Unreadable files, missing
counterparts and size mismatches are collected and raised together in one ``ValueError`` that names them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import imageio.v3 as iio
import numpy as np
import torch

from src.metrics.metric import ProtocolMetrics
from src.metrics.protocols import PROTOCOL_SUMMARY, PROTOCOLS

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GT_NAME_SUFFIXES = ("gt", "_gt", "-gt", "_clean", "-clean", "clean", "_norain", "norain")
"""Suffixes a ground-truth file name may carry after the prediction's name (matching is case-insensitive)."""


def read_rgb(path: PathLike) -> tuple[np.ndarray, bool]:
    """Read an image file as float64 RGB (H, W, 3) in [0, 1]; returns (image, was_grayscale).

    8-bit and 16-bit integer images (scaled by 255 / 65535). Grayscale is repeated to 3 channels; alpha is
    dropped. imageio's Pillow backend truncates 16-bit colour PNGs to 8 bits, so those are read with pypng.
    Raises ``ValueError`` naming the file for anything unreadable or unsupported.
    """
    try:
        img = _read_png16(path) if _is_png16(path) else iio.imread(path)
    except Exception as err:  # imageio/pypng raise many types for corrupt / unknown files
        raise ValueError(f"{path}: cannot read image ({type(err).__name__}: {err})") from err
    if img.dtype == np.uint8:
        scale = 255.0
    elif img.dtype == np.uint16:
        scale = 65535.0
    else:
        raise ValueError(f"{path}: unsupported pixel type {img.dtype} (expected 8-bit or 16-bit integers)")
    if img.ndim == 3 and img.shape[2] in (2, 4):  # gray+alpha or RGBA: drop alpha
        img = img[:, :, :-1]
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    gray = img.ndim == 2
    if gray:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{path}: unsupported image shape {img.shape} (expected HxW or HxWx1..4)")
    return img.astype(np.float64) / scale, gray


def _is_png16(path: PathLike) -> bool:
    """True for a PNG whose header says 16 bits per sample (IHDR is always the first chunk)."""
    with open(path, "rb") as f:
        head = f.read(26)
    return len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and head[24] == 16


def _read_png16(path: PathLike) -> np.ndarray:
    import png  # pypng (pure Python), only for 16-bit PNGs

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    return np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, info["planes"])


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


def match_folders(pred_dir: PathLike, gt_dir: PathLike) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """Pairs ``(name, pred_file, gt_file)`` by the module's matching rule, and a list of problems."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    preds, gts = _index(pred_dir), _index(gt_dir)
    gt_lower: dict[str, list[str]] = {}
    for key in gts:
        gt_lower.setdefault(key.lower(), []).append(key)
    pairs, problems, used = [], [], set()
    for key, pred_file in preds.items():
        if key in gts:
            candidates = [key]
        else:
            candidates = [g for s in GT_NAME_SUFFIXES for g in gt_lower.get((key + s).lower(), [])]
        if not candidates:
            problems.append(f"no ground truth for prediction {pred_file} in {gt_dir}")
        elif len(candidates) > 1:
            problems.append(f"prediction {pred_file} matches several ground-truth files: {candidates}")
        else:
            pairs.append((key, pred_file, gts[candidates[0]]))
            used.add(candidates[0])
    for key, gt_file in gts.items():
        if key not in used:
            problems.append(f"no prediction in {pred_dir} for ground truth {gt_file}")
    return pairs, problems


def _explicit_pairs(
    pred_dir: Path, gt_dir: Optional[Path], gt_pairs: Iterable[Sequence[PathLike]]
) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    preds = _index(pred_dir)
    by_name = {p.relative_to(pred_dir).as_posix(): p for p in preds.values()}
    pairs, problems, used = [], [], set()
    for item in gt_pairs:
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
    for pred_file in preds.values():
        if pred_file not in used:
            problems.append(f"prediction {pred_file} is not in the list of pairs")
    return pairs, problems


def score_folders(
    pred_dir: PathLike,
    gt_dir: Optional[PathLike],
    gt_pairs: Optional[Iterable[Sequence[PathLike]]] = None,
    device: Union[str, torch.device] = "cpu",
) -> dict[str, Any]:
    """Score every prediction in ``pred_dir`` against its ground truth; returns the report dict.

    Pairs come from the module's matching rule, or from ``gt_pairs`` [(pred_name, gt_path), ...] (then
    ``gt_dir`` may be None if the ground-truth paths are absolute).
    Report schema (as :meth:`ProtocolMetrics.report`): ``{"n_images", "mean": {protocol: {"psnr", "ssim"}},
    "per_image": {name: {protocol: {"psnr", "ssim"}}}}``, names being the predictions' relative paths
    without extension. ``device``: where the metrics are computed ("cuda" is much faster for large sets).
    All problems (missing counterparts, unreadable files, size mismatches) are collected and raised in one
    ``ValueError``.
    """
    if gt_dir is None and gt_pairs is None:
        raise ValueError("score_folders needs gt_dir or gt_pairs")
    pred_dir = Path(pred_dir)
    gt_dir = Path(gt_dir) if gt_dir is not None else None
    for what, folder in (("prediction", pred_dir), ("ground-truth", gt_dir)):
        if folder is not None and not folder.is_dir():
            raise ValueError(f"{what} folder {folder} does not exist or is not a folder")
    if gt_pairs is None:
        pairs, problems = match_folders(pred_dir, gt_dir)
    else:
        pairs, problems = _explicit_pairs(pred_dir, gt_dir, gt_pairs)

    metrics = ProtocolMetrics().to(device)
    grayscale: list[str] = []
    for name, pred_file, gt_file in pairs:
        images = []
        for path in (pred_file, gt_file):
            try:
                img, gray = read_rgb(path)
            except ValueError as err:
                problems.append(str(err))
                continue
            images.append(img)
            if gray:
                grayscale.append(str(path))
        if len(images) < 2:
            continue
        if images[0].shape != images[1].shape:
            problems.append(
                f"size mismatch: prediction {pred_file} is {images[0].shape[1]}x{images[0].shape[0]}, "
                f"ground truth {gt_file} is {images[1].shape[1]}x{images[1].shape[0]} (WxH)"
            )
            continue
        if problems:  # keep checking the remaining files, but stop computing scores
            continue
        pred, gt = (torch.from_numpy(im).permute(2, 0, 1)[None].to(device) for im in images)
        try:
            metrics.update(pred, gt, [name])
        except ValueError as err:  # e.g. an image smaller than the SSIM window
            problems.append(f"{pred_file}: {err}")

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
    return metrics.report()


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
