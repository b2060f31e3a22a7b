"""Readers: layouts -> pairs (counts, matching, ordering, skipped pairs, errors)."""

from __future__ import annotations

import os
import warnings

import pytest

from src.data.readers import (
    Pair,
    ReadResult,
    list_images,
    read_layout,
    read_pair_list,
    require_pairs,
    scene_id,
    side_by_side_pairs,
    split_groups,
    warn_missing,
)
from src.utils.errors import ConfigValueError
from tests.data.conftest import SPA_SCENES, build_spa


def _rel(tree, path):
    return os.path.relpath(path, tree.root).replace(os.sep, "/")


@pytest.mark.parametrize("prefix", ["/", "./", ""])
def test_pair_list_prefixes_and_broken_scene(tmp_path, prefix):
    tree = build_spa(tmp_path / "spa", prefix=prefix)
    res = read_pair_list(str(tree.root / "real_world.txt"), str(tree.root))
    assert len(res.pairs) == tree.info["train_pairs"] == 16
    assert len(res.missing) == tree.info["broken"] == 3
    assert all("274" in m for m in res.missing)
    first = res.pairs[0]
    assert _rel(tree, first.rain) == "real_world/000/000-1/000-1_0_0.png"
    assert _rel(tree, first.clean) == "real_world_gt/000/000_0_0.png"
    assert (first.name, first.group, first.label) == ("000-1_0_0", "000", -1)
    assert [p.group for p in res.pairs].count("010") == 4


def test_pair_list_relative_to_list_folder(tmp_path):
    """A custom list beside the data, read with another root, still resolves (fallback base)."""
    tree = build_spa(tmp_path / "spa", prefix="./")
    res = read_pair_list(str(tree.root / "real_world.txt"), str(tmp_path))
    assert len(res.pairs) == 16 and os.path.isfile(res.pairs[0].rain)


def test_pair_list_malformed_line(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("/a.png /b.png\n/only_one.png\n")
    with pytest.raises(ValueError, match=r"list\.txt:2: expected"):
        read_pair_list(str(lst), str(tmp_path))


@pytest.mark.parametrize("bad", ["/real_world/../../outside/x.png", "../outside/x.png", "real_world\\..\\x.png"])
def test_pair_list_line_leaving_the_root_is_refused(tmp_path, bad):
    """A line with a '..' step was read as scene '..' (or a file outside the data root); now it is refused like any
    malformed line, naming the file and line. Names that merely contain two dots are fine."""
    tree = build_spa(tmp_path / "spa")
    lst = tree.root / "real_world.txt"
    lines = lst.read_text().splitlines()
    lst.write_text("\n".join(lines[:2] + [f"{bad} /real_world_gt/000/000_0_0.png"] + lines[2:]) + "\n")
    with pytest.raises(ValueError, match=r"real_world\.txt:3: .* steps out of its folder with '\.\.'"):
        read_pair_list(str(lst), str(tree.root))
    lst.write_text("\n".join(lines + ["/real_world/000/000-1/x..y.png /real_world_gt/000/000_0_0.png"]) + "\n")
    assert len(read_pair_list(str(lst), str(tree.root)).missing) == 4  # x..y.png is a name (missing here)


def test_pair_list_missing_file_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_pair_list(str(tmp_path / "nope.txt"), str(tmp_path))


def test_pair_list_checks_existence_by_listing_folders(spa_tree, no_stat):
    """No per-file stat: existence comes from one os.scandir per folder."""
    res = read_pair_list(str(spa_tree.root / "real_world.txt"), str(spa_tree.root))
    assert len(res.pairs) == 16
    per_file = [c for c in no_stat if isinstance(c, str) and c.endswith(".png")]
    assert per_file == []


def test_warn_missing_once_with_count_and_empty_is_error(spa_tree):
    res = read_pair_list(str(spa_tree.root / "real_world.txt"), str(spa_tree.root))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_missing(res, "train")
    assert len(caught) == 1 and "skipped 3 pairs whose files are missing" in str(caught[0].message)
    with pytest.raises(FileNotFoundError, match="train: no image pairs found .*3 listed pairs"):
        require_pairs(ReadResult([], res.missing, "x"), "train")


def test_scene_id():
    assert scene_id("real_world/123/123-45/123-45_2_3.png") == "123"
    assert scene_id("/data/x/real_world/007/007-1/a.png") == "007"


def test_split_groups_no_leak(spa_tree):
    pairs = read_pair_list(str(spa_tree.root / "real_world.txt"), str(spa_tree.root)).pairs
    train, val = split_groups(pairs, 2)
    assert {p.group for p in val} == {"002", "010"}  # last two ids in numeric order
    assert {p.group for p in train} == {"000", "001"}
    assert len(train) + len(val) == len(pairs) == 16
    train, val = split_groups(pairs, ["001"])
    assert {p.group for p in val} == {"001"} and len(val) == 4
    assert split_groups(pairs, [1, 10]) == split_groups(pairs, ["001", "010"])  # YAML reads 001 as 1
    assert {p.group for p in train}.isdisjoint({p.group for p in val})
    with pytest.raises(ValueError, match=r"val_scenes: unknown ids \['999'\]"):
        split_groups(pairs, ["999"])
    with pytest.raises(ConfigValueError, match="data.val_scenes=4 would hold out all 4 groups.*at most 3"):
        split_groups(pairs, len(SPA_SCENES))  # a refusal (one 'error:' line, exit 2), not a traceback
    assert split_groups(pairs, 0) == (pairs, [])


def test_rain100_padded_and_not(layouts_tree):
    train = read_layout(str(layouts_tree.root / "rain100/train"), "rain100")
    assert [p.name for p in train.pairs] == ["rain-1", "rain-2"]
    assert os.path.basename(train.pairs[1].clean) == "norain-2.png"
    assert len(train.missing) == 1 and "norain-3" in train.missing[0]  # rainstreak-* ignored
    test = read_layout(str(layouts_tree.root / "rain100/test"), "rain100")
    assert [(os.path.basename(p.rain), os.path.basename(p.clean)) for p in test.pairs] == [
        ("rain-001.png", "norain-001.png"),
        ("rain-002.png", "norain-002.png"),
    ]


def test_rain200(layouts_tree):
    res = read_layout(str(layouts_tree.root / "rain200/train"), "rain200")
    assert [(_rel(layouts_tree, p.rain), _rel(layouts_tree, p.clean)) for p in res.pairs] == [
        ("rain200/train/rain/X2/norain-1x2.png", "rain200/train/norain/norain-1.png"),
        ("rain200/train/rain/X2/norain-2x2.png", "rain200/train/norain/norain-2.png"),
    ]


def test_same_names(layouts_tree):
    res = read_layout(str(layouts_tree.root / "same/train"), "same_names", "small/rain", "small/norain")
    assert [(p.name, os.path.basename(p.clean)) for p in res.pairs] == [("a", "a.png"), ("b", "b.png")]
    with pytest.raises(FileNotFoundError, match="folder not found: .*same/train/input"):
        read_layout(str(layouts_tree.root / "same/train"), "same_names")  # default input/target


def test_rain1400_groups_by_clean_image(layouts_tree):
    res = read_layout(str(layouts_tree.root / "rain1400/train"), "rain1400")
    assert [p.name for p in res.pairs] == ["1_1", "1_2", "1_3", "2_1", "2_2", "2_3"]
    assert {os.path.basename(p.clean) for p in res.pairs[:3]} == {"1.jpg"}
    train, val = split_groups(res.pairs, 1, key="val_holdout")
    assert [p.name for p in val] == ["2_1", "2_2", "2_3"] and len(train) == 3


@pytest.mark.parametrize("base", [0, 1])
def test_side_by_side_numeric_order(tmp_path, base):
    for i in range(12):
        (tmp_path / f"{i + base}.jpg").write_bytes(b"")  # order only: nothing decoded
    res = side_by_side_pairs(str(tmp_path), "rain_clean")
    assert [p.name for p in res.pairs] == [str(i + base) for i in range(12)]
    assert all(p.halves == "rain_clean" and p.rain == p.clean for p in res.pairs)
    with pytest.raises(ValueError, match="data.order='left'"):
        side_by_side_pairs(str(tmp_path), "left")


def test_list_images_and_errors(spa_tree, tmp_path):
    assert [os.path.basename(p) for p in list_images(str(spa_tree.root / "Real_Internet"))] == ["2.png", "10.jpg"]
    with pytest.raises(FileNotFoundError, match="folder not found: .*nowhere"):
        list_images(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="data.layout='rain9'"):
        read_layout(str(tmp_path), "rain9")


def test_pair_swapped():
    p = Pair("r", "c", "n", 1, "g")
    assert p.swapped() == Pair("c", "r", "n", 1, "g")
    q = Pair("f", "f", "n", -1, "", "rain_clean")
    assert q.swapped().halves == "clean_rain" and q.swapped().swapped() == q
