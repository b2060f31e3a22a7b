"""The vectorised clean-image algorithm against the per-pixel notebook reference and plain numpy."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from src.make_clean import algorithm as A
from src.make_clean.reference import reference_clean_image, reference_luma


def clip(seed: int, n: int, h: int, w: int, levels: int = 256, grey: bool = False) -> np.ndarray:
    """Random uint8 RGB frames; few ``levels`` make many ties in the per-pixel mode."""
    rng = np.random.default_rng(seed)
    values = np.sort(rng.choice(256, size=levels, replace=False)).astype(np.uint8)
    idx = rng.integers(0, levels, size=(n, h, w, 1 if grey else 3))
    frames = values[idx]
    return np.repeat(frames, 3, axis=3) if grey else frames


CASES = [  # (seed, N, H, W, levels, grey, band_pixels)
    (0, 1, 5, 7, 256, False, 8),  # N = 1
    (1, 2, 3, 4, 2, False, 4),  # N = 2, two levels: ties everywhere
    (2, 2, 6, 5, 256, True, 7),
    (3, 3, 7, 5, 3, False, 5),  # N = 3: a lone mode at sorted index 1 votes for no integer p
    (4, 7, 9, 11, 2, True, 13),  # odd sizes, grey (R = G = B hits float-truncated luma values)
    (5, 20, 8, 9, 5, False, 9),
    (6, 33, 4, 13, 256, False, 8192),
    (7, 100, 5, 6, 4, False, 11),  # 7 / 100 * 100 = 7.000000000000001: float bounds matter
    (8, 101, 4, 5, 256, True, 20),  # N = 101: numpy's virtual index for some p is 1 ulp below an integer
    (9, 260, 3, 5, 6, False, 15),  # more than 255 frames: count_less widens its byte lanes
]


@pytest.mark.parametrize("seed,n,h,w,levels,grey,band", CASES)
def test_clean_image_equals_per_pixel_reference(seed, n, h, w, levels, grey, band):
    frames = clip(seed, n, h, w, levels, grey)
    image, p_hat, votes = reference_clean_image(frames)
    result = A.clean_image(frames, band_pixels=band)
    assert result.p_hat == p_hat
    assert result.votes.tolist() == votes
    assert result.image.dtype == np.uint8 and result.image.shape == (h, w, 3)
    assert np.array_equal(result.image, image)
    assert result.frames == n


def test_rain_like_clip_recovers_background():
    """A static background with bright streak pixels in 20% of the frames: the chosen percentile sits
    below the rain, and the clean image equals the background where the rain never covers most frames."""
    rng = np.random.default_rng(11)
    bg = rng.integers(20, 200, size=(6, 8, 3), dtype=np.uint8)
    frames = np.repeat(bg[None], 40, axis=0)
    rain = rng.random((40, 6, 8)) < 0.2
    frames[rain] = 250
    image, p_hat, _ = reference_clean_image(frames)
    result = A.clean_image(frames, band_pixels=16)
    assert result.p_hat == p_hat and np.array_equal(result.image, image)
    assert np.array_equal(result.image, bg)


def _colours() -> np.ndarray:
    """All 256 greys and 50,000 random colours, uint8 (50256, 3)."""
    rng = np.random.default_rng(0)
    grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    return np.concatenate([grey, rng.integers(0, 256, size=(50000, 3), dtype=np.uint8)])


def test_luma_is_the_exact_integer_value():
    """luma = floor((299 R + 587 G + 114 B) / 1000), against Python fractions (exact, machine-independent), and
    against Python integers on all 2^24 colours."""
    colours = _colours()
    exact = [math.floor(Fraction(299 * r + 587 * g + 114 * b, 1000)) for r, g, b in colours.tolist()]
    assert A.luma(colours.reshape(4, 1, -1, 3)).ravel().tolist() == exact
    assert reference_luma(colours).tolist() == exact
    assert A.luma(colours[:256]).tolist() == list(range(256))  # every grey g -> g
    assert A.luma(np.array([1, 1, 1], np.uint8)) == 1  # the float expression gives 0.9999999999999999 -> 0
    assert A.luma(np.array([255, 0, 0], np.uint8)) == 76  # 76.245
    assert A.luma(np.array([0, 72, 24], np.uint8)) == 45  # 42.264 + 2.736 = 45 exactly
    g, b = (v.ravel() for v in np.meshgrid(np.arange(256), np.arange(256), indexing="ij"))
    for r in range(256):  # every colour, 65,536 at a time
        rgb = np.stack([np.full_like(g, r), g, b], axis=-1).astype(np.uint8)
        assert np.array_equal(A.luma(rgb), (299 * r + 587 * g + 114 * b) // 1000), r


def test_notebook_float_luma_in_its_documented_order():
    """notebook_compat's luma: ((0.299 R) + (0.587 G)) + (0.114 B) with each operation rounded once, computed here
    with Python floats (IEEE double, one operation at a time, no BLAS); it truncates 3,464 colours one level below
    the exact luma, e.g. grey 1 -> 0."""
    colours = _colours()
    expected = [((0.299 * r) + (0.587 * g)) + (0.114 * b) for r, g, b in colours.tolist()]
    assert A.notebook_float_luma(colours).tolist() == expected
    assert A.notebook_float_luma(np.array([1, 1, 1], np.uint8)) == 0.9999999999999999
    below = A.luma(colours).astype(np.int64) - np.array(expected).astype(np.int64)
    assert set(below.tolist()) == {0, 1}  # never above the exact value, sometimes one below:
    assert int(below[:256].sum()) == 65 and int(below.sum()) == 75  # 65 of the greys, 10 of the random colours


def test_vote_bounds_use_the_notebooks_float_expression():
    for n in (1, 3, 7, 100, 101, 300):
        lo, hi = A.vote_bounds(n)
        for i in range(n):
            r = i / n * 100
            assert lo[i] == min(p for p in range(101) if p >= r)
            assert hi[i] == max(p for p in range(101) if p <= r)
    lo, hi = A.vote_bounds(100)
    assert (lo[7], hi[7]) == (8, 7)  # 7.000000000000001: no integer p for sorted index 7
    assert (lo[50], hi[50]) == (50, 50)


@pytest.mark.parametrize("n,m", [(1, 1), (5, 13), (255, 9), (256, 8), (600, 17)])
def test_count_less_kth_and_order_pair_match_numpy(n, m):
    rng = np.random.default_rng(n + m)
    x = rng.integers(0, 256, size=(n, m), dtype=np.uint8)
    x[:, 0] = 255  # a column whose order statistics are all 255
    thr = rng.integers(0, 256, size=m, dtype=np.uint8)
    assert np.array_equal(A.count_less(x, thr), (x < thr).sum(axis=0))
    s = np.sort(x, axis=0)
    for k in sorted({0, n // 3, n - 2, n - 1} - {-1}):
        assert np.array_equal(A.kth_smallest(x, k), s[k])
        a, b = A.order_pair(x, k)
        assert np.array_equal(a, s[k]) and np.array_equal(b, s[min(k + 1, n - 1)])


# (N, p) where numpy's float virtual index (N - 1) * p / 100 falls 1 ulp below the exact integer, so
# np.percentile interpolates between s[k-1] and s[k] with gamma ~ 1 and truncation often gives s[k] - 1.
FLOAT_EDGE = [(51, 58), (101, 29), (101, 57), (301, 41)]


@pytest.mark.parametrize(
    "n,p", [(1, 0), (1, 100), (2, 50), (3, 33), (3, 34), (10, 0), (10, 99), (10, 100), (33, 17), (100, 7)] + FLOAT_EDGE
)
def test_temporal_percentile_equals_numpy(n, p):
    rng = np.random.default_rng(1000 * n + p)
    frames = rng.integers(0, 256, size=(n, 5, 7, 3), dtype=np.uint8)
    frames[:, 0] = rng.choice(np.array([0, 128, 255], np.uint8), size=(n, 7, 3))
    expected = np.percentile(frames, p, axis=0).astype(np.uint8)
    assert np.array_equal(A.temporal_percentile(frames, p, band_pixels=7), expected)
    if (n, p) in FLOAT_EDGE:  # the edge is real: the exact-integer order statistic would differ
        k = (n - 1) * p // 100
        assert not np.array_equal(np.sort(frames, axis=0)[k], expected)


class RowReader:
    """A minimal FrameSource: counts the band reads and returns copies."""

    def __init__(self, frames):
        self.frames, self.shape, self.reads = frames, frames.shape, []

    def read_rows(self, r0, r1):
        self.reads.append((r0, r1))
        return self.frames[:, r0:r1].copy()


def test_frame_source_and_memmap_give_the_same_image(tmp_path):
    frames = clip(21, 30, 9, 10, 4)
    expected = A.clean_image(frames)
    source = RowReader(frames)
    got = A.clean_image(source, band_pixels=25)  # 2 rows of 10 pixels per band
    assert got.p_hat == expected.p_hat and np.array_equal(got.image, expected.image)
    assert source.reads[:5] == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 9)]  # pass 1 ...
    assert len(source.reads) == 10  # ... and pass 2
    np.save(tmp_path / "f.npy", frames)
    mm = np.load(tmp_path / "f.npy", mmap_mode="r")
    assert np.array_equal(A.clean_image(mm, band_pixels=25).image, expected.image)


def test_bad_frames_raise():
    with pytest.raises(ValueError, match="uint8"):
        A.clean_image(np.zeros((3, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        A.clean_image(np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="density='heavy'"):
        A.frames_for_density("heavy")
    assert [A.frames_for_density(d) for d in ("sparse", "normal", "dense")] == [20, 100, 200]
    assert [A.density_step(d) for d in ("sparse", "normal", "dense")] == [10, 20, 50]


# --- notebook_compat: the release notebook's exact output, slips included -------------------------------------
def crossing_clip(seed: int, n: int, h: int, w: int) -> np.ndarray:
    """Frames whose values wander across 128 (around mid grey), so luma + 128 wraps for some frames of a pixel
    and not for others: the slip reorders such a pixel's luma series."""
    rng = np.random.default_rng(seed)
    base = rng.integers(96, 160, size=(1, h, w, 3))
    noise = rng.integers(-30, 31, size=(n, h, w, 3))
    frames = np.clip(base + noise, 0, 255).astype(np.uint8)
    frames[rng.random((n, h, w)) < 0.2] = 235  # rain
    return frames


@pytest.mark.parametrize(
    "seed,n,h,w,band", [(0, 12, 8, 12, 40), (1, 15, 7, 10, 23), (2, 9, 5, 6, 4096), (3, 20, 9, 13, 50)]
)
def test_notebook_compat_equals_the_notebook(seed, n, h, w, band):
    """Against a transcription of the notebook (its YCbCr slip and its 8-region vote), on clips crossing 128;
    sizes with H odd / W not a multiple of 4 exercise the pixels its vote leaves out."""
    from tests.make_clean.notebook_transcription import notebook_clean_image

    frames = crossing_clip(seed, n, h, w)
    expected, p_expected = notebook_clean_image(frames)
    compat = A.clean_image(frames, band_pixels=band, notebook_compat=True)
    assert compat.p_hat == p_expected
    assert np.array_equal(compat.image, expected)
    # the default is the corrected algorithm: the per-pixel reference without the slips
    plain, p_plain, _ = reference_clean_image(frames)
    default = A.clean_image(frames, band_pixels=band)
    assert default.p_hat == p_plain and np.array_equal(default.image, plain)


def test_the_slips_change_the_result():
    """On clips crossing 128 the notebook's p_hat differs from the corrected one (so notebook_compat matters),
    and its vote leaves out exactly the pixels notebook_vote_mask says."""
    differ = [
        s
        for s in range(6)
        if A.clean_image(crossing_clip(s, 15, 8, 12), notebook_compat=True).p_hat
        != A.clean_image(crossing_clip(s, 15, 8, 12)).p_hat
    ]
    assert differ, "no clip where the slip changes p_hat"
    # H = 7, W = 10: regions of 3 or 4 rows (0..3, 3..7) x 2 or 3 columns (0..2, 2..5, 5..7, 7..10); each fills
    # only int(3.5) * int(2.5) = 6 map rows: in region rows 3..7 x columns 2..5, rows 3 and 4 vote, 5 and 6 not
    mask = A.notebook_vote_mask(7, 10)
    assert mask.sum() == 8 * 6 and mask[:3, :2].all() and mask[3:5, 2:5].all() and not mask[5:, 2:5].any()
    assert A.notebook_vote_mask(8, 12).all()
    frames = crossing_clip(0, 10, 3, 5)
    y = A.slipped_luma(frames)
    rgb = frames.astype(np.int64).tolist()
    for t in range(10):
        for i in range(3):
            for j in range(5):
                r, g, b = rgb[t][i][j]
                value = ((0.299 * r) + (0.587 * g)) + (0.114 * b)  # Python floats: one IEEE operation at a time
                assert y[t, i, j] == (int(value) if j == 0 else int(value + 128) % 256)
