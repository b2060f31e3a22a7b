"""Property-based fuzzing (hypothesis): random bytes, truncated images, random list-file lines, random config
values and damaged checkpoints go into every reader, the data checker and checkpoint loading.

The property everywhere: the call works, or raises the suite's own kind of error (``ValueError`` /
``OSError``, including ``ImageReadError`` and ``FileNotFoundError``) whose message names the input (the file,
``file:line`` or the config key) -- never another exception type, never a message without the culprit. Each
example has a deadline, so a hang fails too. The whole module runs in a few tens of seconds.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from src.data.check import check_module
from src.data.paired_module import PairedDataModule
from src.data.readers import read_layout, read_pair_list, split_groups
from src.data.transforms import build_train_transform
from src.utils.checkpoint import read_checkpoint
from src.utils.image_io import read_array

FUZZ = settings(
    max_examples=40, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)
SUITE_ERRORS = (ValueError, OSError)


def _image_bytes(fmt: str, mode: str = "RGB", size=(9, 7)) -> bytes:
    rng = np.random.default_rng(0)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8).squeeze()
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format=fmt)
    return buf.getvalue()


IMAGES = {
    ext: _image_bytes(fmt)
    for ext, fmt in ((".png", "PNG"), (".jpg", "JPEG"), (".bmp", "BMP"), (".tif", "TIFF"), (".webp", "WEBP"))
}


def _expect_named(call, name: str):
    """Run ``call``; an error must be one of the suite's kinds and name ``name``."""
    try:
        return call()
    except SUITE_ERRORS as exc:
        assert name in str(exc), f"{type(exc).__name__} does not name {name!r}: {exc}"
        return exc


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


# --- image files --------------------------------------------------------------------------------------------
@FUZZ
@given(data=st.binary(max_size=600), ext=st.sampled_from(sorted(IMAGES)))
def test_random_bytes_as_image(folder, data, ext):
    path = folder / f"random{ext}"
    path.write_bytes(data)
    out = _expect_named(lambda: read_array(path), str(path))
    if isinstance(out, np.ndarray):
        assert out.ndim == 3 and out.shape[2] == 3 and out.dtype in (np.uint8, np.uint16)


@FUZZ
@given(ext=st.sampled_from(sorted(IMAGES)), cut=st.floats(0, 1, exclude_max=True), flip=st.integers(0, 10**6))
def test_truncated_or_damaged_image(folder, ext, cut, flip):
    whole = bytearray(IMAGES[ext])
    damaged = whole[: int(cut * len(whole))]
    if damaged and flip % 2:  # and, half of the time, one byte changed
        damaged[flip % len(damaged)] ^= 0xA5
    path = folder / f"damaged{ext}"
    path.write_bytes(bytes(damaged))
    out = _expect_named(lambda: read_array(path), str(path))
    if isinstance(out, np.ndarray):
        assert out.shape == (7, 9, 3)


# --- list files and folder layouts ------------------------------------------------------------------------
LINE = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.builds(
        lambda a, b: f"{a} {b}",
        st.sampled_from(["/real_world/a.png", "./x.png", "a b", "../up.png", ""]),
        st.sampled_from(["/real_world_gt/a.png", "c.png", "", "\t"]),
    ),
)


@FUZZ
@given(lines=st.lists(LINE, max_size=8), raw=st.binary(max_size=40))
def test_random_list_file_lines(folder, lines, raw):
    (folder / "real_world").mkdir(exist_ok=True)
    (folder / "real_world_gt").mkdir(exist_ok=True)
    (folder / "real_world" / "a.png").write_bytes(IMAGES[".png"])
    (folder / "real_world_gt" / "a.png").write_bytes(IMAGES[".png"])
    list_file = folder / "list.txt"
    list_file.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + b"\n" + raw)
    out = _expect_named(lambda: read_pair_list(str(list_file), str(folder)), str(list_file))
    if not isinstance(out, Exception):
        text = list_file.read_bytes().decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        assert len(out.pairs) + len(out.missing) == sum(1 for ln in text.split("\n") if ln.split())


@FUZZ
@given(
    names=st.lists(st.text(alphabet="abcnorain-_0123456789x.", min_size=1, max_size=14), max_size=6),
    layout=st.sampled_from(["rain100", "rain200", "same_names", "rain1400", "side_by_side"]),
)
def test_random_file_names_in_every_layout(names, layout):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for sub in ("", "rain/X2", "norain", "input", "target", "rainy_image", "ground_truth"):
            (root / sub).mkdir(parents=True, exist_ok=True)
            for n in names:
                if n not in (".", ".."):
                    (root / sub / (n + ".png")).write_bytes(b"")
        out = _expect_named(lambda: read_layout(str(root), layout), str(root))
        if not isinstance(out, Exception):
            assert all(os.path.exists(p.rain) and os.path.exists(p.clean) for p in out.pairs)


# --- the checker ------------------------------------------------------------------------------------------
@FUZZ
@given(
    files=st.lists(
        st.tuples(
            st.sampled_from("abc"),
            st.sampled_from(["input", "target"]),
            st.one_of(st.binary(max_size=300), st.sampled_from(list(IMAGES.values()))),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_checker_reports_instead_of_raising(files):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for sub in ("input", "target"):
            (root / sub).mkdir()
        for name, sub, data in files:
            (root / sub / f"{name}.png").write_bytes(data)
        report = check_module(PairedDataModule(str(root), "same_names"), workers=1, progress=False)
        for problem in report["problems"]:
            assert str(root) in problem
        if "pairs" in report:
            assert report["pairs"]["pairs"] <= 3


# --- config values ----------------------------------------------------------------------------------------
ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.integers(-2, 4), max_size=3),
)


@FUZZ
@given(
    key=st.sampled_from(["layout", "order", "on_bad_file", "val_holdout", "val_max", "orientation_samples"]), value=ANY
)
def test_random_data_config_values(folder, key, value):
    kwargs = {"layout": "same_names", key: value}
    _expect_named(lambda: PairedDataModule(str(folder), **kwargs), key)  # works, or an error naming the key


@FUZZ
@given(crop=ANY, scale=ANY, resized_crop=ANY)
def test_random_transform_config_values(crop, scale, resized_crop):
    try:
        t = build_train_transform(crop=crop, scale=scale, resized_crop=resized_crop)
    except (ValueError, TypeError) as exc:
        assert any(k in str(exc) for k in ("crop", "scale", "resized_crop", "size")), exc
        return
    if t is not None:
        rain = np.zeros((300, 300, 3), np.uint8)
        try:
            a, b = t(rain, rain)
        except ValueError as exc:
            assert "crop" in str(exc) or "size" in str(exc) or "scale" in str(exc), exc
            return
        assert a.shape == b.shape


@FUZZ
@given(holdout=ANY)
def test_random_holdout_values(holdout):
    from src.data.readers import Pair

    pairs = [Pair(f"r{i}", f"c{i}", str(i), group=str(i % 4)) for i in range(8)]
    try:
        kept, held = split_groups(pairs, holdout, key="val_holdout")
    except (ValueError, TypeError) as exc:
        assert "val_holdout" in str(exc), exc
        return
    assert sorted(kept + held) == sorted(pairs)
    assert not {p.group for p in kept} & {p.group for p in held}


# --- checkpoints ------------------------------------------------------------------------------------------
def _ckpt_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save({"state_dict": {"net.w": torch.arange(6.0)}, "global_step": 3}, buf)
    return buf.getvalue()


CKPT = _ckpt_bytes()


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=400), st.builds(lambda c: CKPT[: int(c * len(CKPT))], st.floats(0, 1, exclude_max=True))
    )
)
def test_damaged_checkpoint_files(folder, data):
    path = folder / "damaged.ckpt"
    path.write_bytes(data)
    marker = folder / "pwned"
    out = _expect_named(lambda: read_checkpoint(path), str(path))
    assert not marker.exists()
    if not isinstance(out, Exception):
        assert isinstance(out.contents, dict)
