"""Accepted clips -> SPA-Data layout, read back by the realrain reader and data module."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from src.data.readers import read_pair_list
from src.data.realrain import RealRainDataModule
from src.make_clean import assemble as assemble_module
from src.make_clean.assemble import assemble, entry, patch_grid, scene_name, val_scenes_for
from src.make_clean.reference import reference_clean_image
from src.make_clean.review import review
from tests.make_clean.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def reviewed(clips_dir, tmp_path):
    """A review folder where clip 'rain_A-1' (12 frames of 18x20) is accepted and 'B' is still waiting."""
    clips, frames = clips_dir({"rain_A-1": (12, 18, 20, 7), "B": (12, 18, 20, 8)})
    out = tmp_path / "review"
    review(clips, out, density="sparse")  # sparse = 20 frames: capped at the clips' 12
    with open(out / "decisions.csv", "a") as f:
        f.write("rain_A-1,12,accept,\n")
    return out, frames["rain_A-1"]


def test_patches_in_spa_data_layout(reviewed, tmp_path):
    out, frames = reviewed
    clean = reference_clean_image(frames)[0]
    ds = tmp_path / "dataset"
    result = assemble(out, ds, patch=8)
    assert result["scenes"] == {"rain_A-1": "rainA1"}
    grid = [(0, 0), (8, 0), (0, 8), (8, 8)]  # 18x20 frames: 2x2 patches of 8, the remainder dropped
    assert patch_grid(18, 20, 8) == grid
    lines = (ds / "real_world.txt").read_text().splitlines()
    assert result["pairs"] == len(lines) == 12 * 4
    assert lines[0] == "/real_world/rainA1/rainA1-0/rainA1-0_0_0.png /real_world_gt/rainA1/rainA1_0_0.png"
    assert lines[-1] == "/real_world/rainA1/rainA1-11/rainA1-11_8_8.png /real_world_gt/rainA1/rainA1_8_8.png"
    for line in lines:
        rain_rel, clean_rel = (p.lstrip("/") for p in line.split(" "))
        f, x, y = (int(v) for v in rain_rel.rsplit("/", 1)[1][:-4].split("-")[1].split("_"))
        assert np.array_equal(iio.imread(ds / rain_rel), frames[f, y : y + 8, x : x + 8])
        assert np.array_equal(iio.imread(ds / clean_rel), clean[y : y + 8, x : x + 8])
    assert sorted(p.name for p in (ds / "real_world_gt" / "rainA1").iterdir()) == sorted(
        f"rainA1_{x}_{y}.png" for x, y in grid
    )
    with open(ds / "scenes.csv", newline="") as f:
        assert list(csv.reader(f))[1][:3] == ["rainA1", "rain_A-1", "12"]


def test_assembled_tree_loads_through_the_realrain_reader(reviewed, tmp_path):
    out, frames = reviewed
    ds = tmp_path / "dataset"
    assemble(out, ds, patch=8)
    listed = read_pair_list(str(ds / "real_world.txt"), str(ds))
    assert len(listed.pairs) == 48 and listed.missing == []
    assert {p.group for p in listed.pairs} == {"rainA1"}
    dm = RealRainDataModule(root=str(ds), val_scenes=0, test_dir=None, train_transform=None, batch_size=4)
    dm.setup("fit")
    sample = dm.train_set[5]  # line 6: frame 1, patch (8, 0)
    assert sample["name"] == "rainA1-1_8_0"
    expected = torch.from_numpy(frames[1, 0:8, 8:16].transpose(2, 0, 1).astype(np.float32) / 255)
    assert torch.allclose(sample["rain"], expected)
    assert sample["clean"].shape == (3, 8, 8)


def test_whole_frames_overwrite_and_errors(reviewed, tmp_path, capsys):
    out, frames = reviewed
    ds = tmp_path / "dataset"
    assert run_cli(entry, [f"out={out}", f"dataset={ds}", "patch=0"]) == 0
    assert "12 pairs from 1 scenes" in capsys.readouterr().out
    assert np.array_equal(iio.imread(ds / "real_world/rainA1/rainA1-3/rainA1-3_0_0.png"), frames[3])
    assert run_cli(entry, [f"out={out}", f"dataset={ds}", "patch=0"]) == 2
    err = capsys.readouterr().err
    assert "real_world.txt (and 3 more): the data set file or scene folder already exists" in err
    assert "pass overwrite=true" in err
    assert run_cli(entry, [f"out={out}", f"dataset={ds}", "patch=8", "overwrite=true"]) == 0
    assert len(list((ds / "real_world/rainA1/rainA1-3").iterdir())) == 4  # the whole frame was replaced
    assert iio.imread(ds / "real_world/rainA1/rainA1-3/rainA1-3_0_0.png").shape == (8, 8, 3)
    assert len((ds / "real_world.txt").read_text().splitlines()) == 48
    assert run_cli(entry, [f"out={out}", f"dataset={tmp_path / 'big'}", "patch=64"]) == 2
    assert "frames are 18x20, smaller than patch=64" in capsys.readouterr().err
    assert scene_name("rain_s270") == "rains270"
    with pytest.raises(ValueError, match="no letters or digits"):
        scene_name("__")


def test_nothing_accepted_is_an_error(clips_dir, tmp_path):
    clips, _ = clips_dir({"A": (5, 8, 8, 9)})
    out = tmp_path / "review"
    review(clips, out, density="sparse")
    with pytest.raises(ValueError, match="no clip has its latest version accepted"):
        assemble(out, tmp_path / "ds")


# --- nothing lost on failure: check first, write beside, then rename into place ---------------------------------------
def _snapshot(folder):
    """{relative path: bytes} of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _break_patch(clips, monkeypatch):
    return {"patch": 64}, "frames are 18x20, smaller than patch=64"  # checked before anything is written


def _move_clip(clips, monkeypatch):
    shutil.move(clips / "rain_A-1", clips.parent / "elsewhere")  # the clip named in state.json is gone
    return {}, "rain_A-1 not found"


def _drop_a_frame(clips, monkeypatch):
    (clips / "rain_A-1" / "0011.png").unlink()  # found while the new set is written (in the hidden folder)
    return {}, "has 11 frames now, but its clean image used 12"


def _fail_a_rename(clips, monkeypatch):
    calls, real = [], os.replace

    def flaky(src, dst):  # the 4th rename of the final swap (the list file) fails: the first three are undone
        if ".assemble-" in str(src) and f"{os.sep}new{os.sep}" in str(src):
            calls.append(src)
            if len(calls) == 4:
                raise OSError("disk gone")
        return real(src, dst)

    monkeypatch.setattr(assemble_module.os, "replace", flaky)
    return {}, "disk gone"


@pytest.mark.parametrize("breaker", [_break_patch, _move_clip, _drop_a_frame, _fail_a_rename])
def test_a_failed_overwrite_leaves_the_previous_data_set_byte_identical(reviewed, tmp_path, monkeypatch, breaker):
    """The issue's cases: overwrite=true with a patch too big, or a clip moved since the review, deleted the
    previous data set before failing. Now every failure (also one while writing or renaming) keeps it as it was."""
    out, _ = reviewed
    ds = tmp_path / "dataset"
    assemble(out, ds, patch=8)
    (ds / "real_test_1000").mkdir()  # the user's own files in the data set folder are never touched
    (ds / "real_test_1000" / "note.txt").write_text("mine")
    before = _snapshot(ds)
    assert len(before) == 12 * 4 + 4 + 3  # rainy patches, clean patches, list, scenes.csv, note.txt
    options, message = breaker(tmp_path / "clips", monkeypatch)
    with pytest.raises((ValueError, OSError), match=message):
        assemble(out, ds, **{"patch": 4, "overwrite": True, **options})
    assert _snapshot(ds) == before
    beside = ["clips", "dataset", "review"] + (["elsewhere"] if breaker is _move_clip else [])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(beside)  # no hidden work folder left behind


def test_overwrite_replaces_the_scenes_it_writes(reviewed, tmp_path):
    out, frames = reviewed
    ds = tmp_path / "dataset"
    assemble(out, ds, patch=8)
    (ds / "real_world" / "rainA1" / "stray.txt").write_text("old")
    result = assemble(out, ds, patch=6, overwrite=True)
    assert result["pairs"] == 12 * 9  # 18x20 frames: 3x3 patches of 6
    assert not (ds / "real_world" / "rainA1" / "stray.txt").exists()  # the whole scene folder was replaced
    assert np.array_equal(iio.imread(ds / "real_world/rainA1/rainA1-2/rainA1-2_6_12.png"), frames[2, 12:18, 6:12])


# --- what to train with ---------------------------------------------------------------------------------------------
def test_val_scenes_suit_the_number_of_clips():
    assert [val_scenes_for(n) for n in (1, 2, 9, 10, 25, 170)] == [0, 1, 1, 1, 2, 17]


def _accept_all(out):
    with open(out / "decisions.csv", "a") as f:
        f.write("B,12,accept,\n")


def test_train_command_and_data_config(reviewed, tmp_path, monkeypatch, capsys):
    """Two scenes and no test split: one scene held out for validation, test_dir null; data_config=NAME writes
    conf/data/NAME.yaml (here a temporary folder), which builds the data module that trains on the set."""
    out, _ = reviewed
    _accept_all(out)
    conf = tmp_path / "conf_data"
    monkeypatch.setattr(assemble_module, "DATA_CONFIG_DIR", conf)
    ds = tmp_path / "dataset"
    assert run_cli(entry, [f"out={out}", f"dataset={ds}", "patch=8", "data_config=mine"]) == 0
    printed = capsys.readouterr().out
    assert f"data config: {conf / 'mine.yaml'}" in printed
    assert "train: python -m src.train data=mine model=spanet" in printed
    cfg = OmegaConf.load(conf / "mine.yaml")
    assert list(cfg.defaults) == ["realrain", "_self_"]
    assert (cfg.root, cfg.val_scenes, cfg.test_dir, cfg.list_file) == (str(ds.resolve()), 1, None, "real_world.txt")
    data = OmegaConf.merge(
        OmegaConf.load(REPO / "conf/data/realrain.yaml"), {k: cfg[k] for k in cfg if k != "defaults"}
    )
    dm = RealRainDataModule(**{k: data[k] for k in ("root", "list_file", "val_scenes", "test_dir")}, batch_size=4)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), dm.test_set) == (48, 48, None)  # B (12 x 4) validates

    # without data_config: the overrides themselves; one scene: no validation possible, said instead of a command
    result = assemble(out, tmp_path / "ds2", patch=8)
    assert result["train"] == (
        f"python -m src.train data=realrain data.root={tmp_path / 'ds2'} data.val_scenes=1 "
        f"data.test_dir=null model=spanet"
    )
    (tmp_path / "ds3" / "real_test_1000" / "rain").mkdir(parents=True)  # a test split of the user's
    assert "test_dir" not in assemble(out, tmp_path / "ds3", patch=8)["data"]


def test_data_config_is_refused_over_a_file_it_did_not_write(reviewed, tmp_path, monkeypatch):
    out, _ = reviewed
    conf = tmp_path / "conf_data"
    conf.mkdir()
    (conf / "preset.yaml").write_text("root: keep\n")
    monkeypatch.setattr(assemble_module, "DATA_CONFIG_DIR", conf)
    with pytest.raises(FileExistsError, match="pass overwrite=true"):
        assemble(out, tmp_path / "ds", patch=8, data_config="preset")
    with pytest.raises(ValueError, match="not a data config written by this command"):
        assemble(out, tmp_path / "ds", patch=8, data_config="preset", overwrite=True)
    with pytest.raises(ValueError, match="data_config=../x: expected a name"):
        assemble(out, tmp_path / "ds", patch=8, data_config="../x")
    assert (conf / "preset.yaml").read_text() == "root: keep\n" and not (tmp_path / "ds").exists()
    result = assemble(out, tmp_path / "ds", patch=8, data_config="one")
    assert result["train"].startswith("no train command: with one scene nothing can be held out")
    assemble(out, tmp_path / "ds", patch=8, data_config="one", overwrite=True)  # its own file: replaced
