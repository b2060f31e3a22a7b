"""The human review loop of paper section 3: generate, let a person accept or reject, regenerate with more
frames, until every clip is accepted or has no frames left.

    python -m src.make_clean.review clips=CLIPS_DIR out=OUT_DIR [density=normal] [gain=4] [cache_dir=DIR]

(Hydra overrides of ``conf/make_clean_review.yaml``; ``--help`` lists the options.)
``CLIPS_DIR`` holds the clips: video files and/or folders of frames (the clip's name is the file stem or the
folder name). Each run:

1. generates a clean image for every new clip from its first N frames (N = 20 / 100 / 200 for sparse /
   normal / dense rain, at most the clip's length) and a review sheet per generated version:
   ``sheets/{clip}_f{N}.png`` = [first rain frame | clean image | |rain - clean| x gain];
2. reads the person's decisions from ``OUT_DIR/decisions.csv`` (see below) and, for a rejected version,
   regenerates the clip with 10 / 20 / 50 more frames (capped at the clip's length); a rejected version
   that already uses every frame makes the clip *exhausted*;
3. writes ``OUT_DIR/index.html`` (every clip with its sheet, state and history), ``OUT_DIR/state.json``
   (frames used, length, density, every version with its p_hat, files and decision) and prints which clips
   are accepted, exhausted or waiting.

Run it again after editing decisions.csv; it is done when every clip is accepted or exhausted.

``decisions.csv`` columns: ``clip,frames,decision,density``. One row judges one generated version, named
by its number of frames; ``decision`` is ``accept``, ``reject`` or empty (not yet judged); ``density``
(``sparse|normal|dense``, optional) sets the clip's density for the next regeneration (and, on a row
written before the clip's first run, for its first one too). The first run writes the file with one empty
row per clip; later runs only APPEND rows (one per new version) and never change what is there. When a
version has several rows, the last non-empty decision counts, so a person may also change their mind by
editing the row: the decision in the file for a clip's latest version always decides its state.
"""

from __future__ import annotations

import csv
import html
import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import hydra
import imageio.v3 as iio
import numpy as np
from omegaconf import DictConfig

from src.make_clean.algorithm import BAND_PIXELS, DENSITY_FRAMES, density_step, frames_for_density
from src.make_clean.cli import CONFIG_PATH, choice, integer, number, read_options, run_main, text
from src.make_clean.io import PathLike, write_image, write_json
from src.make_clean.pipeline import generate
from src.utils.video_io import count_frames, is_clip, iter_frames

STATE_FILE, DECISIONS_FILE, INDEX_FILE = "state.json", "decisions.csv", "index.html"
COLUMNS = ("clip", "frames", "decision", "density")
DECISIONS = ("accept", "reject")
STATE_VERSION = 1


# --- clips ------------------------------------------------------------------------------------------------
def discover_clips(clips_dir: PathLike) -> dict[str, Path]:
    """``{name: path}`` of the clips in ``clips_dir`` (video files and frame folders), sorted by name."""
    clips_dir = Path(clips_dir)
    if not clips_dir.is_dir():
        raise FileNotFoundError(f"{clips_dir}: clips folder not found")
    clips: dict[str, Path] = {}
    for path in sorted(clips_dir.iterdir()):
        if not is_clip(path):
            continue
        name = path.name if path.is_dir() else path.stem
        if name in clips:
            raise ValueError(
                f"{clips_dir}: two clips are both named {name!r} ({clips[name].name}, {path.name}); rename one"
            )
        clips[name] = path
    if not clips:
        raise ValueError(f"{clips_dir}: no clips (video files or folders of frames)")
    return clips


# --- the person's file ------------------------------------------------------------------------------------
@dataclass
class Decisions:
    """What decisions.csv says: ``verdict[(clip, frames)]`` and the latest ``density[clip]``; ``rows`` lists
    every ``(clip, frames)`` that has a row (judged or not)."""

    verdict: dict[tuple[str, int], str] = field(default_factory=dict)
    density: dict[str, str] = field(default_factory=dict)
    rows: set[tuple[str, int]] = field(default_factory=set)


def read_decisions(path: PathLike, clips: Sequence[str]) -> Decisions:
    """Parse decisions.csv (absent file: no decisions). Errors name ``file:line`` and the bad value."""
    path = Path(path)
    out = Decisions()
    if not path.exists():
        return out
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if "clip" not in header or "decision" not in header:
            raise ValueError(f"{path}: the header must name the columns {','.join(COLUMNS)}; got {header}")
        reader.fieldnames = header
        for row in reader:
            line = reader.line_num
            clip = (row.get("clip") or "").strip()
            if not clip or clip.startswith("#"):
                continue
            if clip not in clips:
                raise ValueError(f"{path}:{line}: unknown clip {clip!r} (clips: {', '.join(clips)})")
            verdict = (row.get("decision") or "").strip().lower()
            if verdict not in ("",) + DECISIONS:
                raise ValueError(
                    f"{path}:{line}: decision {row.get('decision')!r} for {clip}: write accept, "
                    f"reject or leave it empty"
                )
            density = (row.get("density") or "").strip().lower()
            if density:
                if density not in DENSITY_FRAMES:
                    raise ValueError(
                        f"{path}:{line}: density {density!r} for {clip}: choose one of {', '.join(DENSITY_FRAMES)}"
                    )
                out.density[clip] = density
            raw_frames = (row.get("frames") or "").strip()
            if not raw_frames:
                if verdict:
                    raise ValueError(
                        f"{path}:{line}: {clip} has a decision but no frames; the frames column "
                        f"names the version judged (see index.html)"
                    )
                continue
            try:
                frames = int(raw_frames)
            except ValueError:
                raise ValueError(f"{path}:{line}: frames {raw_frames!r} for {clip} is not an integer") from None
            out.rows.add((clip, frames))
            if verdict:
                out.verdict[(clip, frames)] = verdict
    return out


def append_rows(path: PathLike, rows: list[tuple[str, int, str, str]]) -> None:
    """Add rows to decisions.csv; writes the header first when the file does not exist. Never rewrites."""
    path = Path(path)
    new = not path.exists()
    if not new and not rows:
        return
    last_byte = b""
    if not new and path.stat().st_size:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            last_byte = f.read(1)
    with open(path, "a", newline="", encoding="utf-8") as f:
        if last_byte not in (b"", b"\n", b"\r"):  # the person's last line has no line break yet
            f.write("\r\n")
        writer = csv.writer(f)
        if new:
            writer.writerow(COLUMNS)
        writer.writerows(rows)


# --- sheets and the index --------------------------------------------------------------------------------
def review_sheet(rain: np.ndarray, clean: np.ndarray, gain: float = 4.0, gap: int = 4) -> np.ndarray:
    """[rain | clean | min(255, |rain - clean| * gain)] side by side with white gaps; uint8 RGB."""
    diff = np.abs(rain.astype(np.int16) - clean.astype(np.int16)).astype(np.float32) * gain
    diff = np.clip(diff, 0, 255).astype(np.uint8)
    sep = np.full((rain.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([rain, sep, clean, sep, diff], axis=1)


def _index_html(state: dict, statuses: dict[str, str]) -> str:
    rows = []
    for name, entry in sorted(state["clips"].items()):
        latest = entry["versions"][-1]
        history = "<br>".join(
            f"{v['frames']} frames: p_hat={v['p_hat']}, {html.escape(v.get('decision') or 'not judged')}"
            for v in entry["versions"]
        )
        rows.append(
            f"<tr><td><b>{html.escape(name)}</b><br>{html.escape(statuses.get(name, 'missing source'))}<br>"
            f"{latest['frames']} of {entry['length']} frames<br>density {entry['density']}</td>"
            f"<td>{history}</td>"
            f'<td><a href="{html.escape(latest["sheet"])}"><img src="{html.escape(latest["sheet"])}" '
            f'style="max-width:100%"></a></td></tr>'
        )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>clean-image review</title>\n'
        "<style>body{font-family:sans-serif} td{vertical-align:top;padding:6px;border-bottom:1px solid #ccc}"
        "</style></head><body>\n<h1>Clean-image review</h1>\n"
        f"<p>Each sheet: first rain frame | clean image | difference x{state['gain']:g}. Judge the latest "
        f"version of each clip in <code>{DECISIONS_FILE}</code> (columns {','.join(COLUMNS)}: write accept "
        f"or reject in the row with that clip and number of frames), then run the review command again.</p>\n"
        "<table><tr><th>clip</th><th>versions</th><th>latest sheet</th></tr>\n"
        + "\n".join(rows)
        + "\n</table></body></html>\n"
    )


# --- the loop ---------------------------------------------------------------------------------------------
def load_state(out_dir: Path) -> dict:
    path = out_dir / STATE_FILE
    if not path.exists():
        return {"version": STATE_VERSION, "clips": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); restore it or delete the output folder") from None
    if state.get("version") != STATE_VERSION or "clips" not in state:
        raise ValueError(f"{path}: not a review state file of version {STATE_VERSION}")
    return state


def _new_version(
    name: str,
    source: Path,
    frames: int,
    density: str,
    out_dir: Path,
    gain: float,
    cache_dir: Optional[PathLike],
    band_pixels: int,
) -> dict:
    stem = f"{name}_f{frames:04d}"
    clean_rel, sheet_rel = f"clean/{name}/{stem}.png", f"sheets/{stem}.png"
    print(f"[review] {name}: clean image from {frames} frames ...", flush=True)
    # the review folder is the loop's own: a version cut short by an interruption is generated again
    record = generate(source, out_dir / clean_rel, frames, 0, density, cache_dir, band_pixels, overwrite=True)
    clean = iio.imread(out_dir / clean_rel)
    rain = next(iter_frames(source, 0, 1))
    write_image(out_dir / sheet_rel, review_sheet(rain, clean, gain))
    return {
        "frames": frames,
        "p_hat": record["p_hat"],
        "density": density,
        "clean": clean_rel,
        "sheet": sheet_rel,
        "decision": None,
    }


def review(
    clips_dir: PathLike,
    out_dir: PathLike,
    density: str = "normal",
    gain: float = 4.0,
    cache_dir: Optional[PathLike] = None,
    band_pixels: int = BAND_PIXELS,
) -> dict[str, list[str]]:
    """One round of the loop (see the module docstring). Returns the clip names by state:
    ``{"accepted": [...], "exhausted": [...], "waiting": [...], "regenerated": [...], "new": [...]}``."""
    frames_for_density(density)  # validate the default
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clips = discover_clips(clips_dir)
    state = load_state(out_dir)
    state["gain"] = float(gain)
    decisions_path = out_dir / DECISIONS_FILE
    decisions = read_decisions(decisions_path, sorted(set(clips) | set(state["clips"])))
    summary: dict[str, list[str]] = {k: [] for k in ("accepted", "exhausted", "waiting", "regenerated", "new")}
    statuses: dict[str, str] = {}

    for name in sorted(set(state["clips"]) - set(clips)):
        warnings.warn(f"{name}: in {out_dir / STATE_FILE} but no longer in {clips_dir}; left as it was", stacklevel=2)

    def make(name: str, entry: dict, frames: int) -> None:
        version = _new_version(name, clips[name], frames, entry["density"], out_dir, gain, cache_dir, band_pixels)
        version["decision"] = decisions.verdict.get((name, frames))
        entry["versions"].append(version)
        write_json(out_dir / STATE_FILE, state)  # progress survives an interruption

    for name, source in clips.items():
        entry = state["clips"].get(name)
        if entry is None:
            length = count_frames(source)
            if length < 1:
                raise ValueError(f"{source}: the clip has no frames")
            entry = {
                "source": str(source.resolve()),
                "length": length,
                "density": decisions.density.get(name, density),
                "versions": [],
            }
            state["clips"][name] = entry
            make(name, entry, min(frames_for_density(entry["density"]), length))
            summary["new"].append(name)
        for version in entry["versions"]:
            version["decision"] = decisions.verdict.get((name, version["frames"]))
        entry["density"] = decisions.density.get(name, entry["density"])
        latest = entry["versions"][-1]
        while latest["decision"] == "reject" and latest["frames"] < entry["length"]:
            make(name, entry, min(latest["frames"] + density_step(entry["density"]), entry["length"]))
            if name not in summary["regenerated"]:
                summary["regenerated"].append(name)
            latest = entry["versions"][-1]
        if latest["decision"] == "accept":
            status = "accepted"
        elif latest["decision"] == "reject":
            status = "exhausted"
        else:
            status = "waiting"
        entry["status"] = status
        summary[status].append(name)
        statuses[name] = {
            "accepted": "accepted",
            "waiting": "waiting for a decision",
            "exhausted": f"exhausted: rejected with all {entry['length']} frames",
        }[status]

    for clip, frames in sorted(
        set(decisions.verdict) - {(c, v["frames"]) for c, e in state["clips"].items() for v in e["versions"]}
    ):
        warnings.warn(
            f"{decisions_path}: the decision for {clip} at {frames} frames matches no generated version", stacklevel=2
        )
    append_rows(
        decisions_path,
        [
            (name, e["versions"][-1]["frames"], "", e["density"])
            for name, e in sorted(state["clips"].items())
            if name in clips and (name, e["versions"][-1]["frames"]) not in decisions.rows
        ],
    )
    write_json(out_dir / STATE_FILE, state)
    (out_dir / INDEX_FILE).write_text(_index_html(state, statuses), encoding="utf-8")
    return summary


def report(summary: dict[str, list[str]], out_dir: PathLike) -> str:
    lines = [f"{k}: {len(v)}" + (f" ({', '.join(v)})" if v else "") for k, v in summary.items()]
    done = not summary["waiting"]
    lines.append(
        "done: every clip is accepted or exhausted"
        if done
        else f"next: judge the waiting clips in {Path(out_dir) / DECISIONS_FILE} "
        f"(sheets in {Path(out_dir) / INDEX_FILE}) and run again"
    )
    return "\n".join(lines)


OPTIONS = {
    "clips": text,
    "out": text,
    "density": choice(*DENSITY_FRAMES),
    "gain": number,
    "cache_dir": text,
    "band_pixels": integer(1),
}


def main(cfg: DictConfig) -> int:
    opts = read_options(cfg, OPTIONS, required=("clips", "out"), nullable=("cache_dir",))
    summary = review(opts["clips"], opts["out"], opts["density"], opts["gain"], opts["cache_dir"], opts["band_pixels"])
    print(report(summary, opts["out"]))
    return 0


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="make_clean_review")
def entry(cfg: DictConfig) -> None:
    sys.exit(run_main(main, cfg))


if __name__ == "__main__":
    entry()
