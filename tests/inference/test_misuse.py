"""src.predict under misuse: a claimed output folder, a decompression bomb among good images, bad ground truth,
a video cut short, symbolic links in the output folder, impossible options. Nothing the user owns is lost, and
nothing is written before a refusal."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import zlib

import imageio.v2 as iio2
import imageio.v3 as iio
import numpy as np
import pytest
from skimage import data as skdata

from src.inference.inputs import GroundTruthError
from src.inference.video import VideoReadError, declared_frames, iter_video
from src.utils.claim import OutputInUseError, _start_ticks
from src.utils.errors import ConfigValueError
from src.utils.image_io import ImageReadError
from tests.inference.conftest import run_predict


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _claim_of(proc) -> bytes:
    return json.dumps(
        {"host": socket.gethostname(), "pid": proc.pid, "start": _start_ticks(proc.pid), "since": "now"}
    ).encode()


def test_a_folder_claimed_by_a_running_process_is_refused_and_a_dead_holder_is_no_claim(tmp_path, ckpt, images):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".claim").write_bytes(_claim_of(holder))
        with pytest.raises(OutputInUseError, match=f"output folder {out} is being written by pid {holder.pid}"):
            run_predict(tmp_path, [f"ckpt_path={ckpt}", f"input={images}", f"output={out}", "overwrite=true"])
        assert _files(out) == {".claim": _claim_of(holder)}  # nothing written, the claim kept
    finally:
        holder.kill()
        holder.wait()
    written = run_predict(tmp_path, [f"ckpt_path={ckpt}", f"input={images}", f"output={out}"])  # stale: taken over
    assert {p.name for p in written} >= {"a.png", "b.png", "c.png"} and not (out / ".claim").exists()


def _bomb_png(path, width=50000, height=50000):
    """A valid PNG header claiming width x height pixels, with almost no data behind it."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_named_and_the_good_images_derained(tmp_path, ckpt, images):
    _bomb_png(images / "bomb.png")
    out = tmp_path / "out"
    with pytest.raises(ImageReadError, match=r"could not read 1 of 4 input file\(s\)") as err:
        run_predict(tmp_path, [f"ckpt_path={ckpt}", f"input={images}", f"output={out}"])
    assert "bomb.png: cannot read image (it claims 50000x50000 pixels" in str(err.value)
    assert {p.name for p in out.glob("*.png")} == {"a.png", "b.png", "c.png"}


@pytest.mark.parametrize("bad", ["truncated", "mis-sized"])
def test_bad_ground_truth_is_refused_before_anything_is_written(tmp_path, ckpt, images, bad):
    gt = tmp_path / "gt"
    gt.mkdir()
    for stem in "abc":
        iio.imwrite(gt / f"{stem}.png", iio.imread(images / f"{stem}.png"))
    if bad == "truncated":  # c.png comes last: its batch would run after a.png and b.png were written
        data = (gt / "c.png").read_bytes()
        (gt / "c.png").write_bytes(data[: len(data) * 2 // 3])
    else:
        iio.imwrite(gt / "c.png", skdata.camera()[:30, :33])
    out = tmp_path / "out"
    expected = "c.png: cannot read image" if bad == "truncated" else "c.png is 33x30, its input .*c.png is 33x29"
    with pytest.raises(GroundTruthError, match=expected):
        run_predict(tmp_path, [f"ckpt_path={ckpt}", f"input={images}", f"output={out}", f"gt={gt}", "compare=true"])
    assert not out.exists()


def test_a_video_cut_short_reports_frames_read_and_declared(tmp_path, ckpt, caplog):
    frames = np.random.default_rng(0).integers(0, 256, (60, 32, 48, 3), dtype=np.uint8)  # frames of similar size
    whole = tmp_path / "whole.mp4"
    with iio2.get_writer(
        whole, format="FFMPEG", fps=25, macro_block_size=1, ffmpeg_params=["-movflags", "+faststart"]
    ) as w:  # index first: a cut file still opens
        for f in frames:
            w.append_data(f)
    data = whole.read_bytes()
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "cut.mp4").write_bytes(data[: len(data) // 2])
    n_read = sum(1 for _ in iter_video(clips / "cut.mp4"))
    assert declared_frames(whole) == declared_frames(clips / "cut.mp4") == 60 and 0 < n_read < 60
    out = tmp_path / "out"
    with (
        caplog.at_level("WARNING"),
        pytest.raises(VideoReadError, match=f"read {n_read} of the 60 frames its container declares"),
    ):
        run_predict(tmp_path, [f"ckpt_path={ckpt}", f"input={clips / 'cut.mp4'}", f"output={out}"])
    assert f"read {n_read} of the 60 frames" in caplog.text
    assert sum(1 for _ in iter_video(out / "cut.mp4")) == n_read  # what could be read was derained


def test_a_container_without_a_frame_count_is_not_a_partial_result(tmp_path, ckpt):
    clip = tmp_path / "clips" / "clip.mkv"
    clip.parent.mkdir()
    iio.imwrite(
        clip,
        np.stack([skdata.astronaut()[k : k + 32, :48] for k in range(5)]),
        plugin="FFMPEG",
        fps=10,
        codec="libx264",
        macro_block_size=1,
    )
    assert declared_frames(clip) is None
    written = run_predict(tmp_path, [f"ckpt_path={ckpt}", f"input={clip}", f"output={tmp_path / 'out'}"])
    assert [p.name for p in written] == ["clip.mp4"]


@pytest.mark.parametrize("link", ["output file", "dangling output file", "side-file folder"])
def test_symbolic_links_in_the_output_folder_are_refused_even_with_overwrite(tmp_path, ckpt, images, link):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.png").write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    if link == "output file":
        os.symlink(elsewhere / "mine.png", out / "a.png")
    elif link == "dangling output file":
        os.symlink(elsewhere / "new.png", out / "a.png")
    else:
        os.symlink(elsewhere, out / "attention")
    for overwrite in ("false", "true"):
        with pytest.raises(ConfigValueError, match=r"symbolic link.*-> .*elsewhere"):
            run_predict(tmp_path, [f"ckpt_path={ckpt}", f"input={images}", f"output={out}", f"overwrite={overwrite}"])
    assert _files(elsewhere) == {"mine.png": b"precious"}
    assert sorted(p.name for p in out.iterdir()) == [next(iter(out.iterdir())).name]  # only the link


def test_the_output_folder_itself_may_be_a_link(tmp_path, ckpt, images):
    real = tmp_path / "scratch"
    real.mkdir()
    os.symlink(real, tmp_path / "out")
    run_predict(tmp_path, [f"ckpt_path={ckpt}", f"input={images}", f"output={tmp_path / 'out'}"])
    assert {p.name for p in real.glob("*.png")} == {"a.png", "b.png", "c.png"}


@pytest.mark.parametrize(
    "option, key",
    [
        ("tile=-1", "tile"),
        ("tile=whole", "tile"),
        ("tile=64", "tile=64"),
        ("tile_overlap=-8", "tile_overlap"),
        ("batch_size=0", "batch_size"),
        ("video.fps=0", "video.fps"),
        ("protocol=psnr", "protocol"),
        ("half=true", "half=true"),
        ("device=tpu", "device"),
    ],
)
def test_impossible_options_are_refused_before_anything_is_read(tmp_path, option, key):
    out = tmp_path / "out"
    with pytest.raises(ConfigValueError, match=f"^{key}"):
        run_predict(
            tmp_path, [f"ckpt_path={tmp_path / 'none.ckpt'}", f"input={tmp_path / 'none'}", f"output={out}", option]
        )
    assert not out.exists()


def test_tile_zero_and_null_mean_whole_images(tmp_path, ckpt, images):
    for k, tile in enumerate(("0", "null")):
        run_predict(
            tmp_path,
            [f"ckpt_path={ckpt}", f"input={images}", f"output={tmp_path / str(k)}", f"tile={tile}", "save_raw=true"],
        )
    np.testing.assert_array_equal(np.load(tmp_path / "0" / "a.npy"), np.load(tmp_path / "1" / "a.npy"))
