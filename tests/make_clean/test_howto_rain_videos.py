"""docs/howto.md's "make a data set from my own rain videos" runs as written: its commands, read from the page, in
a copy of the repository (the data config lands in the copy's conf/data/), on two tiny clips, a few training steps.
Only sizes are changed (patch, steps, channels); a person's review is played by appending 'accept' rows."""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import imageio.v3 as iio
import pytest

from src.inference.video import VideoWriter
from src.runs.report import NO_TEST_SPLIT
from tests.make_clean.conftest import rain_clip
from tests.test_standalone import repo_files, run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## ... make a data set from my own rain videos?"
TINY = {"patch=256": "patch=16"}  # the page's values -> sizes for 32x48 clips
TINY_TRAIN = [
    "schedule.batch_size=2",
    "schedule.max_steps=2",
    "schedule.val_every=2",
    "schedule.train_patch=16",
    "model.net.channels=8",
    "trainer.enable_model_summary=false",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
    "hydra.run.dir=logs/howto_run",
]


def howto_commands() -> list[list[str]]:
    """The ``python -m ...`` lines of the section's first bash block, comments dropped, tiny sizes put in."""
    text = (ROOT / "docs" / "howto.md").read_text(encoding="utf-8")
    block = text.split(SECTION, 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("python -m "):
            for page, tiny in TINY.items():
                line = line.replace(page, tiny)
            commands.append(shlex.split(line)[1:])  # without "python": run() adds this interpreter
    return commands


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("howto") / "spanet-suite"
    for name in repo_files():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes((ROOT / name).read_bytes())
    return dest


def test_rain_video_howto_runs_as_written(clone):
    commands = howto_commands()
    assert [c[1] for c in commands] == [
        "src.make_clean",
        "src.make_clean.review",
        "src.make_clean.assemble",
        "src.train",
    ]
    with VideoWriter(clone / "clip.mp4", fps=25) as video:
        for frame in rain_clip(12, 32, 48, seed=1):
            video.write(frame)
    for k, name in enumerate(["street", "garden"]):
        (clone / "clips" / name).mkdir(parents=True)
        for i, frame in enumerate(rain_clip(12, 32, 48, seed=10 + k)):
            iio.imwrite(clone / "clips" / name / f"{i:04d}.png", frame)

    make_clean, review, assemble, train = commands
    run(clone, *make_clean)
    assert json.loads((clone / "outputs" / "clip_clean.json").read_text())["frames"] == 12  # all the clip has
    run(clone, *review)
    with open(clone / "review" / "decisions.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    with open(clone / "review" / "decisions.csv", "a", newline="") as f:  # the person accepts both clips
        csv.writer(f).writerows([[clip, frames, "accept", ""] for clip, frames, *_ in rows])
    assert "every clip is accepted" in run(clone, *review).stdout
    printed = run(clone, *assemble).stdout
    assert "mydata/real_world.txt: 144 pairs from 2 scenes" in printed  # 2 clips x 12 frames x 2x3 patches of 16
    assert f"data config: {clone / 'conf/data/mydata.yaml'}" in printed
    assert "train: python -m src.train data=mydata model=spanet" in printed

    out = run(clone, *train, *TINY_TRAIN, timeout=600).stdout
    metrics = json.loads((clone / "logs" / "howto_run" / "metrics.json").read_text())
    assert metrics["complete"] and metrics["global_step"] == 2
    assert metrics["val"]["n_images"] == 72 and set(metrics["val"]["per_image"]) >= {"street-0_0_0"}  # held out
    assert metrics["test"] is None and metrics["test_note"] == NO_TEST_SPLIT
    assert "no test split in this data set" in out and not re.search(r"on mydata: test\s*\n", out)
