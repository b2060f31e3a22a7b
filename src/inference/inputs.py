"""What prediction reads, checked before any network runs.

* :func:`collect_inputs`: an image, a folder of images, a video file, or a folder of frames (one clip).
* :func:`check_stems`: outputs are named by input stem, so ``x.png`` and ``x.jpg`` in one folder would write
  the same ``x.png``; refused, naming both.
* :func:`gt_files`: ``gt=FILE|DIR`` matched to the inputs by stem; every input needs one.
* :func:`scan_images`: the header of every input and ground-truth file (:func:`src.utils.image_io.probe`:
  size, readable, not truncated, without decoding pixels). An unreadable input is named now and left out (the
  run carries on and ends with exit status 1); a ground truth that is unreadable or not the size of its input
  refuses the run before anything is written (:class:`GroundTruthError`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from src.utils.errors import ConfigValueError
from src.utils.image_io import ImageReadError, decode, is_image_file, probe, to_float
from src.utils.video_io import frame_files, is_video_file

log = logging.getLogger(__name__)


class InputNotFoundError(ConfigValueError, FileNotFoundError):
    """``input=`` / ``gt=`` names nothing that can be read."""


class GroundTruthError(ConfigValueError):
    """A ground-truth file is missing, unreadable, or not the size of its input."""


@dataclass
class Inputs:
    kind: str  # "images" | "video" | "frames"
    files: list[Path]  # images, the one video file, or the frames in order
    root: Path  # the input as given (file or folder)
    folders: list[Path]  # folders whose content is input: output may be neither one of them nor inside one

    @property
    def clip_name(self) -> str:
        """Output stem of a video: the video's stem, or the frames folder's name."""
        return self.files[0].stem if self.kind == "video" else self.root.name


def collect_inputs(path: str, frames: bool = False) -> Inputs:
    """The inputs of ``input=PATH``; ``frames``: PATH is a folder of frames to derain as one video."""
    p = Path(path)
    if p.is_file():
        if is_video_file(p):
            return Inputs("video", [p], p, [])
        if not is_image_file(p.name):
            raise ConfigValueError(f"input={path}: neither an image nor a video file (by its extension)")
        return Inputs("images", [p], p, [])
    if not p.is_dir():
        raise InputNotFoundError(f"input={path}: no such file or directory")
    if frames:
        return Inputs("frames", frame_files(p), p, [p])
    files = sorted(f for f in p.iterdir() if f.is_file() and is_image_file(f.name))
    if not files:
        videos = [f.name for f in p.iterdir() if is_video_file(f)]
        hint = f" (it holds videos: pass one file, e.g. input={p / videos[0]})" if videos else ""
        raise InputNotFoundError(f"input={path}: the directory holds no image files{hint}")
    return Inputs("images", files, p, [p])


def check_stems(files: list[Path]) -> None:
    """Refuse inputs whose outputs would collide (same stem, e.g. ``x.png`` and ``x.jpg``; also ``X.png`` and
    ``x.jpg``, which write one file on case-insensitive file systems)."""
    seen: dict[str, Path] = {}
    clashes = []
    for f in files:
        key = f.stem.casefold()
        if key in seen:
            clashes.append(f"{seen[key].name} and {f.name}")
        seen.setdefault(key, f)
    if clashes:
        raise ConfigValueError(
            "input: inputs with the same name would write the same outputs (<stem>.png): "
            + "; ".join(clashes)
            + ". Rename or move one of each pair."
        )


def gt_files(gt: Optional[str], stems: list[str]) -> dict[str, Path]:
    """``gt=FILE|DIR`` -> {input stem: ground-truth file}; every input needs one."""
    if not gt:
        return {}
    p = Path(gt)
    if p.is_file():
        if len(stems) != 1:
            raise ConfigValueError(
                f"gt={gt} is one file but there are {len(stems)} inputs; pass a folder of "
                "ground truths named like the inputs"
            )
        return {stems[0]: p}
    if not p.is_dir():
        raise InputNotFoundError(f"gt={gt}: no such file or directory")
    found = {f.stem: f for f in sorted(p.iterdir()) if f.is_file() and is_image_file(f.name)}
    missing = [s for s in stems if s not in found]
    if missing:
        raise GroundTruthError(f"gt={gt}: no ground truth for {len(missing)} input(s): {missing[:5]}")
    return {s: found[s] for s in stems}


def read_input(path: Path) -> np.ndarray:
    """An input image as float32 RGB in [0, 1] (the suite's one reader); logs how a non-RGB file was converted."""
    decoded = decode(path)  # raises ImageReadError naming the path
    if decoded.note:
        log.info("%s: %s", path.name, decoded.note)
    return to_float(decoded.array)


def scan_images(files: list[Path], gt: dict[str, Path]) -> tuple[dict[Path, tuple[int, int]], list[str]]:
    """Headers of every input and ground truth: ({readable input: (width, height)}, ["path: reason" of every
    unreadable input]). Raises :class:`GroundTruthError` naming every bad ground-truth file."""
    sizes: dict[Path, tuple[int, int]] = {}
    failed, problems = [], []
    for f in files:
        try:
            sizes[f] = probe(f)
        except ImageReadError as e:
            log.warning("skipped unreadable input %s", e)
            failed.append(str(e))
            continue
        if f.stem not in gt:
            continue
        try:
            size = probe(gt[f.stem])
        except ImageReadError as e:
            problems.append(str(e))
            continue
        if size != sizes[f]:
            problems.append(f"{gt[f.stem]} is {size[0]}x{size[1]}, its input {f} is {sizes[f][0]}x{sizes[f][1]}")
    if problems:
        listed = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise GroundTruthError(
            f"gt: {len(problems)} ground-truth file(s) cannot be used (nothing was written):\n  {listed}"
        )
    return sizes, failed
