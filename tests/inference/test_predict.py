"""src.predict end to end on tiny networks: outputs equal the network's, guards, batching, several checkpoints,
compare figures with ground truth, videos and folders of frames."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from skimage import data as skdata

from src.inference import engine
from src.inference.inputs import GroundTruthError
from src.inference.video import VideoWriter, iter_video, video_info
from src.metrics import psnr_spanet, ssim_spanet
from src.metrics.figures import GAP, heat_map
from src.utils.image_io import ImageReadError
from tests.inference.conftest import load_net, make_checkpoint, run_predict, to_tensor


def test_outputs_equal_the_network_on_each_image(tmp_path, ckpt, images):
    out = tmp_path / "out"
    written = run_predict(tmp_path, [f"ckpt_path={ckpt}", f"input={images}", f"output={out}", "save_raw=true"])
    assert {p.relative_to(out).as_posix() for p in written} == {
        f"{d}{s}{x}" for s in "abc" for d in ("", "attention/") for x in (".png", ".npy")
    }
    net = load_net(ckpt)
    for stem in "abc":
        img = iio.imread(images / f"{stem}.png")
        img = np.repeat(img[..., None], 3, 2) if img.ndim == 2 else img
        with torch.no_grad():
            ref = net(to_tensor(img))
        y = ref["out"][0].numpy().transpose(1, 2, 0)
        raw = np.load(out / f"{stem}.npy")
        np.testing.assert_allclose(raw, y, atol=1e-5)  # another batch: kernels may round differently, by CPU
        # the PNG holds the 8-bit levels of the raw output (the suite's rule, round half up in float64)
        levels = np.floor(np.clip(raw.astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
        assert np.array_equal(iio.imread(out / f"{stem}.png"), levels)
        a = ref["att"][0][0, 0].numpy()
        np.testing.assert_allclose(np.load(out / "attention" / f"{stem}.npy"), a, atol=1e-5)
        assert np.array_equal(
            iio.imread(out / "attention" / f"{stem}.png"), heat_map(np.load(out / "attention" / f"{stem}.npy"))
        )


def test_same_sized_images_are_batched_and_give_the_same_result(tmp_path, ckpt, images, monkeypatch):
    shapes = []
    forward = engine.Derainer.forward

    def spy(self, batch):
        shapes.append(tuple(batch.shape))
        return forward(self, batch)

    monkeypatch.setattr(engine.Derainer, "forward", spy)
    run_predict(
        tmp_path,
        [
            f"ckpt_path={ckpt}",
            f"input={images}",
            f"output={tmp_path / 'b4'}",
            "save_raw=true",
            "batch_size=4",
            "tile=0",
        ],
    )
    assert (2, 3, 37, 51) in shapes and (1, 3, 29, 33) in shapes  # a.png + b.png in one pass
    run_predict(
        tmp_path,
        [
            f"ckpt_path={ckpt}",
            f"input={images}",
            f"output={tmp_path / 'b1'}",
            "save_raw=true",
            "batch_size=1",
            "tile=0",
        ],
    )
    for stem in "abc":
        np.testing.assert_allclose(
            np.load(tmp_path / "b4" / f"{stem}.npy"), np.load(tmp_path / "b1" / f"{stem}.npy"), atol=1e-5
        )


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, ckpt, images):
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match=r"1 output file\(s\) exist already.*overwrite=true"):
        run_predict(tmp_path, [f"ckpt_path={ckpt}", f"input={images}", f"output={out}"])
    assert sorted(p.name for p in out.iterdir()) == ["b.png"] and (out / "b.png").read_bytes() == b"mine"
    run_predict(tmp_path, [f"ckpt_path={ckpt}", f"input={images}", f"output={out}", "overwrite=true"])
    assert iio.imread(out / "b.png").shape == (37, 51, 3)


@pytest.mark.parametrize("where", ["same", "inside"])
def test_output_in_an_input_folder_is_refused_even_with_overwrite(tmp_path, ckpt, images, where):
    before = {p.name: p.stat().st_mtime_ns for p in images.iterdir()}
    out = images if where == "same" else images / "derained"
    with pytest.raises(ValueError, match="input folder"):
        run_predict(tmp_path, [f"ckpt_path={ckpt}", f"input={images}", f"output={out}", "overwrite=true"])
    if where == "same":  # a single input file: its own folder is refused too
        with pytest.raises(ValueError, match="is the folder of the input"):
            run_predict(tmp_path, [f"ckpt_path={ckpt}", f"input={images / 'a.png'}", f"output={out}"])
    assert {p.name: p.stat().st_mtime_ns for p in images.iterdir()} == before


def test_colliding_stems_are_refused(tmp_path, ckpt, images):
    iio.imwrite(images / "a.jpg", skdata.astronaut()[:40, :40])
    with pytest.raises(ValueError, match="a.jpg and a.png|a.png and a.jpg"):
        run_predict(tmp_path, [f"ckpt_path={ckpt}", f"input={images}", f"output={tmp_path / 'out'}"])
    assert not (tmp_path / "out").exists()


def test_unreadable_files_are_named_counted_and_the_rest_derained(tmp_path, ckpt, images):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (images / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"could not read 2 of 5 input file\(s\)") as err:
        run_predict(tmp_path, [f"ckpt_path={ckpt}", f"input={images}", f"output={tmp_path / 'out'}"])
    assert "broken.png" in str(err.value) and "empty.jpg" in str(err.value)
    assert {p.name for p in (tmp_path / "out").glob("?.png")} == {"a.png", "b.png", "c.png"}


def _rain_pair(tmp_path):
    gt_dir, rain_dir = tmp_path / "gt", tmp_path / "rain"
    gt_dir.mkdir(), rain_dir.mkdir()
    rng = np.random.default_rng(0)
    for stem, crop in (("p", (slice(0, 40), slice(0, 48))), ("q", (slice(60, 100), slice(60, 108)))):
        clean = skdata.coffee()[crop]
        iio.imwrite(gt_dir / f"{stem}.png", clean)
        streaks = (rng.random(clean.shape[:2]) < 0.05)[..., None] * 120
        iio.imwrite(rain_dir / f"{stem}.png", np.clip(clean.astype(int) + streaks, 0, 255).astype(np.uint8))
    return rain_dir, gt_dir


def test_compare_figure_with_ground_truth(tmp_path, ckpt):
    rain_dir, gt_dir = _rain_pair(tmp_path)
    out = tmp_path / "out"
    run_predict(
        tmp_path,
        [f"ckpt_path={ckpt}", f"input={rain_dir}", f"output={out}", "compare=true", f"gt={gt_dir}", "protocol=spanet"],
    )
    fig = iio.imread(out / "compare" / "p.png")
    h, w = 4 * 40, 4 * 48  # narrower than MIN_PANEL_WIDTH: each pixel repeated 4 x 4
    assert fig.shape[1] == 4 * w + 3 * GAP and fig.shape[0] > h  # rain | derained | attention | gt, captions below
    panels = [fig[:h, k * (w + GAP) : k * (w + GAP) + w] for k in range(4)]
    for panel in panels:
        assert np.array_equal(panel, panel[::4, ::4].repeat(4, 0).repeat(4, 1))
    assert np.array_equal(panels[0][::4, ::4], iio.imread(rain_dir / "p.png"))
    assert np.array_equal(panels[1][::4, ::4], iio.imread(out / "p.png"))
    assert np.array_equal(panels[2][::4, ::4], iio.imread(out / "attention" / "p.png"))
    assert np.array_equal(panels[3][::4, ::4], iio.imread(gt_dir / "p.png"))
    assert (fig[h:, :w] < 128).any()  # the caption strip carries text (the scores)
    with pytest.raises(GroundTruthError, match="no ground truth for 1 input"):
        (gt_dir / "q.png").unlink()
        run_predict(
            tmp_path,
            [f"ckpt_path={ckpt}", f"input={rain_dir}", f"output={tmp_path / 'o2'}", "compare=true", f"gt={gt_dir}"],
        )


def test_scores_on_figures_are_the_protocol_scores(tmp_path):
    from src.inference.run import score

    rain_dir, gt_dir = _rain_pair(tmp_path)
    rain, gt = iio.imread(rain_dir / "p.png") / 255.0, iio.imread(gt_dir / "p.png") / 255.0
    s = score("spanet", rain, gt)
    t = lambda a: torch.from_numpy(a.transpose(2, 0, 1).copy())[None]  # noqa: E731
    assert s["psnr"] == pytest.approx(float(psnr_spanet(t(rain), t(gt))[0]))
    assert s["ssim"] == pytest.approx(float(ssim_spanet(t(rain), t(gt))[0]))
    assert s["psnr"] == pytest.approx(10 * np.log10(1 / np.mean((rain - gt) ** 2)), abs=1e-6)


def test_several_checkpoints_give_one_labelled_grid(tmp_path):
    rain_dir, gt_dir = _rain_pair(tmp_path)
    a = make_checkpoint(tmp_path / "a.ckpt", "spanet", seed=1)
    b = make_checkpoint(tmp_path / "b.ckpt", "b_a", seed=2)
    out = tmp_path / "out"
    run_predict(
        tmp_path, [f"ckpt_path=[{a},{b}]", f"input={rain_dir}", f"output={out}", f"gt={gt_dir}", "grid_cell_width=96"]
    )
    assert sorted(p.relative_to(out / "spanet").as_posix() for p in (out / "spanet").rglob("*.png")) == [
        "attention/p.png",
        "attention/q.png",
        "p.png",
        "q.png",
    ]
    assert sorted(p.name for p in (out / "b_a").iterdir()) == ["p.png", "q.png"]  # B_a has no attention
    grid = iio.imread(out / "comparison_grid.png")
    assert grid.shape[1] == 4 * 96 + 3 * GAP  # Rain | spanet | b_a | Ground truth
    from src.metrics.figures import comparison_grid

    # the same grid built directly from the written files: same layout, so same size
    cell = lambda p: iio.imread(p)  # noqa: E731
    rows = [
        (
            s,
            [
                ("Rain", cell(rain_dir / f"{s}.png"), {"psnr": 1, "ssim": 1}),
                ("spanet", cell(out / "spanet" / f"{s}.png"), {"psnr": 1, "ssim": 1}),
                ("b_a", cell(out / "b_a" / f"{s}.png"), {"psnr": 1, "ssim": 1}),
                ("Ground truth", cell(gt_dir / f"{s}.png"), None),
            ],
        )
        for s in "pq"
    ]
    ref, boxes = comparison_grid(rows, 96, "spanet")
    assert ref.shape == grid.shape
    t, left, bottom, right = boxes["q/b_a"]
    np.testing.assert_array_equal(grid[t:bottom, left:right], ref[t:bottom, left:right])


def _write_video(path, n, h, w, fps):
    frames = [
        np.clip(skdata.astronaut()[k * 3 : k * 3 + h, k * 2 : k * 2 + w], 0, 255).astype(np.uint8) for k in range(n)
    ]
    with VideoWriter(path, fps) as vw:
        for f in frames:
            vw.write(f)
    return frames


def test_video_round_trip_keeps_frame_count_rate_and_size(tmp_path, ckpt):
    src = tmp_path / "clips" / "rainy.mp4"
    src.parent.mkdir()
    _write_video(src, n=7, h=30, w=44, fps=12.5)
    out = tmp_path / "out"
    written = run_predict(
        tmp_path,
        [f"ckpt_path={ckpt}", f"input={src}", f"output={out}", "video.attention=true", "compare=true", "batch_size=3"],
    )
    assert {p.relative_to(out).as_posix() for p in written} == {"rainy.mp4", "attention/rainy.mp4", "compare/rainy.mp4"}
    for name, width in (("rainy.mp4", 44), ("attention/rainy.mp4", 44), ("compare/rainy.mp4", 3 * 4 * 44 + 2 * GAP)):
        info = video_info(out / name)
        frames = list(iter_video(out / name))
        assert len(frames) == 7 and info["fps"] == pytest.approx(12.5) and frames[0].shape[1] == width
        assert frames[0].shape[0] == 30 if "compare" not in name else frames[0].shape[0] > 4 * 30
    net = load_net(ckpt)
    decoded = list(iter_video(src))
    with torch.no_grad():
        expect = net(to_tensor(decoded[3]))["out"][0].clamp(0, 1).numpy().transpose(1, 2, 0) * 255
    got = list(iter_video(out / "rainy.mp4"))[3].astype(float)
    assert np.abs(got - expect).mean() < 4  # H.264 is lossy: a few grey levels on average


def test_folder_of_frames_becomes_a_video_in_natural_order(tmp_path, ckpt):
    frames_dir = tmp_path / "clip7"
    frames_dir.mkdir()
    for k in (1, 2, 10, 3, 4):  # natural order: 1 2 3 4 10
        iio.imwrite(frames_dir / f"frame{k}.png", np.full((29, 33, 3), 20 * k, np.uint8))
    out = tmp_path / "out"
    run_predict(
        tmp_path, [f"ckpt_path={ckpt}", f"input={frames_dir}", f"output={out}", "video.frames=true", "video.fps=10"]
    )
    info, frames = video_info(out / "clip7.mp4"), list(iter_video(out / "clip7.mp4"))
    assert len(frames) == 5 and info["fps"] == pytest.approx(10) and frames[0].shape == (29, 33, 3)
    net = load_net(ckpt)
    with torch.no_grad():
        means = [
            float(net(torch.full((1, 3, 29, 33), 20 * k / 255))["out"].clamp(0, 1).mean() * 255)
            for k in (1, 2, 3, 4, 10)
        ]
    np.testing.assert_allclose([f.mean() for f in frames], means, atol=3)
