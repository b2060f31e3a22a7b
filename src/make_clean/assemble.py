"""Accepted clips of a review folder -> a training set in the SPA-Data layout (``data=realrain`` reads it).

    python -m src.make_clean.assemble out=OUT_DIR dataset=DATASET_DIR [patch=256] [list=real_world.txt]
                                      [data_config=NAME] [overwrite=false]

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

Training on it: the command prints the ``src.train`` command for the set, with ``data.val_scenes`` suited to the
number of scenes (:func:`val_scenes_for`: whole scenes are held out for validation) and ``data.test_dir=null``
unless the folder has SPA-Data's test split ``real_test_1000/`` (rain/NNN.png + gt/NNNgt.png, put there by you).
``data_config=NAME`` also writes those settings as the data config ``conf/data/NAME.yaml`` of the suite, so that
``python -m src.train data=NAME`` trains on the set.

Nothing is lost on failure: every clip is checked first (accepted, clean image readable, frames at least the
patch size, clip still there), then the whole set is written into a hidden folder beside ``DATASET_DIR``
(``.NAME.assemble-*``), and only when all of it was written are its list file, ``scenes.csv`` and scene folders
renamed into ``DATASET_DIR``, replacing (with ``overwrite=true``) the previous ones; an error at any point,
renames included, leaves ``DATASET_DIR`` as it was. Scene folders of an earlier assembly that the new one does
not write are left in place (the new list file does not name them).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import hydra
import imageio.v3 as iio
from omegaconf import DictConfig

from src.make_clean.cli import CONFIG_PATH, boolean, integer, read_options, run_main, text
from src.make_clean.io import PathLike, write_image
from src.make_clean.review import DECISIONS_FILE, STATE_FILE, load_state, read_decisions
from src.utils.errors import ConfigValueError
from src.utils.files import atomic_write, refuse_existing
from src.utils.video_io import iter_frames

RAIN_DIR, CLEAN_DIR, SCENES_FILE, TEST_DIR = "real_world", "real_world_gt", "scenes.csv", "real_test_1000"
#: Where ``data_config=NAME`` writes NAME.yaml: the suite's data config group (``data=NAME`` selects it).
DATA_CONFIG_DIR = Path(CONFIG_PATH) / "data"
#: The first line of every data config this command writes; one without it is never replaced.
DATA_CONFIG_MARK = "# Rain-video data set assembled by python -m src.make_clean.assemble"


@dataclass
class Scene:
    """One accepted clip: its scene name, the clip file or folder, the frames its clean image used, the clean image
    (a file of the review folder), its p_hat and size (H, W)."""

    clip: str
    scene: str
    source: str
    frames: int
    clean: Path
    p_hat: int
    size: tuple[int, int]


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


def val_scenes_for(n_scenes: int) -> int:
    """Scenes to hold out for validation: a tenth of them (at least one, none when there is only one scene)."""
    return 0 if n_scenes < 2 else max(1, n_scenes // 10)


def accepted_clips(out_dir: PathLike) -> dict[str, dict]:
    """``{clip: state entry}`` of the clips whose latest version is accepted in decisions.csv."""
    out_dir = Path(out_dir)
    state = load_state(out_dir)
    if not state["clips"]:
        raise ValueError(f"{out_dir / STATE_FILE}: no clips; run python -m src.make_clean.review first")
    decisions = read_decisions(out_dir / DECISIONS_FILE, sorted(state["clips"]))
    return {
        name: entry
        for name, entry in sorted(state["clips"].items())
        if decisions.verdict.get((name, entry["versions"][-1]["frames"])) == "accept"
    }


def plan_scenes(out_dir: PathLike, patch: int) -> list[Scene]:
    """The accepted clips as scenes, every check that needs no frame decoding done: something accepted, distinct
    scene names, each clean image readable and at least ``patch`` on each side, each clip still where it was."""
    out_dir = Path(out_dir)
    clips = accepted_clips(out_dir)
    if not clips:
        raise ValueError(f"{out_dir / DECISIONS_FILE}: no clip has its latest version accepted")
    names = {clip: scene_name(clip) for clip in clips}
    clash = {s for s in names.values() if list(names.values()).count(s) > 1}
    if clash:
        raise ValueError(
            f"clips {[c for c, s in names.items() if s in clash]} give the same scene name; rename "
            f"them so that their letters and digits differ"
        )
    scenes = []
    for clip, entry in clips.items():
        version = entry["versions"][-1]
        clean = out_dir / version["clean"]
        try:
            h, w = iio.improps(clean).shape[:2]
        except Exception as exc:  # missing, truncated, not an image: named, before anything is written
            raise ValueError(f"clip {clip}: cannot read its clean image {clean} ({exc})") from None
        if patch > min(h, w):
            raise ValueError(f"clip {clip}: frames are {h}x{w}, smaller than patch={patch}")
        if not Path(entry["source"]).exists():
            raise FileNotFoundError(
                f"clip {clip}: {entry['source']} not found (moved or deleted since the review); "
                f"put it back or run python -m src.make_clean.review again"
            )
        scenes.append(
            Scene(clip, names[clip], entry["source"], int(version["frames"]), clean, int(version["p_hat"]), (h, w))
        )
    return scenes


def write_scene(s: Scene, root: Path, patch: int) -> list[str]:
    """Write one scene's patches under ``root``; returns its list lines."""
    clean = iio.imread(s.clean)
    h, w = s.size
    grid = patch_grid(h, w, patch)
    size_y, size_x = (h, w) if patch == 0 else (patch, patch)
    for x, y in grid:
        write_image(root / CLEAN_DIR / s.scene / f"{s.scene}_{x}_{y}.png", clean[y : y + size_y, x : x + size_x])
    lines: list[str] = []
    used = 0
    for f, frame in enumerate(iter_frames(s.source, 0, s.frames)):
        if frame.shape != clean.shape:
            raise ValueError(
                f"{s.source} frame {f}: size {frame.shape[:2]} differs from its clean image {s.clean} ({h}x{w})"
            )
        for x, y in grid:
            rain_rel = f"{RAIN_DIR}/{s.scene}/{s.scene}-{f}/{s.scene}-{f}_{x}_{y}.png"
            write_image(root / rain_rel, frame[y : y + size_y, x : x + size_x])
            lines.append(f"/{rain_rel} /{CLEAN_DIR}/{s.scene}/{s.scene}_{x}_{y}.png")
        used += 1
    if used != s.frames:
        raise ValueError(
            f"{s.source}: has {used} frames now, but its clean image used {s.frames}; the clip changed since the review"
        )
    return lines


def write_dataset(scenes: Sequence[Scene], root: Path, patch: int, list_name: str) -> tuple[list[str], int]:
    """The whole set under ``root``: every scene, the list file and scenes.csv. Returns the items written (paths
    relative to ``root`` that replace their namesakes in the data set) and the number of pairs."""
    lines = [line for s in scenes for line in write_scene(s, root, patch)]
    (root / list_name).parent.mkdir(parents=True, exist_ok=True)
    (root / list_name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open(root / SCENES_FILE, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["scene", "clip", "frames", "p_hat", "source"])
        for s in scenes:
            writer.writerow([s.scene, s.clip, s.frames, s.p_hat, s.source])
    return [f"{d}/{s.scene}" for s in scenes for d in (RAIN_DIR, CLEAN_DIR)] + [SCENES_FILE, list_name], len(lines)


def replace_into(new_root: Path, old_root: Path, dest: Path, items: Sequence[str]) -> None:
    """Rename each item (a path relative to the roots) from ``new_root`` into ``dest``, moving what it replaces to
    ``old_root``. All or nothing: an error midway renames everything back."""
    done: list[tuple[str, bool]] = []
    try:
        for rel in items:
            target = dest / rel
            had = target.exists() or target.is_symlink()
            if had:
                (old_root / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(target, old_root / rel)
            done.append((rel, had))
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(new_root / rel, target)
    except BaseException:
        for rel, had in reversed(done):
            target = dest / rel
            if not (new_root / rel).exists() and (target.exists() or target.is_symlink()):
                os.replace(target, new_root / rel)  # the new item was placed: take it out again
            if had:
                os.replace(old_root / rel, target)
        raise


def data_config_path(name: Optional[str], overwrite: bool) -> Optional[Path]:
    """``conf/data/NAME.yaml`` for ``data_config=NAME`` (None: none asked for), refused when it exists unless
    ``overwrite``, and always when it is not one this command wrote (a preset of the suite, say)."""
    if not name:
        return None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ConfigValueError(
            f"data_config={name}: expected a name of letters, digits, '_' and '-' (it becomes "
            f"conf/data/{name}.yaml, selected with data={name})"
        )
    path = DATA_CONFIG_DIR / f"{name}.yaml"
    if not path.exists():
        return path
    if not overwrite:
        refuse_existing([path], what="data config")
    if not path.read_text(encoding="utf-8").startswith(DATA_CONFIG_MARK):
        raise ConfigValueError(
            f"data_config={name}: {path} is not a data config written by this command (a preset "
            f"of the suite?); refusing to replace it even with overwrite=true. Choose another name"
        )
    return path


def data_settings(dataset_dir: Path, n_scenes: int, list_name: str) -> dict[str, object]:
    """The ``data=realrain`` settings that train on the assembled set (see the module docstring)."""
    settings: dict[str, object] = {"root": str(dataset_dir.resolve()), "val_scenes": val_scenes_for(n_scenes)}
    if list_name != "real_world.txt":
        settings["list_file"] = list_name
    if not (dataset_dir / TEST_DIR / "rain").is_dir():
        settings["test_dir"] = None
    return settings


def data_config_text(name: str, settings: dict, n_scenes: int, n_pairs: int) -> str:
    test = "null" if settings.get("test_dir", TEST_DIR) is None else TEST_DIR
    lines = [
        f"{DATA_CONFIG_MARK}: {n_scenes} scenes, {n_pairs} pairs in SPA-Data's layout.",
        f"# python -m src.train data={name} model=spanet      (docs/howto.md)",
        "defaults:",
        "  - realrain",
        "  - _self_",
        "",
        f"root: {settings['root']}",
        f"list_file: {settings.get('list_file', 'real_world.txt')}",
        f"val_scenes: {settings['val_scenes']}      # whole scenes held out for validation (of {n_scenes})",
        f"test_dir: {test}" + ("      # no real_test_1000/ in the data set: no test split" if test == "null" else ""),
    ]
    return "\n".join(lines) + "\n"


def train_command(settings: dict, dataset: str, config_name: Optional[str]) -> str:
    """The ``src.train`` command for the set, or why there is none (one scene and no test split: no validation)."""
    if settings["val_scenes"] == 0 and settings.get("test_dir", TEST_DIR) is None:
        return (
            "no train command: with one scene nothing can be held out for validation (data.val_scenes holds "
            f"out whole scenes) and there is no test split; assemble more clips, or put test pairs in "
            f"{Path(dataset) / TEST_DIR}/rain and gt/ and train with data.val_scenes=0"
        )
    if config_name:
        return f"python -m src.train data={config_name} model=spanet"
    words = [f"data.{k}={'null' if v is None else v}" for k, v in settings.items() if k != "root"]
    return " ".join(["python -m src.train data=realrain", f"data.root={dataset}", *words, "model=spanet"])


def assemble(
    out_dir: PathLike,
    dataset_dir: PathLike,
    patch: int = 256,
    list_name: str = "real_world.txt",
    overwrite: bool = False,
    data_config: Optional[str] = None,
) -> dict:
    """Write the accepted clips of ``out_dir`` into ``dataset_dir`` (see the module docstring). Returns
    ``{"scenes": {clip: scene}, "pairs": number of list lines, "list": path of the list file, "data": the
    data=realrain settings, "data_config": path written or None, "train": the train command}``."""
    dataset_dir = Path(dataset_dir)
    scenes = plan_scenes(out_dir, patch)
    config_path = data_config_path(data_config, overwrite)
    targets = [dataset_dir / list_name, dataset_dir / SCENES_FILE]
    targets += [dataset_dir / d / s.scene for s in scenes for d in (RAIN_DIR, CLEAN_DIR)]
    if not overwrite:
        refuse_existing(targets, what="data set file or scene folder")
    dataset_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dataset_dir.name}.assemble-", dir=dataset_dir.parent))
    try:
        items, n_pairs = write_dataset(scenes, work / "new", patch, list_name)
        dataset_dir.mkdir(exist_ok=True)
        replace_into(work / "new", work / "old", dataset_dir, items)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    settings = data_settings(dataset_dir, len(scenes), list_name)
    if config_path is not None:
        atomic_write(config_path, data_config_text(config_path.stem, settings, len(scenes), n_pairs))
    return {
        "scenes": {s.clip: s.scene for s in scenes},
        "pairs": n_pairs,
        "list": str(dataset_dir / list_name),
        "data": settings,
        "data_config": None if config_path is None else str(config_path),
        "train": train_command(settings, str(dataset_dir), config_path and config_path.stem),
    }


OPTIONS = {"out": text, "dataset": text, "patch": integer(0), "list": text, "data_config": text, "overwrite": boolean}


def main(cfg: DictConfig) -> int:
    opts = read_options(cfg, OPTIONS, required=("out", "dataset"), nullable=("data_config",))
    result = assemble(opts["out"], opts["dataset"], opts["patch"], opts["list"], opts["overwrite"], opts["data_config"])
    print(
        f"{result['list']}: {result['pairs']} pairs from {len(result['scenes'])} scenes "
        f"({', '.join(f'{c} -> {s}' for c, s in result['scenes'].items())})"
    )
    if result["data_config"]:
        print(f"data config: {result['data_config']}")
    print(f"train: {result['train']}" if result["train"].startswith("python") else result["train"])
    return 0


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="make_clean_assemble")
def entry(cfg: DictConfig) -> None:
    sys.exit(run_main(main, cfg))


if __name__ == "__main__":
    entry()
