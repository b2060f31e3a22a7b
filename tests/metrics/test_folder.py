"""Folder scoring: file matching, reading (8/16-bit PNG, gray, RGBA, JPEG), collected errors, table text."""

from __future__ import annotations

import logging

import imageio.v3 as iio
import numpy as np
import png  # pypng, to write 16-bit colour PNGs (Pillow cannot)
import pytest

from src.metrics.folder import format_table, read_rgb, score_folders
from tests.metrics.protocol_reference import image_pairs, reference_scores


def _u8(x: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def _write_png16(path, img16: np.ndarray) -> None:
    h, w, c = img16.shape
    png.Writer(w, h, bitdepth=16, greyscale=False).write(open(path, "wb"), img16.reshape(h, w * c).tolist())


@pytest.fixture(scope="module")
def u8_pairs():
    return [(_u8(p), _u8(g)) for p, g in image_pairs()]


def _check_scores(report, name, pred01, gt01):
    want = reference_scores(pred01, gt01)
    for protocol, measures in want.items():
        for measure, value in measures.items():
            assert report["per_image"][name][protocol][measure] == pytest.approx(value, abs=1e-9), (name, protocol)


def test_matching_rule_and_scores(tmp_path, u8_pairs, caplog):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    (pred_dir / "sub").mkdir(parents=True)
    (gt_dir / "sub").mkdir(parents=True)
    (p0, g0), (p1, g1) = u8_pairs
    iio.imwrite(pred_dir / "000.png", p0)
    iio.imwrite(gt_dir / "000gt.png", g0)  # SPA-Data style: ground truth = name + "gt"
    rgba = np.concatenate([p1, np.full(p1.shape[:2] + (1,), 7, np.uint8)], axis=2)
    iio.imwrite(pred_dir / "sub" / "001.png", rgba)  # alpha dropped
    g16 = (np.random.default_rng(0).integers(0, 65536, g1.shape)).astype(np.uint16)
    _write_png16(gt_dir / "sub" / "001.png", g16)  # 16-bit colour ground truth, read at full precision
    gray = p0[:, :, 1]
    iio.imwrite(pred_dir / "002.png", gray)  # grayscale prediction -> 3 channels
    iio.imwrite(gt_dir / "002_clean.png", g0)

    with caplog.at_level(logging.WARNING, logger="src.metrics.folder"):
        report = score_folders(pred_dir, gt_dir)
    assert report["n_images"] == 3
    assert sorted(report["per_image"]) == ["000", "002", "sub/001"]
    _check_scores(report, "000", p0 / 255.0, g0 / 255.0)
    _check_scores(report, "sub/001", p1 / 255.0, g16 / 65535.0)
    _check_scores(report, "002", np.repeat(gray[:, :, None], 3, 2) / 255.0, g0 / 255.0)
    assert "1 grayscale" in caplog.text and "002.png" in caplog.text
    for protocol in ("spanet", "y_matlab", "rgb_uint8"):
        psnrs = [report["per_image"][n][protocol]["psnr"] for n in report["per_image"]]
        assert report["mean"][protocol]["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-12)

    text = format_table(report, title="method X")
    lines = text.splitlines()
    assert lines[0] == "method X" and lines[1].split()[:3] == ["protocol", "PSNR", "(dB)"]
    spanet = next(line for line in lines if line.startswith("spanet"))
    assert spanet.split() == ["spanet", f"{report['mean']['spanet']['psnr']:.2f}",
                              f"{report['mean']['spanet']['ssim']:.4f}", "3"]  # fmt: skip
    assert any(line.startswith("y_matlab") for line in lines) and any(line.startswith("rgb_uint8") for line in lines)


def test_explicit_pairs(tmp_path, u8_pairs):
    (p0, g0), (p1, g1) = u8_pairs
    pred_dir, gt_dir = tmp_path / "results", tmp_path / "data" / "test"
    pred_dir.mkdir()
    gt_dir.mkdir(parents=True)
    iio.imwrite(pred_dir / "a.png", p0)
    iio.imwrite(pred_dir / "b.png", p1)
    iio.imwrite(gt_dir / "clean_a.png", g0)
    iio.imwrite(gt_dir / "clean_b.png", g1)
    report = score_folders(pred_dir, None, gt_pairs=[("a.png", gt_dir / "clean_a.png"), ("b", gt_dir / "clean_b.png")])
    assert sorted(report["per_image"]) == ["a", "b"]
    _check_scores(report, "b", p1 / 255.0, g1 / 255.0)
    relative = score_folders(pred_dir, gt_dir, gt_pairs=[("a.png", "clean_a.png"), ("b.png", "clean_b.png")])
    assert relative["mean"] == report["mean"]
    with pytest.raises(ValueError, match=r"b\.png is not in the list of pairs"):
        score_folders(pred_dir, gt_dir, gt_pairs=[("a.png", "clean_a.png")])


def test_problems_are_collected_into_one_error(tmp_path, u8_pairs):
    (p0, g0), _ = u8_pairs
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    iio.imwrite(pred_dir / "ok.png", p0)
    iio.imwrite(gt_dir / "ok.png", g0)
    iio.imwrite(pred_dir / "small.png", p0[:20])
    iio.imwrite(gt_dir / "small.png", g0)
    iio.imwrite(pred_dir / "lonely.png", p0)
    iio.imwrite(gt_dir / "orphan.png", g0)
    (pred_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    iio.imwrite(gt_dir / "broken.png", g0)
    with pytest.raises(ValueError) as info:
        score_folders(pred_dir, gt_dir)
    message = str(info.value)
    assert "4 problem(s)" in message
    assert "no ground truth for prediction" in message and "lonely.png" in message
    assert "no prediction" in message and "orphan.png" in message
    assert "size mismatch" in message and "small.png is 53x20" in message
    assert "broken.png: cannot read image" in message


def test_read_rgb_jpeg_and_16bit_gray(tmp_path, u8_pairs):
    _, p0 = u8_pairs[0]  # the clean crop: JPEG keeps it close
    iio.imwrite(tmp_path / "x.jpg", p0, quality=95)
    img, gray = read_rgb(tmp_path / "x.jpg")
    assert img.shape == p0.shape and img.dtype == np.float64 and not gray
    assert np.abs(img - p0 / 255.0).mean() < 0.02  # JPEG: close to the original
    g16 = np.arange(37 * 53, dtype=np.uint16).reshape(37, 53) * 31
    iio.imwrite(tmp_path / "g16.png", g16)
    img, gray = read_rgb(tmp_path / "g16.png")
    assert gray and img.shape == (37, 53, 3)
    np.testing.assert_array_equal(img[:, :, 2], g16 / 65535.0)
    with pytest.raises(ValueError, match="missing.png: cannot read image"):
        read_rgb(tmp_path / "missing.png")
