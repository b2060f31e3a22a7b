"""The review loop: template, accept, reject -> more frames, exhaustion, the person's file never rewritten."""

from __future__ import annotations

import csv
import json

import imageio.v3 as iio
import numpy as np
import pytest

from src.make_clean.reference import reference_clean_image
from src.make_clean.review import entry, read_decisions, review, review_sheet
from tests.make_clean.conftest import run_cli

SPEC = {"A": (30, 8, 10, 1), "B": (40, 8, 10, 2), "C": (12, 8, 10, 3)}


def rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def person_writes(path, text):
    """The person's edit: their own bytes, which the loop must keep."""
    path.write_bytes(text.encode())
    return text.encode()


def test_review_loop_accept_reject_exhaust(clips_dir, tmp_path):
    clips, frames = clips_dir(SPEC)
    out = tmp_path / "review"

    # run 1: every clip generated from the sparse start (20 frames, C only has 12); template written
    s = review(clips, out, density="sparse")
    assert s["new"] == ["A", "B", "C"] and s["waiting"] == ["A", "B", "C"]
    decisions = out / "decisions.csv"
    assert rows(decisions) == [
        ["clip", "frames", "decision", "density"],
        ["A", "20", "", "sparse"],
        ["B", "20", "", "sparse"],
        ["C", "12", "", "sparse"],
    ]
    state = json.loads((out / "state.json").read_text())
    assert {k: (v["length"], v["versions"][-1]["frames"]) for k, v in state["clips"].items()} == {
        "A": (30, 20),
        "B": (40, 20),
        "C": (12, 12),
    }
    clean_a = iio.imread(out / state["clips"]["A"]["versions"][0]["clean"])
    expected_a, p_a, _ = reference_clean_image(frames["A"][:20])
    assert np.array_equal(clean_a, expected_a)
    assert state["clips"]["A"]["versions"][0]["p_hat"] == p_a
    sheet = iio.imread(out / "sheets" / "A_f0020.png")  # [rain | 4 px gap | clean | gap | diff], 10 px wide
    assert np.array_equal(sheet, review_sheet(frames["A"][0], expected_a))
    assert np.array_equal(sheet[:, 28:38], np.clip(np.abs(frames["A"][0].astype(int) - expected_a) * 4, 0, 255))
    index = (out / "index.html").read_text()
    assert all(f"sheets/{c}_f00" in index for c in "ABC") and "waiting for a decision" in index

    # a re-run without decisions changes nothing
    before = decisions.read_bytes()
    assert review(clips, out, density="sparse")["waiting"] == ["A", "B", "C"]
    assert decisions.read_bytes() == before

    # the person: accept A, reject B and C (no line break at the end of their file)
    mine = person_writes(
        decisions, "clip,frames,decision,density\r\nA,20,accept,sparse\r\nB,20,reject,sparse\r\nC,12,Reject,sparse"
    )
    s = review(clips, out)
    assert (s["accepted"], s["exhausted"], s["waiting"], s["regenerated"]) == (["A"], ["C"], ["B"], ["B"])
    assert decisions.read_bytes().startswith(mine)
    assert rows(decisions)[-1] == ["B", "30", "", "sparse"]  # sparse step: +10 frames
    state = json.loads((out / "state.json").read_text())
    b30 = iio.imread(out / state["clips"]["B"]["versions"][-1]["clean"])
    assert np.array_equal(b30, reference_clean_image(frames["B"][:30])[0])

    # reject B at 30 and switch it to normal density: +20 frames, capped at its 40
    mine = person_writes(decisions, decisions.read_text().replace("B,30,,sparse", "B,30,reject,normal"))
    s = review(clips, out)
    assert s["regenerated"] == ["B"] and s["waiting"] == ["B"]
    assert decisions.read_bytes().startswith(mine)
    assert rows(decisions)[-1] == ["B", "40", "", "normal"]

    # reject B with all its frames: exhausted; the loop is done
    person_writes(decisions, decisions.read_text().replace("B,40,,normal", "B,40,reject,normal"))
    s = review(clips, out)
    assert (s["accepted"], s["exhausted"], s["waiting"], s["regenerated"]) == (["A"], ["B", "C"], [], [])
    state = json.loads((out / "state.json").read_text())
    assert [(v["frames"], v["decision"]) for v in state["clips"]["B"]["versions"]] == [
        (20, "reject"),
        (30, "reject"),
        (40, "reject"),
    ]
    assert state["clips"]["A"]["status"] == "accepted" and state["clips"]["C"]["status"] == "exhausted"


def test_cli_reports_and_density_column_before_first_run(clips_dir, make_frames, tmp_path, capsys):
    clips, _ = clips_dir({"A": (25, 6, 8, 4), "B": (25, 6, 8, 5)})
    video = make_frames(14, 16, 16, 6)
    iio.imwrite(clips / "V.mp4", video, plugin="FFMPEG", fps=10, codec="libx264")  # a video clip too
    (clips / "notes.txt").write_text("not a clip")
    out = tmp_path / "review"
    out.mkdir()
    # a person may set a clip's density before its first run (no frames, no decision yet)
    (out / "decisions.csv").write_text("clip,frames,decision,density\nB,,,normal\n")
    assert run_cli(entry, [f"clips={clips}", f"out={out}", "density=sparse"]) == 0
    state = json.loads((out / "state.json").read_text())
    assert state["clips"]["A"]["versions"][-1]["frames"] == 20  # sparse default
    assert state["clips"]["B"]["versions"][-1]["frames"] == 25  # normal wants 100: capped at the length
    assert (state["clips"]["V"]["length"], state["clips"]["V"]["versions"][-1]["frames"]) == (14, 14)
    assert sorted(state["clips"]) == ["A", "B", "V"]
    printed = capsys.readouterr().out
    assert "waiting: 3 (A, B, V)" in printed and "next: judge the waiting clips" in printed
    with open(out / "decisions.csv", "a") as f:
        f.write("A,20,accept,\nB,25,accept,\nV,14,reject,\n")
    assert run_cli(entry, [f"clips={clips}", f"out={out}"]) == 0
    printed = capsys.readouterr().out
    assert "accepted: 2 (A, B)" in printed and "exhausted: 1 (V)" in printed and "done: every clip" in printed


@pytest.mark.parametrize(
    "line,message",
    [
        ("A,20,maybe,", "decisions.csv:2: decision 'maybe' for A"),
        ("Z,20,accept,", "decisions.csv:2: unknown clip 'Z'"),
        ("A,,accept,", "decisions.csv:2: A has a decision but no frames"),
        ("A,twenty,accept,", "decisions.csv:2: frames 'twenty' for A is not an integer"),
        ("A,20,accept,heavy", "decisions.csv:2: density 'heavy' for A"),
    ],
)
def test_bad_decisions_name_file_and_line(line, message, clips_dir, tmp_path):
    clips, _ = clips_dir({"A": (20, 4, 4, 6)})
    path = tmp_path / "decisions.csv"
    path.write_text("clip,frames,decision,density\n" + line + "\n")
    with pytest.raises(ValueError, match=message):
        read_decisions(path, ["A"])


def test_cli_usage_errors(tmp_path, capsys):
    assert run_cli(entry, [f"clips={tmp_path}"]) == 2
    assert "missing out=..." in capsys.readouterr().err
    assert run_cli(entry, [f"clips={tmp_path / 'none'}", f"out={tmp_path / 'out'}"]) == 2
    assert "clips folder not found" in capsys.readouterr().err
