"""Accepted clips -> SPA-Data layout, read back by the realrain reader and data module."""

from __future__ import annotations

import csv

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from src.data.readers import read_pair_list
from src.data.realrain import RealRainDataModule
from src.make_clean.assemble import assemble, entry, patch_grid, scene_name
from src.make_clean.reference import reference_clean_image
from src.make_clean.review import review
from tests.make_clean.conftest import run_cli


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
        assert np.array_equal(iio.imread(ds / rain_rel), frames[f, y:y + 8, x:x + 8])
        assert np.array_equal(iio.imread(ds / clean_rel), clean[y:y + 8, x:x + 8])
    assert sorted(p.name for p in (ds / "real_world_gt" / "rainA1").iterdir()) == \
        sorted(f"rainA1_{x}_{y}.png" for x, y in grid)
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
    assert "real_world.txt already exists; pass overwrite=true" in capsys.readouterr().err
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
