"""Clip reading (video via imageio's ffmpeg, frame folders), the frame cache and the make_clean CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from omegaconf import OmegaConf

from src.make_clean import io as mio
from src.make_clean.__main__ import entry
from src.make_clean.reference import reference_clean_image
from src.utils import video_io as vio
from tests.make_clean.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]


def rain_frames(n: int, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth static background with bright rain pixels (codec-friendly enough for a tiny mp4)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(30, 190, w).astype(np.uint8)
    bg = np.stack([np.tile(ramp, (h, 1)), np.tile(ramp[::-1], (h, 1)), np.full((h, w), 90, np.uint8)], -1)
    frames = np.repeat(bg[None], n, axis=0)
    frames[rng.random((n, h, w)) < 0.05] = 235
    return frames


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "rain clip.mp4"
    iio.imwrite(path, rain_frames(12), plugin="FFMPEG", fps=10, codec="libx264")
    return path


def decoded(path: Path) -> np.ndarray:
    """The video's frames as ffmpeg decodes them, read with imageio-ffmpeg's own generator (independent of
    src.make_clean.io). The codec is lossy: tests compare against these, not the frames that were encoded."""
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(gen)
    w, h = meta["size"]
    return np.stack([np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in gen])


def test_video_frames_are_the_decoded_frames(video):
    ref = decoded(video)
    assert ref.shape == (12, 48, 64, 3)
    assert vio.count_frames(video) == 12
    assert np.array_equal(vio.read_frames(video), ref)
    assert np.array_equal(vio.read_frames(video, start=3, count=4), ref[3:7])
    assert np.array_equal(vio.read_frames(video, start=10, count=5), ref[10:])  # stops at the end
    assert np.abs(ref.astype(int) - rain_frames(12)).mean() < 20  # lossy, but the same picture


def test_frame_folder_natural_order_grey_and_errors(tmp_path):
    frames = rain_frames(11, 8, 10, seed=1)
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, f in enumerate(frames):  # unpadded numbers: f10 must come after f9
        iio.imwrite(folder / f"f{i}.png", f)
    (folder / "notes.txt").write_text("not a frame")
    assert [p.name for p in vio.frame_files(folder)][8:] == ["f8.png", "f9.png", "f10.png"]
    assert vio.count_frames(folder) == 11
    assert np.array_equal(vio.read_frames(folder, 2, 5), frames[2:7])

    grey = tmp_path / "grey"
    grey.mkdir()
    iio.imwrite(grey / "0.png", frames[0, :, :, 0])
    assert np.array_equal(vio.read_frames(grey)[0], np.repeat(frames[0, :, :, :1], 3, axis=2))

    deep = tmp_path / "deep"
    deep.mkdir()
    iio.imwrite(deep / "0.png", np.zeros((8, 10), np.uint16))
    with pytest.raises(ValueError, match=r"0\.png.*8-bit"):
        vio.read_frames(deep)
    iio.imwrite(folder / "f99.png", np.zeros((9, 10, 3), np.uint8))
    with pytest.raises(ValueError, match=r"f99\.png: frame 11 is \(9, 10\)"):
        vio.read_frames(folder)
    with pytest.raises(FileNotFoundError, match="nope"):
        vio.count_frames(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="not a video file"):
        vio.read_frames(tmp_path / "x.txt")


def test_frame_cache_bands_and_cleanup(tmp_path):
    frames = rain_frames(5, 7, 9)
    cache = mio.FrameCache(7, 9, tmp_path)
    for f in frames:
        cache.append(f)
    assert cache.shape == (5, 7, 9, 3)
    assert np.array_equal(cache.read_rows(2, 6), frames[:, 2:6])
    assert np.array_equal(cache.frame(4), frames[4])
    with pytest.raises(ValueError, match="expected uint8"):
        cache.append(frames[0, :6])
    path = cache.path
    assert path.stat().st_size == frames.nbytes
    cache.close()
    assert not path.exists()


def test_cli_on_video_writes_png_and_json(video, tmp_path):
    out = tmp_path / "clean.png"
    assert run_cli(entry, [f"input={video}", f"output={out}", "frames=8", "start=2", f"cache_dir={tmp_path}"]) == 0
    expected, p_hat, _ = reference_clean_image(decoded(video)[2:10])
    assert np.array_equal(iio.imread(out), expected)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record == {
        "p_hat": p_hat,
        "frames": 8,
        "size": [48, 64],
        "start": 2,
        "input": str(video),
        "notebook_compat": False,
    }
    assert list(tmp_path.glob("frames-*")) == []  # the frame cache is gone


def test_cli_notebook_compat(tmp_path):
    """notebook_compat=true reaches the algorithm and the record: on a 7x10 clip crossing 128 the image is the
    notebook's (tests/make_clean/notebook_transcription.py), not the corrected one."""
    from tests.make_clean.notebook_transcription import notebook_clean_image
    from tests.make_clean.test_clean_algorithm import crossing_clip

    frames = crossing_clip(2, 15, 7, 10)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        iio.imwrite(folder / f"{i:03d}.png", f)
    out = tmp_path / "nb.png"
    assert run_cli(entry, [f"input={folder}", f"output={out}", "frames=15", "notebook_compat=true"]) == 0
    expected, p_hat = notebook_clean_image(frames)
    assert np.array_equal(iio.imread(out), expected)
    record = json.loads(out.with_suffix(".json").read_text())
    assert (record["p_hat"], record["notebook_compat"]) == (p_hat, True)
    assert p_hat != reference_clean_image(frames)[1]  # this clip's slip changes the percentile


def test_cli_on_folder_with_density_default(tmp_path):
    frames = rain_frames(24, 10, 12, seed=2)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        iio.imwrite(folder / f"{i:03d}.png", f)
    out = tmp_path / "sparse.png"
    assert run_cli(entry, [f"input={folder}", f"output={out}", "density=sparse"]) == 0  # sparse: 20 frames
    expected, p_hat, _ = reference_clean_image(frames[:20])
    assert np.array_equal(iio.imread(out), expected)
    assert json.loads(out.with_suffix(".json").read_text())["frames"] == 20
    with pytest.warns(UserWarning, match="only 24 frames from start=0, 100 requested"):
        assert run_cli(entry, [f"input={folder}", f"output={tmp_path / 'normal.png'}"]) == 0
    assert json.loads((tmp_path / "normal.json").read_text())["frames"] == 24


@pytest.mark.parametrize(
    "args,message",
    [
        (["output=o.png"], "missing input="),
        (["input=x", "output=o.png", "frames=many"], "frames=many: expected an integer"),
        (["input=x", "output=o.png", "frames=2.5"], "frames=2.5: expected an integer"),
        (["input=x", "output=o.png", "density=heavy"], "density=heavy: choose one of sparse, normal, dense"),
        (["input=x", "output=o.png", "+colour=red"], "unknown option 'colour'"),
        (["input=x", "output=o.png", "start=null"], "start=null: expected a value"),
        (["input={video}", "output=o.jpg"], "give a file name ending in .png"),
        (["input={video}", "output={tmp}/o.png", "frames=13"], "has only 12 frames from start=0, 13 requested"),
        (["input={tmp}/missing.mp4", "output={tmp}/o.png"], "missing.mp4: rain clip not found"),
    ],
)
def test_cli_errors_name_the_problem(args, message, video, tmp_path, capsys):
    args = [a.format(video=video, tmp=tmp_path) for a in args]
    assert run_cli(entry, args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,message",
    [
        (["input=x", "output=o.png", "colour=red"], "Could not override 'colour'"),  # Hydra: not a key of the config
        (["input", "output=o.png"], "Error parsing override 'input'"),  # Hydra: not key=value
        (["input=x", "output=o.png", "+start=3"], "Could not append to config. An item is already at 'start'"),
    ],
)
def test_hydra_rejects_unknown_keys_and_malformed_words(args, message, capsys):
    """Hydra's own errors (exit status 1): nothing is silently dropped or stripped (no key, no '+')."""
    assert run_cli(entry, args) == 1
    assert message in capsys.readouterr().err


def test_config_defaults_match_the_code():
    from src.make_clean.algorithm import BAND_PIXELS

    for name in ("make_clean", "make_clean_review"):
        assert OmegaConf.load(ROOT / "conf" / f"{name}.yaml").band_pixels == BAND_PIXELS


def test_module_entry_point(video, tmp_path):
    out = tmp_path / "m.png"
    proc = subprocess.run(
        [sys.executable, "-m", "src.make_clean", f"input={video}", f"output={out}", "frames=4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "p_hat=" in proc.stdout and out.exists() and out.with_suffix(".json").exists()
