"""One image reader (src/utils/image_io.py): training, scoring and prediction read every file of a corpus of odd
files identically -- the same array, or the same error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import png  # pypng, to write 16-bit PNGs with colour / alpha
import pytest
import torch
from PIL import Image

import src.inference.inputs as predict
from src.data.paired import load_pair, to_tensor
from src.data.readers import Pair
from src.metrics.folder import _PairReader, read_rgb
from src.utils.image_io import ImageNotFoundError, ImageReadError, decode, probe, read_array, read_image, to_float

H, W = 13, 17


def _rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _png16(path: Path, arr: np.ndarray, greyscale: bool, alpha: bool) -> None:
    png.Writer(W, H, bitdepth=16, greyscale=greyscale, alpha=alpha).write(open(path, "wb"), arr.reshape(H, -1).tolist())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, tuple[Path, object]]:
    """name -> (file, expected): the exact uint RGB array, "lossy" (compare with Pillow's own RGB conversion), or
    an exception type."""
    d = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    out: dict[str, tuple[Path, object]] = {}
    rgb16 = rng.integers(0, 65536, (H, W, 3)).astype(np.uint16)
    _png16(d / "rgb16.png", rgb16, greyscale=False, alpha=False)
    out["rgb16"] = (d / "rgb16.png", rgb16)
    rgba16 = rng.integers(0, 65536, (H, W, 4)).astype(np.uint16)
    _png16(d / "rgba16.png", rgba16, greyscale=False, alpha=True)
    out["rgba16"] = (d / "rgba16.png", rgba16[:, :, :3])
    grey16 = rng.integers(0, 65536, (H, W)).astype(np.uint16)
    _png16(d / "grey16.png", grey16, greyscale=True, alpha=False)
    out["grey16"] = (d / "grey16.png", np.repeat(grey16[:, :, None], 3, 2))
    greya16 = rng.integers(0, 65536, (H, W, 2)).astype(np.uint16)
    _png16(d / "greya16.png", greya16, greyscale=True, alpha=True)
    out["grey+alpha16"] = (d / "greya16.png", np.repeat(greya16[:, :, :1], 3, 2))
    grey = _rgb(1)[:, :, 0]
    Image.fromarray(grey).save(d / "grey.png")
    out["grey"] = (d / "grey.png", np.repeat(grey[:, :, None], 3, 2))
    rgba = np.dstack([_rgb(2), np.full((H, W), 9, np.uint8)])
    Image.fromarray(rgba).save(d / "rgba.png")
    out["rgba"] = (d / "rgba.png", rgba[:, :, :3])
    palette = Image.fromarray(_rgb(3)).quantize(colors=7)
    palette.save(d / "palette.png")
    out["palette"] = (d / "palette.png", np.asarray(palette.convert("RGB")))
    Image.fromarray(_rgb(4)).save(d / "photo.jpg", quality=90)
    out["jpeg"] = (d / "photo.jpg", "lossy")
    Image.fromarray(_rgb(5)[:, :, 0]).save(d / "grey.jpg", quality=90)
    out["grey jpeg"] = (d / "grey.jpg", "lossy")
    Image.fromarray(_rgb(6)).save(d / "photo.webp", quality=80)
    out["webp"] = (d / "photo.webp", "lossy")
    Image.fromarray(_rgb(7)).save(d / "whole.png")
    data = (d / "whole.png").read_bytes()
    (d / "truncated.png").write_bytes(data[: len(data) // 2])
    out["truncated"] = (d / "truncated.png", ImageReadError)
    (d / "text.png").write_text("not an image")
    out["not an image"] = (d / "text.png", ImageReadError)
    out["missing"] = (d / "missing.png", ImageNotFoundError)
    return out


def _training(path: Path) -> np.ndarray:
    rain, clean = load_pair(Pair(name="x", rain=str(path), clean=str(path)))
    assert np.array_equal(rain, clean)
    return to_tensor(rain).numpy().transpose(1, 2, 0)  # what the data set yields, float32 (H, W, 3)


def _scoring(path: Path) -> np.ndarray:
    item = _PairReader([("x", path, path)], score=False)[0]  # what a folder-scoring worker reads
    try:
        img, _ = read_rgb(path)
    except ImageReadError as err:
        assert item["problems"] == [str(err)] * 2  # the worker reports the reader's message
        raise
    assert np.array_equal(to_float(item["images"][0].numpy().transpose(1, 2, 0), np.float64), img)
    return img


def _prediction(path: Path) -> np.ndarray:
    return predict.read_input(path)  # what src.predict derains


def _outcome(fn, path):
    try:
        return fn(path)
    except Exception as err:  # noqa: BLE001 -- compared below
        return err


@pytest.mark.parametrize(
    "name",
    [
        "rgb16",
        "rgba16",
        "grey16",
        "grey+alpha16",
        "grey",
        "rgba",
        "palette",
        "jpeg",
        "grey jpeg",
        "webp",
        "truncated",
        "not an image",
        "missing",
    ],
)
def test_three_paths_read_identically(corpus, name):
    path, expected = corpus[name]
    results = {fn.__name__: _outcome(fn, path) for fn in (_training, _scoring, _prediction)}
    if isinstance(expected, type):  # the same error, with the same message, everywhere
        errors = list(results.values())
        assert all(type(e) is expected for e in errors), results
        assert len({str(e) for e in errors}) == 1 and str(errors[0]).startswith(f"{path}: cannot read image")
        assert isinstance(errors[0], (OSError)) and isinstance(errors[0], ValueError)
        return
    raw = read_array(path)
    assert raw.shape == (H, W, 3) and raw.dtype == (np.uint16 if "16" in name else np.uint8)
    if isinstance(expected, np.ndarray):
        assert np.array_equal(raw, expected)
    else:  # lossy formats: what Pillow itself decodes, converted to RGB
        with Image.open(path) as im:
            assert np.array_equal(raw, np.asarray(im.convert("RGB")))
    assert np.array_equal(results["_training"], to_float(raw, np.float32))
    assert np.array_equal(results["_prediction"], to_float(raw, np.float32))
    assert np.array_equal(results["_scoring"], to_float(raw, np.float64))
    scale = 65535.0 if raw.dtype == np.uint16 else 255.0
    assert np.array_equal(np.rint(results["_scoring"] * scale).astype(raw.dtype), raw)


def test_predict_and_scoring_use_the_reader_and_its_mode_table(corpus):
    assert predict.decode is decode and predict.to_float is to_float  # one decode: the array and its mode note
    assert decode(corpus["rgb16"][0]).note is None
    assert decode(corpus["grey"][0]).note == "grayscale (L) -> replicated to 3 RGB channels"
    assert decode(corpus["rgba"][0]).note == "RGBA -> alpha channel dropped (not composited)"
    assert decode(corpus["palette"][0]).note == "P -> converted to RGB"
    assert decode(corpus["grey16"][0]).grey and not decode(corpus["palette"][0]).grey
    assert read_rgb(corpus["grey"][0])[1] and not read_rgb(corpus["rgba"][0])[1]
    with pytest.raises(FileNotFoundError, match="missing.png: cannot read image"):
        decode(corpus["missing"][0])


def test_float_images_are_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.float32), mode="F").save(tmp_path / "f.tif")
    for fn in (read_array, read_rgb, read_image):
        with pytest.raises(ImageReadError, match="f.tif: cannot read image .*floating-point"):
            fn(tmp_path / "f.tif")


def test_to_float_scales():
    assert to_float(np.array([255], np.uint8), np.float64)[0] == 1.0
    assert to_float(np.array([65535], np.uint16))[0] == np.float32(1.0)
    assert torch.equal(
        torch.from_numpy(to_float(np.arange(256, dtype=np.uint8), np.float64)),
        torch.arange(256, dtype=torch.float64) / 255.0,
    )


def _png_claiming(path: Path, width: int, height: int) -> None:
    """A valid PNG header claiming width x height pixels, with almost no data behind it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_an_image_read_error_naming_the_claimed_size(tmp_path):
    _png_claiming(tmp_path / "bomb.png", 50000, 50000)
    for fn in (decode, read_rgb, probe):
        with pytest.raises(
            ImageReadError,
            match=r"bomb.png: cannot read image \(it claims 50000x50000 pixels "
            r"\(2500 megapixels\), more than 179 megapixels",
        ):
            fn(tmp_path / "bomb.png")


def test_probe_reads_sizes_from_headers_and_finds_truncated_files(corpus, tmp_path):
    for name in ("rgb16", "grey", "palette", "jpeg", "webp"):
        assert probe(corpus[name][0]) == (W, H)
    for name in ("truncated", "not an image", "missing"):
        with pytest.raises(corpus[name][1], match="cannot read image"):
            probe(corpus[name][0])
    data = corpus["jpeg"][0].read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) - 40])
    (tmp_path / "tail.png").write_bytes(corpus["grey"][0].read_bytes() + b"trailing bytes")  # decodes: accepted
    with pytest.raises(ImageReadError, match="cut.jpg: cannot read image .*truncated"):
        probe(tmp_path / "cut.jpg")
    assert probe(tmp_path / "tail.png") == (W, H)
