"""The data checker: JSON report numbers against values computed from the arrays written, problems, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from src.data.check import check_module, main, run
from src.data.didmdn import DIDMDNDataModule
from src.data.paired_module import PairedDataModule
from src.data.realrain import RealRainDataModule
from src.utils.errors import ConfigValueError, OutputExistsError
from tests.data.conftest import Tree, add_rain, build_spa, clean_image, write
from tests.make_clean.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]


def _levels(arr):
    return arr.mean() * (255 / 65535 if arr.dtype == np.uint16 else 1)


def _expected_diff(tree, pairs):
    return np.mean([_levels(tree.images[r]) - _levels(tree.images[c]) for r, c in pairs])


def test_realrain_report(spa_tree):
    dm = RealRainDataModule(str(spa_tree.root), val_scenes=1)
    # the look-alike's broken scene 274 is 3 of 15 training lines (the published list: 1 of 638,493)
    rep = check_module(dm, workers=4, progress=False)
    assert rep["problems"] == [
        f"{spa_tree.root / 'real_world.txt'}: 3 of 15 training pairs (20.0%) have a missing "
        f"file, more than train_missing_max=0.01 (first: {spa_tree.root}/real_world/274/274-1/"
        f"274-1_0_0.png -> {spa_tree.root}/real_world_gt/274/274_0_0.png)"
    ]
    rep = check_module(dm, workers=4, progress=False, train_missing_max=0.5)
    assert rep["problems"] == []
    assert (rep["train"]["pairs"], rep["train"]["skipped"]) == (12, 3)
    assert (rep["val"]["pairs"], rep["val"]["skipped"], rep["test"]["pairs"]) == (4, 0, 3)
    assert "labels" not in rep["train"]
    root = spa_tree.root
    train = [
        (str(root / f"real_world/{s}/{s}-{f}/{s}-{f}_{x}_{y}.png"), str(root / f"real_world_gt/{s}/{s}_{x}_{y}.png"))
        for s in ("000", "001", "002")
        for (x, y) in ((0, 0), (0, 1))
        for f in (1, 2)
    ]
    test = [
        (str(root / f"real_test_1000/rain/{i:03d}.png"), str(root / f"real_test_1000/gt/{i:03d}gt.png"))
        for i in range(3)
    ]
    assert rep["train"]["mean_rain_minus_clean"] == pytest.approx(_expected_diff(spa_tree, train), abs=1e-4)
    assert rep["test"]["mean_rain_minus_clean"] == pytest.approx(_expected_diff(spa_tree, test), abs=1e-4)
    assert rep["train"]["mean_rain_minus_clean"] > 0


def test_didmdn_report_labels_and_halves(didmdn_tree):
    rep = check_module(DIDMDNDataModule(str(didmdn_tree.root)), workers=2, progress=False)
    assert rep["problems"] == [] and set(rep) == {"train", "test", "problems"}
    assert rep["train"]["labels"] == {"heavy": 3, "medium": 3, "light": 3} and rep["test"]["pairs"] == 12
    diffs = []
    for i in range(12):
        both = np.array(Image.open(didmdn_tree.root / f"DID-MDN-test/{i + 1}.jpg").convert("RGB"), dtype=np.float64)
        diffs.append(both[:, :32].mean() - both[:, 32:].mean())
    assert rep["test"]["mean_rain_minus_clean"] == pytest.approx(np.mean(diffs), abs=1e-4)


def _mixed_folder(root: Path):
    """input/target folder: an 8-bit pair, a grey pair, a 16-bit pair (all fine), a truncated PNG, a size mismatch."""
    t = Tree(root)
    c = clean_image(1)
    t.put("input/a.png", add_rain(c, 1)), t.put("target/a.png", c)
    g = clean_image(2)[:, :, 0]
    t.put("input/b.png", add_rain(g[:, :, None], 2)[:, :, 0]), t.put("target/b.png", g)
    c16 = clean_image(3).astype(np.uint16) * 257
    t.put("input/c.png", np.minimum(c16.astype(np.uint32) + 9000, 65535).astype(np.uint16)), t.put("target/c.png", c16)
    return t


def test_paired_single_folder_report_and_problems(tmp_path):
    t = _mixed_folder(tmp_path / "set")
    good = [(str(t.root / f"input/{n}.png"), str(t.root / f"target/{n}.png")) for n in "abc"]
    rep = check_module(PairedDataModule(str(t.root), "same_names"), workers=2, progress=False)
    assert set(rep) == {"pairs", "problems"} and rep["problems"] == []
    assert rep["pairs"]["pairs"] == 3
    assert rep["pairs"]["mean_rain_minus_clean"] == pytest.approx(_expected_diff(t, good), abs=1e-4)

    d = write(t.root / "input/d.png", clean_image(4))
    write(t.root / "target/d.png", clean_image(4))
    d.write_bytes(d.read_bytes()[:100])  # truncated
    write(t.root / "input/e.png", clean_image(5, 20, 32))
    write(t.root / "target/e.png", clean_image(5))
    rep = check_module(PairedDataModule(str(t.root), "same_names"), workers=2, progress=False)
    probs = rep["problems"]
    assert len(probs) == 2 and rep["pairs"]["pairs"] == 5
    assert probs[0].startswith(str(d)) and "cannot read image" in probs[0]
    assert probs[1].startswith(str(t.root / "input/e.png")) and "size 32x20 (WxH) differs" in probs[1]
    assert rep["pairs"]["mean_rain_minus_clean"] == pytest.approx(
        _expected_diff(t, good), abs=1e-4
    )  # bad pairs left out


def test_swapped_and_missing_root_are_problems(tmp_path, spa_tree):
    rep = check_module(
        RealRainDataModule(str(spa_tree.root), swap=True), workers=2, progress=False, train_missing_max=0.5
    )
    assert len(rep["problems"]) == 3  # train, val (held-out scenes) and test
    assert all("look swapped, set data.swap=true" in p for p in rep["problems"])
    assert rep["train"]["mean_rain_minus_clean"] < 0
    rep = check_module(RealRainDataModule(str(spa_tree.root), list_file="none.txt"), progress=False)
    assert rep == {"problems": [f"list file not found: {spa_tree.root / 'none.txt'}"]}


def _cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "src.data.check", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_writes_report(tmp_path):
    """The real entry point, once (a subprocess costs the lightning import): report written, exit 0,
    nothing else created in the working directory."""
    spa = build_spa(tmp_path / "spa")
    work = tmp_path / "cwd"
    work.mkdir()
    ok = _cli(
        "data=realrain", f"data.root={spa.root}", "report=rep.json", "workers=2", "train_missing_max=0.5", cwd=work
    )
    assert ok.returncode == 0, ok.stderr
    assert sorted(os.listdir(work)) == ["rep.json"]  # no hydra output dir, no log file
    rep = json.loads((work / "rep.json").read_text())
    assert rep["train"]["pairs"] == 8 and rep["val"]["pairs"] == 8 and rep["train"]["skipped"] == 3
    assert "train:" in ok.stdout and "problems: 0" in ok.stdout


def _compose(*overrides):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            return compose(config_name="check", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def test_run_exit_status_on_problems(tmp_path, capsys):
    spa = build_spa(tmp_path / "spa")
    report = tmp_path / "rep.json"
    cfg = _compose(
        "data=realrain",
        f"data.root={spa.root}",
        f"report={report}",
        "progress=false",
        "train_missing_max=0.5",
        "overwrite=true",
    )
    assert run(cfg) == 0
    bad = spa.root / "real_test_1000/rain/001.png"
    bad.write_bytes(bad.read_bytes()[:80])
    assert run(cfg) == 1
    assert json.loads(report.read_text())["problems"][0].startswith(f"{bad}: cannot read image")
    assert run(_compose("data=realrain")) == 1
    assert "data.root is not set: pass data.root=DIR" in capsys.readouterr().out
    assert run(_compose("data=paired", f"data.root={spa.root}", "data.layout=rain100")) == 1


def test_missing_eval_pairs_and_missing_training_fraction_fail(tmp_path):
    """The issue's case: 7 of 9 training lines missing and one test ground truth deleted -> exit 1, both named."""
    spa = build_spa(tmp_path / "spa")
    lines = (spa.root / "real_world.txt").read_text().split("\n")
    listed = [ln for ln in lines if ln.strip()]
    keep = listed[:2] + [ln.replace(".png", "_gone.png") for ln in listed[2:9]]
    (spa.root / "real_world.txt").write_text("\n".join(keep) + "\n")
    gone = spa.root / "real_test_1000/gt/001gt.png"
    gone.unlink()
    report = tmp_path / "rep.json"
    assert (
        run(
            _compose(
                "data=realrain", f"data.root={spa.root}", "data.val_scenes=0", f"report={report}", "progress=false"
            )
        )
        == 1
    )
    rep = json.loads(report.read_text())
    assert rep["train"]["skipped"] == 7 and rep["test"]["skipped"] == 1 and rep["test"]["pairs"] == 2
    assert any("7 of 9 training pairs (77.8%) have a missing file" in p for p in rep["problems"])
    assert any("1 of 3 test pairs have a missing file" in p and "001.png" in p for p in rep["problems"])


def test_colour_mode_mismatch_and_translucent_alpha_are_problems(tmp_path):
    t = Tree(tmp_path / "set")
    c = clean_image(1)
    grey_rain = add_rain(c, 1)[:, :, 0]
    t.put("input/grey.png", grey_rain), t.put("target/grey.png", c)  # grey rainy, colour clean
    rgba = np.dstack([add_rain(c, 2), np.full(c.shape[:2], 255, np.uint8)])
    t.put("input/opaque.png", rgba), t.put("target/opaque.png", c)  # RGBA vs RGB
    see_through = rgba.copy()
    see_through[0, 0, 3] = 10
    t.put("input/glass.png", see_through), t.put("target/glass.png", np.dstack([c, see_through[:, :, 3]]))
    t.put("input/ok.png", add_rain(c, 3)), t.put("target/ok.png", c)
    rep = check_module(PairedDataModule(str(t.root), "same_names"), workers=2, progress=False)
    probs = sorted(rep["problems"])
    assert len(probs) == 4, probs
    assert probs[0].startswith(str(t.root / "input/glass.png")) and "translucent alpha" in probs[0]
    assert (
        probs[1].startswith(str(t.root / "input/grey.png"))
        and "colour mode grey differs from its clean image" in probs[1]
        and "(colour)" in probs[1]
    )
    assert (
        probs[2].startswith(str(t.root / "input/opaque.png"))
        and "colour with alpha differs from its clean image" in probs[2]
    )
    assert probs[3].startswith(str(t.root / "target/glass.png")) and "translucent alpha" in probs[3]


def test_report_never_replaces_a_file_unasked(tmp_path, capsys):
    """report=<an existing file> replaced it silently, even the data set's own real_world.txt. Now: refused before
    anything is read unless overwrite=true, and with it only an earlier report is replaced, never a data set file."""
    spa = build_spa(tmp_path / "spa")
    listed = spa.root / "real_world.txt"
    own = {p: p.read_bytes() for p in (listed, spa.root / "real_test_1000/gt/000gt.png")}
    args = ["data=realrain", f"data.root={spa.root}", "progress=false", "train_missing_max=0.5"]
    for path in own:
        with pytest.raises(OutputExistsError, match="the report already exists; refusing to replace it"):
            run(_compose(*args, f"report={path}"))
        with pytest.raises(ConfigValueError, match="not a report of src.data.check"):
            run(_compose(*args, f"report={path}", "overwrite=true"))
    assert {p: p.read_bytes() for p in own} == own
    with pytest.raises(ConfigValueError, match="is a folder"):
        run(_compose(*args, f"report={spa.root}"))

    report = tmp_path / "check.json"
    assert run(_compose(*args, f"report={report}")) == 0
    first = report.read_bytes()
    assert run_cli(main, [*args, f"report={report}"]) == 2  # the entry point: one line, exit status 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {report}: the report already exists") and err.count("\n") == 1
    assert report.read_bytes() == first
    listed.write_text(listed.read_text() + listed.read_text().splitlines()[0] + "\n")  # the set changes
    assert run(_compose(*args, f"report={report}", "overwrite=true")) == 0  # an earlier report: replaced
    assert json.loads(report.read_text())["train"]["skipped"] == 3 and report.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["check.json", "spa"]  # no temporary file left
