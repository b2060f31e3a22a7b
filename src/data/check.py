"""Check a data set before training on it: every file opened once, in parallel.

    python -m src.data.check data=NAME data.root=DIR [report=FILE] [overwrite=true] [workers=N]

(Hydra overrides of ``conf/check.yaml``; ``--help`` lists the options.)

Reads the splits of the data config exactly as training would (``FileDataModule.splits``), decodes every
image once (a thread pool; Pillow releases the GIL while decoding) and reports, per split:

``{"pairs": N, "skipped": K, "labels": {"heavy": n, ...} (only when labelled), "source": "...",
"mean_rain_minus_clean": X}`` with X the mean over pairs of mean(rain) - mean(clean) in 8-bit grey levels
(positive on a correctly oriented set: rain brightens pixels), and ``"problems": ["path: what is wrong", ...]``.
``data=paired`` with no sub-folders has one section, ``"pairs"``.

Problems (the exit status is 1 when there is any): a missing root / folder / list file, an empty split, an
unreadable or truncated image, rainy and clean of different sizes, a split whose rainy images are darker
than its clean ones on average (swapped), any validation / test pair with a missing file (the benchmark would
be scored on fewer images), more than ``train_missing_max`` (a fraction, default 0.01) of the training pairs
missing, a rainy image whose colour mode differs from its clean one (grayscale vs colour, alpha channel vs
none), and an alpha channel that is not fully opaque (it is dropped, not composited). Missing training pairs
under that fraction are counted in ``skipped`` (training skips them too) and are not problems.

``report=FILE`` writes the report as JSON, atomically (:func:`src.utils.files.atomic_write`). An existing FILE is
refused before anything is read (``OutputExistsError``, exit status 2) unless ``overwrite=true``, and even then
only an earlier report of this checker is replaced: any other file (the data set's own list file, an image, ...)
is refused (``ConfigValueError``), as is a folder.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Optional

import hydra
from omegaconf import DictConfig

from src.data.readers import LABEL_NAMES, Pair, ReadResult
from src.utils.config import require_set
from src.utils.errors import ConfigValueError, refusals_exit
from src.utils.files import atomic_write, refuse_existing
from src.utils.image_io import grey_levels, read_array

GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def colour_mode(path: str) -> tuple[str, str]:
    """(``"grey"`` | ``"colour"``, ``""`` | ``"alpha"`` | ``"translucent alpha"``) of an image file, from the
    file's own mode before the readers convert it to RGB. The alpha channel is decoded only when present."""
    from PIL import Image

    with Image.open(path) as im:
        mode = im.mode
        alpha = ""
        if mode in ALPHA_MODES or (mode == "P" and "transparency" in im.info):
            lo, _ = im.convert("RGBA").getchannel("A").getextrema()
            alpha = "alpha" if lo == 255 else "translucent alpha"
    return ("grey" if mode in GREY_MODES else "colour"), alpha


def file_stats(path: str, halves: bool) -> tuple:
    """("ok", (h, w), means, mode) for one file, means = (mean,) or (left_mean, right_mean) in grey levels and
    mode = :func:`colour_mode`; ("error", message) when it cannot be decoded."""
    try:
        arr = read_array(path)
        mode = colour_mode(path)
    except Exception as exc:  # reported, not raised: the checker goes on with the other files
        return "error", str(exc)
    if halves:
        half = arr.shape[1] // 2
        return "ok", (arr.shape[0], half), (grey_levels(arr[:, :half]), grey_levels(arr[:, half : 2 * half])), mode
    return "ok", arr.shape[:2], (grey_levels(arr),), mode


def _describe(mode: tuple[str, str]) -> str:
    return mode[0] + (f" with {mode[1]}" if mode[1] else "")


def scan_files(files: Iterable[tuple[str, bool]], workers: int = 8, progress: bool = True) -> dict:
    """{(path, halves): file_stats(...)} for every distinct file, decoded by ``workers`` threads."""
    files = sorted(set(files))
    out: dict = {}
    step = max(1, len(files) // 20)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(files), 4096):  # bounded number of futures in flight
            chunk = files[start : start + 4096]
            for key, stats in zip(chunk, pool.map(lambda f: file_stats(*f), chunk)):
                out[key] = stats
                if progress and len(out) % step == 0:
                    print(f"  scanned {len(out)}/{len(files)} files", file=sys.stderr, flush=True)
    return out


def _pair_files(pair: Pair) -> list[tuple[str, bool]]:
    if pair.halves is not None:
        return [(pair.rain, True)]
    return [(pair.rain, False), (pair.clean, False)]


def _pair_diff(pair: Pair, stats: dict, problems: list[str], reported: set) -> Optional[float]:
    """mean(rain) - mean(clean) of one pair from the file stats; problems appended (each file once)."""
    bad = False
    for key in _pair_files(pair):
        status, *rest = stats[key]
        if status == "error":
            bad = True
            if key[0] not in reported:
                reported.add(key[0])
                problems.append(rest[0])
    if bad:
        return None
    for path, halves in _pair_files(pair):
        mode = stats[(path, halves)][3]
        if mode[1] == "translucent alpha" and path not in reported:
            reported.add(path)
            problems.append(
                f"{path}: has a translucent alpha channel ({_describe(mode)}); the readers drop alpha, "
                f"they do not composite it: convert the file to RGB first"
            )
    if pair.halves is not None:
        _, _, (left, right), _ = stats[(pair.rain, True)]
        return left - right if pair.halves == "rain_clean" else right - left
    _, rain_hw, (rain_mean,), rain_mode = stats[(pair.rain, False)]
    _, clean_hw, (clean_mean,), clean_mode = stats[(pair.clean, False)]
    if rain_mode != clean_mode and "translucent alpha" not in (rain_mode[1], clean_mode[1]):
        problems.append(
            f"{pair.rain}: colour mode {_describe(rain_mode)} differs from its clean image "
            f"{pair.clean} ({_describe(clean_mode)})"
        )
    if rain_hw != clean_hw:
        problems.append(
            f"{pair.rain}: size {rain_hw[1]}x{rain_hw[0]} (WxH) differs from {pair.clean} ({clean_hw[1]}x{clean_hw[0]})"
        )
        return None
    return rain_mean - clean_mean


def _missing_problem(split: str, result: ReadResult, train_missing_max: float) -> Optional[str]:
    """A validation / test pair with a missing file, or too large a fraction of missing training pairs."""
    n_missing = len(result.missing)
    if not n_missing:
        return None
    listed = n_missing + len(result.pairs)
    first = f"first: {result.missing[0]}"
    if split in ("val", "test", "pairs"):
        return (
            f"{result.source}: {n_missing} of {listed} {split} pairs have a missing file ({first}); the "
            f"{split} split would be scored on fewer images than it holds"
        )
    if n_missing > train_missing_max * listed:
        return (
            f"{result.source}: {n_missing} of {listed} training pairs ({n_missing / listed:.1%}) have a missing "
            f"file, more than train_missing_max={train_missing_max:g} ({first})"
        )
    return None


def check_splits(
    results: dict[str, ReadResult],
    workers: int = 8,
    swap_hint: str = "set data.swap=true",
    progress: bool = True,
    train_missing_max: float = 0.01,
) -> dict:
    """The report (see the module docstring) for already-read splits."""
    stats = scan_files((f for r in results.values() for p in r.pairs for f in _pair_files(p)), workers, progress)
    report: dict[str, Any] = {}
    problems: list[str] = []
    reported: set = set()
    for split, result in results.items():
        diffs = [d for d in (_pair_diff(p, stats, problems, reported) for p in result.pairs) if d is not None]
        section: dict[str, Any] = {"pairs": len(result.pairs), "skipped": len(result.missing), "source": result.source}
        labels = Counter(p.label for p in result.pairs if p.label >= 0)
        if labels:
            section["labels"] = {LABEL_NAMES.get(k, str(k)): labels[k] for k in sorted(labels)}
        mean = sum(diffs) / len(diffs) if diffs else None
        section["mean_rain_minus_clean"] = None if mean is None else round(mean, 4)
        missing = _missing_problem(split, result, train_missing_max)
        if missing:
            problems.append(missing)
        if not result.pairs:
            problems.append(f"{result.source}: no image pairs found in the {split} split")
        elif mean is not None and mean <= 0:
            problems.append(
                f"{result.source}: rainy images are not brighter than clean ones in the {split} split "
                f"({mean:+.2f} grey levels on average): rainy and clean look swapped, {swap_hint}"
            )
        report[split] = section
    report["problems"] = problems
    return report


def check_module(module: Any, workers: int = 8, progress: bool = True, train_missing_max: float = 0.01) -> dict:
    """Report for a file-based data module (``FileDataModule``); a read failure becomes a problem."""
    if not hasattr(module, "splits"):
        return {"problems": [f"{type(module).__name__}: not a file-based data set, nothing to check"]}
    try:
        results = module.splits()
    except (OSError, ValueError) as exc:
        return {"problems": [str(exc)]}
    return check_splits(results, workers, module.swap_hint(), progress, train_missing_max)


def format_report(report: dict) -> str:
    lines = []
    for split, section in report.items():
        if split == "problems":
            continue
        labels = f", labels {section['labels']}" if "labels" in section else ""
        diff = section["mean_rain_minus_clean"]
        diff = "n/a" if diff is None else f"{diff:+.2f}"
        lines.append(
            f"{split:>6}: {section['pairs']} pairs, {section['skipped']} skipped{labels}, "
            f"mean rain - clean {diff} grey levels  ({section['source']})"
        )
    problems = report["problems"]
    lines.append(
        f"problems: {len(problems)}"
        + "".join(f"\n  {p}" for p in problems[:50])
        + (f"\n  ... and {len(problems) - 50} more (see the report)" if len(problems) > 50 else "")
    )
    return "\n".join(lines)


def _is_report(path: Path) -> bool:
    """True when ``path`` holds a report of this checker (a JSON object with ``"problems"``)."""
    try:
        if path.stat().st_size > 1 << 26:  # no report is that large; a data file may be
            return False
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and "problems" in data


def claim_report(report: Optional[str], overwrite: bool) -> Optional[Path]:
    """The report file to write (None: none asked for), checked before anything else happens: see the module
    docstring (an existing file only with ``overwrite`` and only when it is an earlier report)."""
    if not report:
        return None
    path = Path(str(report))
    if path.is_dir():
        raise ConfigValueError(f"report={path} is a folder; give a file name, e.g. report={path / 'check.json'}")
    if not (path.exists() or path.is_symlink()):
        return path
    if not overwrite:
        refuse_existing([path], what="report")
    if not _is_report(path):
        raise ConfigValueError(
            f"report={path}: this file is not a report of src.data.check (a list file or an image "
            f"of the data set?); refusing to replace it even with overwrite=true. Write the "
            f"report elsewhere"
        )
    return path


def run(cfg: DictConfig) -> int:
    """Build the data module of ``cfg.data``, check it, print / write the report; returns the exit status."""
    report_path = claim_report(cfg.get("report"), bool(cfg.get("overwrite", False)))
    try:
        if cfg.get("data") is None:
            raise ValueError("no data set chosen: pass data=NAME data.root=DIR (--help lists the data configs)")
        require_set(cfg, "data")
        module = hydra.utils.instantiate(cfg.data)
        report = check_module(
            module,
            int(cfg.workers),
            progress=bool(cfg.progress),
            train_missing_max=float(cfg.get("train_missing_max", 0.01)),
        )
    except Exception as exc:  # a bad root / config key: report it like any other problem
        cause = exc.__cause__ if exc.__cause__ is not None and "instantiat" in type(exc).__name__.lower() else exc
        report = {"problems": [str(cause)]}
    print(format_report(report))
    if report_path is not None:
        atomic_write(report_path, json.dumps(report, indent=2))
        print(f"report written to {report_path}")
    return 1 if report["problems"] else 0


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parents[2] / "conf"), config_name="check")
@refusals_exit
def main(cfg: DictConfig) -> None:
    sys.exit(run(cfg))


if __name__ == "__main__":
    main()
