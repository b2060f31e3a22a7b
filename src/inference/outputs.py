"""What prediction reads and writes, checked before any network runs.

* :func:`collect_inputs`: an image, a folder of images, a video file, or a folder of frames (one clip).
* :func:`check_stems`: outputs are named by input stem, so ``x.png`` and ``x.jpg`` in one folder would write
  the same ``x.png``; refused, naming both.
* :func:`check_output_dir`: the output folder may not be an input folder (or the ground-truth folder) nor lie
  inside one, and may not be the folder that holds an input file.
* :func:`check_outputs`: no planned output may be an input file (ever), and none may exist already unless
  ``overwrite=true``. Everything is checked up front, so a refused run writes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from src.utils.image_io import is_image_file
from src.inference.video import frames_folder, is_video_file


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
        if is_video_file(p.name):
            return Inputs("video", [p], p, [])
        if not is_image_file(p.name):
            raise ValueError(f"input={path}: neither an image nor a video file (by its extension)")
        return Inputs("images", [p], p, [])
    if not p.is_dir():
        raise FileNotFoundError(f"input={path}: no such file or directory")
    if frames:
        return Inputs("frames", frames_folder(p), p, [p])
    files = sorted(f for f in p.iterdir() if f.is_file() and is_image_file(f.name))
    if not files:
        videos = [f.name for f in p.iterdir() if f.is_file() and is_video_file(f.name)]
        hint = f" (it holds videos: pass one file, e.g. input={p / videos[0]})" if videos else ""
        raise FileNotFoundError(f"input={path}: the directory holds no image files{hint}")
    return Inputs("images", files, p, [p])


def check_stems(files: Sequence[Path]) -> None:
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
        raise ValueError("inputs with the same name would write the same outputs (<stem>.png): "
                         + "; ".join(clashes) + ". Rename or move one of each pair.")


def _inside(child: Path, parent: Path) -> bool:
    child, parent = Path(os.path.realpath(child)), Path(os.path.realpath(parent))
    return child == parent or parent in child.parents


def check_output_dir(output: Path, folders: Iterable[Path], files: Iterable[Path] = ()) -> None:
    """Refuse an output folder equal to, or inside, any input folder, or equal to the folder of an input file."""
    for f in files:
        if os.path.realpath(output) == os.path.realpath(Path(f).parent):
            raise ValueError(f"output={output} is the folder of the input {f}: outputs would mix with the inputs; "
                             "choose another output folder")
    for folder in folders:
        if _inside(output, folder):
            raise ValueError(f"output={output} is {'the' if _inside(folder, output) else 'inside the'} input "
                             f"folder {folder}: outputs would mix with (or replace) the inputs; choose another "
                             "output folder")


def check_outputs(planned: Sequence[Path], inputs: Iterable[Path], overwrite: bool) -> None:
    """No planned output may be an input; existing outputs are refused unless ``overwrite``."""
    real_inputs = {os.path.realpath(p) for p in inputs}
    hit = [p for p in planned if os.path.realpath(p) in real_inputs]
    if hit:
        raise ValueError(f"output {hit[0]} would replace an input file; choose another output folder")
    dupes = sorted({str(p) for p in planned if list(planned).count(p) > 1})
    if dupes:
        raise ValueError(f"two outputs would be written to the same file: {dupes[:3]}")
    existing = [p for p in planned if p.exists()]
    if existing and not overwrite:
        listed = "\n  ".join(str(p) for p in existing[:10])
        more = f"\n  ... and {len(existing) - 10} more" if len(existing) > 10 else ""
        raise FileExistsError(f"{len(existing)} output file(s) exist already (pass overwrite=true to replace "
                              f"them):\n  {listed}{more}")


def checkpoint_files(spec, is_release_model: bool = False) -> list[Path]:
    """``ckpt_path`` as a list of files: one file, a list of files, or a directory (a run or a sweep): every
    ``checkpoints/best.ckpt`` under it (``last.ckpt`` where a run has no best), in sorted order."""
    if spec is None:
        return []
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    files: list[Path] = []
    for item in items:
        p = Path(str(item))
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            found = []
            for ckpt_dir in sorted(p.rglob("checkpoints")):
                best, last = ckpt_dir / "best.ckpt", ckpt_dir / "last.ckpt"
                if best.is_file() or last.is_file():
                    found.append(best if best.is_file() else last)
            if not found:
                raise FileNotFoundError(f"ckpt_path={p}: no checkpoints/best.ckpt or last.ckpt under this directory")
            files += found
        else:
            raise FileNotFoundError(f"ckpt_path={p}: no such checkpoint file or directory")
    return files


def unique_labels(labels: Sequence[str], files: Sequence[Optional[Path]]) -> list[str]:
    """Make labels unique by adding the run folder's name (``checkpoints/``'s parent) where two coincide."""
    out = list(labels)
    for k, label in enumerate(labels):
        if labels.count(label) > 1 and files[k] is not None:
            f = files[k]
            run = f.parent.parent.name if f.parent.name == "checkpoints" else f.stem
            out[k] = f"{label} ({run})"
    if len(set(out)) < len(out):
        out = [f"{label} #{k + 1}" for k, label in enumerate(out)]
    return out
