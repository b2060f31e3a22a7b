"""Accepted clips of a review folder -> a training set in the SPA-Data layout (``data=realrain`` reads it).

    python -m src.make_clean.assemble out=OUT_DIR dataset=DATASET_DIR [patch=256] [list=real_world.txt]
                                      [overwrite=false]

(Hydra overrides of ``conf/make_clean_assemble.yaml``; ``--help`` lists the options.)

A clip counts as accepted when, in ``OUT_DIR/decisions.csv``, its latest version (see review.py) is marked
``accept``. Each accepted clip becomes one scene: every rain frame used for its clean image is paired with
that clean image, both cut into the same non-overlapping ``patch`` x ``patch`` grid (``patch=0``: whole
frames; a remainder narrower than a patch at the right/bottom edge is dropped), and written as:

* ``real_world/{scene}/{scene}-{frame}/{scene}-{frame}_{x}_{y}.png`` (rainy; frame = index in the clip)
* ``real_world_gt/{scene}/{scene}_{x}_{y}.png`` (clean; one per position, shared by all frames)
* ``real_world.txt``: one line per pair, ``/real_world/... /real_world_gt/...`` (leading "/" as published)
* ``scenes.csv``: scene, clip, frames, p_hat, source (the scene name is the clip name without the
  characters other than letters and digits, since "-" and "_" separate the fields of the file names).

``x``, ``y`` are the patch's left column and top row in pixels. All images are uint8 RGB PNG.
"""

from __future__ import annotations

import csv
import re
import shutil
import sys
from pathlib import Path

import hydra
import imageio.v3 as iio
from omegaconf import DictConfig

from src.make_clean.cli import CONFIG_PATH, boolean, integer, read_options, run_main, text
from src.make_clean.io import PathLike, iter_frames, write_image
from src.make_clean.review import DECISIONS_FILE, STATE_FILE, load_state, read_decisions

RAIN_DIR, CLEAN_DIR = "real_world", "real_world_gt"


def scene_name(clip: str) -> str:
    """The clip name with only letters and digits kept ("rain_s270" -> "rains270")."""
    scene = re.sub(r"[^A-Za-z0-9]", "", clip)
    if not scene:
        raise ValueError(f"clip {clip!r}: no letters or digits left for a scene name; rename the clip")
    return scene


def patch_grid(height: int, width: int, patch: int) -> list[tuple[int, int]]:
    """Top-left corners ``(x, y)`` of the non-overlapping patches; ``patch=0``: one whole-image "patch"."""
    if patch == 0:
        return [(0, 0)]
    return [(x, y) for y in range(0, height - patch + 1, patch) for x in range(0, width - patch + 1, patch)]


def accepted_clips(out_dir: PathLike) -> dict[str, dict]:
    """``{clip: state entry}`` of the clips whose latest version is accepted in decisions.csv."""
    out_dir = Path(out_dir)
    state = load_state(out_dir)
    if not state["clips"]:
        raise ValueError(f"{out_dir / STATE_FILE}: no clips; run python -m src.make_clean.review first")
    decisions = read_decisions(out_dir / DECISIONS_FILE, sorted(state["clips"]))
    return {name: entry for name, entry in sorted(state["clips"].items())
            if decisions.verdict.get((name, entry["versions"][-1]["frames"])) == "accept"}


def assemble(out_dir: PathLike, dataset_dir: PathLike, patch: int = 256, list_name: str = "real_world.txt",
             overwrite: bool = False) -> dict:
    """Write the accepted clips of ``out_dir`` into ``dataset_dir`` (see the module docstring).
    Returns ``{"scenes": {clip: scene}, "pairs": number of list lines, "list": path of the list file}``."""
    out_dir, dataset_dir = Path(out_dir), Path(dataset_dir)
    clips = accepted_clips(out_dir)
    if not clips:
        raise ValueError(f"{out_dir / DECISIONS_FILE}: no clip has its latest version accepted")
    scenes = {clip: scene_name(clip) for clip in clips}
    clash = {s for s in scenes.values() if list(scenes.values()).count(s) > 1}
    if clash:
        raise ValueError(f"clips {[c for c, s in scenes.items() if s in clash]} give the same scene name; rename "
                         f"them so that their letters and digits differ")
    list_file = dataset_dir / list_name
    targets = [list_file] + [dataset_dir / d / s for s in scenes.values() for d in (RAIN_DIR, CLEAN_DIR)]
    existing = [p for p in targets if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists; pass overwrite=true to replace the list file and "
                              f"these scenes' folders")
    for p in existing:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()

    lines: list[str] = []
    for clip, entry in clips.items():
        scene, version = scenes[clip], entry["versions"][-1]
        clean = iio.imread(out_dir / version["clean"])
        h, w = clean.shape[:2]
        if patch > min(h, w):
            raise ValueError(f"clip {clip}: frames are {h}x{w}, smaller than patch={patch}")
        grid = patch_grid(h, w, patch)
        size_y, size_x = (h, w) if patch == 0 else (patch, patch)
        for x, y in grid:
            write_image(dataset_dir / CLEAN_DIR / scene / f"{scene}_{x}_{y}.png", clean[y:y + size_y, x:x + size_x])
        used = 0
        for f, frame in enumerate(iter_frames(entry["source"], 0, version["frames"])):
            if frame.shape != clean.shape:
                raise ValueError(f"{entry['source']} frame {f}: size {frame.shape[:2]} differs from its clean "
                                 f"image {out_dir / version['clean']} ({h}x{w})")
            for x, y in grid:
                rain_rel = f"{RAIN_DIR}/{scene}/{scene}-{f}/{scene}-{f}_{x}_{y}.png"
                write_image(dataset_dir / rain_rel, frame[y:y + size_y, x:x + size_x])
                lines.append(f"/{rain_rel} /{CLEAN_DIR}/{scene}/{scene}_{x}_{y}.png")
            used += 1
        if used != version["frames"]:
            raise ValueError(f"{entry['source']}: has {used} frames now, but its clean image used "
                             f"{version['frames']}; the clip changed since the review")
    list_file.parent.mkdir(parents=True, exist_ok=True)
    list_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open(dataset_dir / "scenes.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["scene", "clip", "frames", "p_hat", "source"])
        for clip, entry in clips.items():
            v = entry["versions"][-1]
            writer.writerow([scenes[clip], clip, v["frames"], v["p_hat"], entry["source"]])
    return {"scenes": scenes, "pairs": len(lines), "list": str(list_file)}


OPTIONS = {"out": text, "dataset": text, "patch": integer(0), "list": text, "overwrite": boolean}


def main(cfg: DictConfig) -> int:
    opts = read_options(cfg, OPTIONS, required=("out", "dataset"))
    result = assemble(opts["out"], opts["dataset"], opts["patch"], opts["list"], opts["overwrite"])
    print(f"{result['list']}: {result['pairs']} pairs from {len(result['scenes'])} scenes "
          f"({', '.join(f'{c} -> {s}' for c, s in result['scenes'].items())})")
    return 0


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="make_clean_assemble")
def entry(cfg: DictConfig) -> None:
    sys.exit(run_main(main, cfg))


if __name__ == "__main__":
    entry()
