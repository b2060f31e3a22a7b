"""What predict reads and writes: checkpoints from a sweep directory, labels, input kinds."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.inference.inputs import check_stems, collect_inputs
from src.inference.models import checkpoint_files, unique_labels
from src.utils.errors import ConfigValueError


def test_a_sweep_directory_gives_each_runs_best_checkpoint_or_its_last(tmp_path):
    sweep = tmp_path / "multiruns" / "2025"
    for job, names in {"0": ["best.ckpt", "last.ckpt"], "1": ["last.ckpt"], "2": []}.items():
        (sweep / job / "checkpoints").mkdir(parents=True)
        for n in names:
            (sweep / job / "checkpoints" / n).write_bytes(b"x")
    assert checkpoint_files(str(sweep)) == [sweep / "0/checkpoints/best.ckpt", sweep / "1/checkpoints/last.ckpt"]
    assert checkpoint_files([str(sweep / "1/checkpoints/last.ckpt")]) == [sweep / "1/checkpoints/last.ckpt"]
    with pytest.raises(ConfigValueError, match="no checkpoints/best.ckpt or last.ckpt"):
        checkpoint_files(str(sweep / "2"))
    with pytest.raises(ConfigValueError, match="ckpt_path=.*nope"):
        checkpoint_files(str(tmp_path / "nope"))


def test_labels_are_made_unique_by_run_folder():
    files = [Path("s/0/checkpoints/best.ckpt"), Path("s/1/checkpoints/best.ckpt"), Path("r/x.pt")]
    assert unique_labels(["spanet", "spanet", "ddn"], files) == ["spanet (0)", "spanet (1)", "ddn"]


def test_input_kinds(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"")
    (tmp_path / "a.png").write_bytes(b"")
    assert collect_inputs(str(tmp_path / "clip.mp4")).kind == "video"
    assert collect_inputs(str(tmp_path / "a.png")).kind == "images"
    with pytest.raises(ValueError, match="neither an image nor a video"):
        (tmp_path / "notes.txt").write_text("x")
        collect_inputs(str(tmp_path / "notes.txt"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "v.mp4").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="holds no image files.*pass one file"):
        collect_inputs(str(empty))
    with pytest.raises(ValueError, match="x.png and x.jpg"):
        check_stems([Path("x.png"), Path("x.jpg")])
    with pytest.raises(ValueError, match="X.png and x.jpg"):  # one file on case-insensitive file systems
        check_stems([Path("X.png"), Path("x.jpg")])
    check_stems([Path("x.png"), Path("xy.jpg")])
