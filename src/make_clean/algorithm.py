"""Clean image from the frames of a rain video (SPANet, CVPR 2019, section 3), as the release's notebook
computes it, vectorised and streamed.

Input: N frames of a static scene filmed in rain, uint8 RGB, shape (N, H, W, 3). Output: one clean image,
uint8 RGB (H, W, 3). The notebook's steps (paper section 3; docs/howto.md shows the whole pipeline, docs/models.md
the notebook's slips):

1. luma ``Y = floor((299 R + 587 G + 114 B) / 1000)`` of the uint8 RGB values, in exact integer arithmetic
   (the notebook's ``0.299 R + 0.587 G + 0.114 B`` truncated to uint8, without rounding errors);
2. ``phi`` = the mode of a pixel's N luma values (ties: the smallest value);
3. in the pixel's sorted luma values, ``R_min = first_index(phi) / N * 100`` and
   ``R_max = last_index(phi) / N * 100`` (float64, the notebook's expression);
4. ``p_hat`` = the integer p in 0..100 with ``R_min <= p <= R_max`` for the most pixels (ties: smallest p);
5. ``B = uint8(np.percentile(frames, p_hat, axis=0))`` (linear interpolation, truncation).

The notebook loops over pixels in Python; here the same numbers come from whole-array operations on
horizontal bands of rows, in two passes over the frames: pass 1 votes for p band by band (a 101-bin
histogram), pass 2 takes the p_hat-th percentile band by band. Only one band of all N frames is held at a
time (about ``band_pixels * N * 3`` bytes plus scratch of the same order), so a 300-frame 1080p clip needs
tens of MB besides the output image when the frames come from a :class:`src.make_clean.io.FrameCache`.

How each step gives the notebook's numbers, the same on every machine:

* luma: :func:`luma` computes ``(299 R + 587 G + 114 B) // 1000`` in uint32, exactly: the value the
  notebook's float expression means, identical on every CPU. The notebook itself takes the Y column of
  ``np.dot(video, M)`` in float64 and truncates it; that result depends on the machine (numpy's ``dot``
  goes to BLAS, whose kernels differ per CPU in the order and fusing of the three multiply-adds), and even
  evaluated left to right it truncates 3,464 of the 2^24 colours one level below the exact value, where
  ``299 R + 587 G + 114 B`` is a multiple of 1000 (e.g. grey (1, 1, 1): 0.9999999999999999, so Y = 0 instead
  of 1; 65 of the 256 greys). The exact definition maps every grey g to g.
* mode and sorted positions: from per-pixel counts over the 256 luma levels; ``first_index(phi)`` is the
  number of values below ``phi``, ``last_index = first_index + count(phi) - 1``; ``argmax`` returns the
  first maximum, which is the smallest value.
* the vote: the integers p with ``R_min <= p <= R_max`` are ``ceil(R_min) .. floor(R_max)``, looked up per
  sorted position from a table built with the notebook's own float expression ``index / N * 100`` (so that,
  e.g., 7 / 100 * 100 = 7.000000000000001 excludes p = 7 as it does in the notebook).
* the percentile: numpy's linear percentile of a series depends only on its two order statistics at
  numpy's ``floor(virtual index)`` and the next one. We find those two values per pixel and channel with a
  vectorised bitwise binary search, and map each pair through a table filled by calling ``np.percentile``
  itself on one representative series per distinct pair: numpy's own arithmetic, without sorting every
  series.

``notebook_compat=True`` reproduces the notebook's output, including two slips of its code (the default,
``False``, is the algorithm as the paper and the notebook mean it):

* the luma is the notebook's float64 expression, evaluated element by element in one fixed order,
  ``Y = ((0.299 * R) + (0.587 * G)) + (0.114 * B)`` (each product and sum rounded once, as IEEE double
  arithmetic does on every machine; no BLAS), truncated to uint8 in image column 0; every other column
  gets ``uint8(Y + 128)``, wrapping modulo 256 as numpy's float-to-uint8 cast does on x86 (where the authors
  ran it): pixel values whose luma crosses 128 within the clip change their rank order over time
  (:func:`slipped_luma`). That order is the one a plain left-to-right evaluation and numpy's ``dot`` on
  most CPUs give; where a CPU's BLAS kernel fuses or reorders the multiply-adds, the notebook's own luma
  differs from it in some colours, so the notebook's output is itself machine-dependent there;
* its vote runs in 8 processes over a 2 x 4 grid of regions, each with a result array of
  ``int(H/2) * int(W/4)`` rows: where H is odd or W not a multiple of 4, a region holds more pixels than that,
  and its last pixels (in row-major order) do not vote (:func:`notebook_vote_mask`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Union

import numpy as np

#: Frames per clip the paper starts with, and the step it adds after a rejection, per rain density.
DENSITY_FRAMES = {"sparse": 20, "normal": 100, "dense": 200}
DENSITY_STEP = {"sparse": 10, "normal": 20, "dense": 50}

#: Default band size in pixels per frame (rows x width). Small enough for the working set of one band of
#: 100-300 frames to stay in the CPU caches, large enough to keep numpy's per-call overhead small.
BAND_PIXELS = 4096

_LUMA_CHUNK = 32768  # pixels per chunk in :func:`luma`
_SWAR_ROWS = 255  # rows summed per byte lane in :func:`count_less` before a lane could overflow


class FrameSource(Protocol):
    """Frames that are read band by band: ``shape == (N, H, W, 3)``, ``read_rows(r0, r1)`` returns the
    uint8 array ``(N, r1 - r0, W, 3)`` of rows ``r0:r1`` of every frame (e.g. :class:`io.FrameCache`)."""

    shape: tuple

    def read_rows(self, r0: int, r1: int) -> np.ndarray: ...


Frames = Union[np.ndarray, FrameSource]


@dataclass
class CleanResult:
    """``image``: uint8 RGB (H, W, 3). ``p_hat``: the chosen percentile. ``votes[p]``: number of pixels whose
    ``[R_min, R_max]`` contains p (length 101). ``frames``: N."""

    image: np.ndarray
    p_hat: int
    votes: np.ndarray
    frames: int


# --- building blocks ---------------------------------------------------------------------------------------
def luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 luma of uint8 RGB ``(..., 3)``: ``floor((299 R + 587 G + 114 B) / 1000)``, in exact integer
    arithmetic, so the same on every machine (every grey g maps to g).

    Evaluated in chunks of pixels with reused uint32 buffers (the sum is at most 255,000; no whole-array
    temporaries).
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
        raise ValueError(f"luma expects uint8 RGB (..., 3), got {rgb.dtype} {rgb.shape}")
    flat = rgb.reshape(-1, 3)
    out = np.empty(len(flat), np.uint8)
    acc, tmp = np.empty(_LUMA_CHUNK, np.uint32), np.empty(_LUMA_CHUNK, np.uint32)
    for s in range(0, len(flat), _LUMA_CHUNK):
        px = flat[s : s + _LUMA_CHUNK]
        a, t = acc[: len(px)], tmp[: len(px)]
        np.multiply(px[:, 0], np.uint32(299), out=a)
        np.multiply(px[:, 1], np.uint32(587), out=t)
        a += t
        np.multiply(px[:, 2], np.uint32(114), out=t)
        a += t
        a //= np.uint32(1000)  # floor division of non-negative integers: exact
        out[s : s + len(px)] = a
    return out.reshape(rgb.shape[:-1])


def notebook_float_luma(rgb: np.ndarray) -> np.ndarray:
    """float64 luma of uint8 RGB ``(..., 3)`` as the notebook's expression gives it, in one fixed order:
    ``((0.299 * R) + (0.587 * G)) + (0.114 * B)``. Element-wise numpy operations only (each product and sum
    rounded once, IEEE double), never a BLAS ``dot``, so the result is the same on every machine."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
        raise ValueError(f"notebook_float_luma expects uint8 RGB (..., 3), got {rgb.dtype} {rgb.shape}")
    y = np.multiply(rgb[..., 0], 0.299, dtype=np.float64)
    y += np.multiply(rgb[..., 1], 0.587, dtype=np.float64)
    y += np.multiply(rgb[..., 2], 0.114, dtype=np.float64)
    return y


def slipped_luma(rgb: np.ndarray) -> np.ndarray:
    """The notebook's luma of uint8 RGB frames ``(..., W, 3)`` (whole image rows), slip included: the float
    luma Y of :func:`notebook_float_luma`, truncated to uint8 in column 0, and ``uint8(Y + 128)`` in every other
    column, wrapped modulo 256."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,) or rgb.ndim < 2:
        raise ValueError(f"slipped_luma expects uint8 RGB (..., W, 3), got {rgb.dtype} {rgb.shape}")
    y = notebook_float_luma(rgb)
    y[..., 1:] += 128.0
    return (y.astype(np.int64) & 255).astype(np.uint8)  # truncation, then the wrap of an x86 uint8 cast


def notebook_vote_mask(h: int, w: int) -> np.ndarray:
    """(H, W) bool: the pixels that take part in the notebook's vote. Its 8 regions are columns
    ``int(W/4*k) .. int(W/4*(k+1))`` x rows ``0 .. int(H/2)`` or ``int(H/2) .. H``; in each, only the first
    ``int(H/2) * int(W/4)`` pixels in row-major order fill its result array."""
    mask = np.zeros((h, w), bool)
    for h1, h2 in ((0, h / 2), (h / 2, h)):
        for k in range(4):
            w1, w2 = w / 4 * k, w / 4 * (k + 1)
            rows, cols = int(h2) - int(h1), int(w2) - int(w1)
            counted = np.zeros(rows * cols, bool)
            counted[: int(h2 - h1) * int(w2 - w1)] = True
            mask[int(h1) : int(h2), int(w1) : int(w2)] = counted.reshape(rows, cols)
    return mask


def count_less(x: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Per column of ``x`` (n, m) uint8: how many rows are ``< thr`` (m,) uint8. Returns uint16 (m,).

    Same as ``(x < thr).sum(axis=0)``, about twice as fast: the 0/1 bytes of the comparison are summed
    eight columns at a time as uint64 words (each byte lane holds one column's count; at most 255 rows are
    summed per lane before the lanes are widened to uint16, so no lane overflows).
    """
    n, m = x.shape
    width = -(-m // 8) * 8  # columns padded to whole uint64 words
    less = np.empty((n, width), bool)
    less[:, m:] = False
    np.less(x, thr, out=less[:, :m])
    words = less.view(np.uint64)
    total = np.zeros(m, np.uint16)
    for r0 in range(0, n, _SWAR_ROWS):
        lanes = np.add.reduce(words[r0 : r0 + _SWAR_ROWS], axis=0)
        total += lanes.view(np.uint8)[:m]
    return total


def kth_smallest(x: np.ndarray, k: int) -> np.ndarray:
    """The k-th smallest value (0-based) of each column of ``x`` (n, m) uint8, as uint8 (m,).

    Bitwise binary search, most significant bit first: the answer is >= ``cand`` exactly when at most k
    values are below ``cand``. Eight passes of :func:`count_less`, no sorting.
    """
    ans = np.zeros(x.shape[1], np.uint8)
    for bit in (128, 64, 32, 16, 8, 4, 2, 1):
        cand = ans | np.uint8(bit)
        ans = np.where(count_less(x, cand) <= k, cand, ans)
    return ans


def order_pair(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k-th and (k+1)-th smallest values of each column of ``x`` (n, m) uint8 (k+1 clipped to n-1)."""
    a = kth_smallest(x, k)
    if k + 1 >= x.shape[0]:
        return a, a
    # The (k+1)-th smallest is a again when more than k+1 values are <= a (always when a == 255), else the
    # smallest value above a. That one is found with uint8 wrap-around: x - (a + 1) maps the values above a
    # to 0..254-a and the others to 255-a..255, so its minimum comes from a value above a whenever one exists.
    a1 = a + np.uint8(1)  # wraps to 0 for a == 255 (then unused)
    n_le = count_less(x, a1)
    above = np.subtract(x, a1).min(axis=0) + a1
    return a, np.where((n_le > k + 1) | (a == 255), a, above)


def mode_positions(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each column of ``y`` (n, m) uint8 (a pixel's luma over time): the first and last index of its mode
    (ties: smallest value) in the column's sorted values. Returns two intp arrays (m,)."""
    n, m = y.shape
    # per-pixel histograms, in the narrowest type that cannot overflow (a count is at most n)
    counts = np.zeros((m, 256), np.uint8 if n < 256 else np.uint16 if n < 65536 else np.uint32)
    flat, base, idx = counts.reshape(-1), np.arange(m) * 256, np.empty(m, np.intp)
    for row in y:  # one scatter per frame: each pixel's histogram gets exactly one increment
        np.add(base, row, out=idx)
        flat[idx] += 1
    mode = counts.argmax(axis=1)  # first maximum = smallest value
    first = count_less(y, mode.astype(np.uint8)).astype(np.intp)
    return first, first + counts[np.arange(m), mode].astype(np.intp) - 1


def vote_bounds(n: int) -> tuple[np.ndarray, np.ndarray]:
    """For each sorted position i in 0..n-1: the smallest integer p with ``p >= i / n * 100`` and the largest
    with ``p <= i / n * 100``, with the notebook's float64 expression (a position gives an empty range
    when the two cross, e.g. n = 3, i = 1: 33.33 contains no integer)."""
    ratio = np.arange(n) / n * 100
    return np.ceil(ratio).astype(np.intp), np.floor(ratio).astype(np.intp)


def percentile_neighbours(n: int, p: int) -> int:
    """The index of the lower of the two order statistics that ``np.percentile(series_of_n, p)`` (linear)
    interpolates between: numpy's floor(virtual index), read from numpy itself rather than recomputed.

    On ``arange(n)`` the percentile is ``k + gamma`` with 0 <= gamma < 1 (numpy's float arithmetic included:
    a gamma just below 1 stays below, since 1 - gamma is at least one ulp of the virtual index).
    """
    return int(np.floor(np.percentile(np.arange(n, dtype=np.float64), p)))


class PercentileLookup:
    """``lookup(a, b)`` = ``uint8(np.percentile(s, p))`` for series s of n uint8 values whose order statistics
    at :func:`percentile_neighbours` and the next index are ``a <= b`` (uint8 arrays of one shape).

    Each distinct pair is evaluated once, on demand, by ``np.percentile`` itself on the representative series
    ``[a] * (k + 1) + [b] * (n - k - 1)``, and cached in a 65536-entry table.
    """

    def __init__(self, n: int, p: int) -> None:
        self.n, self.p, self.k = n, p, percentile_neighbours(n, p)
        self.table = np.zeros(65536, np.uint8)
        self.known = np.zeros(65536, bool)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        keys = (a.astype(np.uint16) << 8) | b
        new = np.unique(keys[~self.known[keys]])
        if new.size:
            series = np.empty((new.size, self.n), np.uint8)
            series[:, : self.k + 1] = (new >> 8)[:, None]
            series[:, self.k + 1 :] = (new & 255)[:, None]
            self.table[new] = np.percentile(series, self.p, axis=1).astype(np.uint8)
            self.known[new] = True
        return self.table[keys]


# --- the two passes ---------------------------------------------------------------------------------------
def _shape(frames: Frames) -> tuple[int, int, int]:
    shape = tuple(frames.shape)
    if len(shape) != 4 or shape[3] != 3 or min(shape) < 1:
        raise ValueError(f"frames must be (N, H, W, 3) with N, H, W >= 1, got shape {shape}")
    if isinstance(frames, np.ndarray) and frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB, got {frames.dtype}")
    return shape[0], shape[1], shape[2]


def _bands(frames: Frames, band_pixels: int):
    """Yield ``(r0, r1, band)``: rows r0:r1 of every frame, a contiguous uint8 array (N, r1 - r0, W, 3)."""
    n, h, w = _shape(frames)
    rows = max(1, int(band_pixels) // w)
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        if isinstance(frames, np.ndarray):
            band = np.ascontiguousarray(frames[:, r0:r1])
        else:
            band = np.asarray(frames.read_rows(r0, r1))
            if band.dtype != np.uint8 or band.shape != (n, r1 - r0, w, 3):
                raise ValueError(
                    f"read_rows({r0}, {r1}) returned {band.dtype} {band.shape}, expected uint8 {(n, r1 - r0, w, 3)}"
                )
        yield r0, r1, band


def percentile_votes(frames: Frames, band_pixels: int = BAND_PIXELS, notebook_compat: bool = False) -> np.ndarray:
    """Pass 1: ``votes[p]`` (int64, length 101) = number of pixels with ``R_min <= p <= R_max``
    (``notebook_compat``: the notebook's luma and voting pixels, see the module docstring)."""
    n, h, w = _shape(frames)
    lo, hi = vote_bounds(n)
    voting = notebook_vote_mask(h, w) if notebook_compat else None
    diff = np.zeros(102, np.int64)  # votes as a difference array: +1 at ceil(R_min), -1 after floor(R_max)
    for r0, r1, band in _bands(frames, band_pixels):
        y = slipped_luma(band) if notebook_compat else luma(band)
        first, last = mode_positions(y.reshape(n, -1))
        start, stop = lo[first], hi[last]
        ok = start <= stop
        if voting is not None:
            ok &= voting[r0:r1].reshape(-1)
        diff += np.bincount(start[ok], minlength=102)
        diff -= np.bincount(stop[ok] + 1, minlength=102)
    return np.cumsum(diff)[:101]


def temporal_percentile(frames: Frames, p: int, band_pixels: int = BAND_PIXELS) -> np.ndarray:
    """Pass 2: ``uint8(np.percentile(frames, p, axis=0))`` (linear), uint8 RGB (H, W, 3), band by band."""
    n, h, w = _shape(frames)
    if not 0 <= int(p) <= 100:
        raise ValueError(f"percentile p={p} is outside 0..100")
    lookup = PercentileLookup(n, int(p))
    out = np.empty((h, w, 3), np.uint8)
    for r0, r1, band in _bands(frames, band_pixels):
        a, b = order_pair(band.reshape(n, -1), lookup.k)
        out[r0:r1] = lookup(a, b).reshape(r1 - r0, w, 3)
    return out


def clean_image(frames: Frames, band_pixels: int = BAND_PIXELS, notebook_compat: bool = False) -> CleanResult:
    """The clean image of ``frames`` (N, H, W, 3) uint8 RGB: an ndarray (or np.memmap) or a
    :class:`FrameSource`. Two passes over the frames; see the module docstring. ``notebook_compat``: the
    release notebook's exact output, its two slips included (module docstring)."""
    n, _, _ = _shape(frames)
    votes = percentile_votes(frames, band_pixels, notebook_compat)
    p_hat = int(np.argmax(votes))  # first maximum = smallest p (all zero -> 0, as in the notebook)
    image = temporal_percentile(frames, p_hat, band_pixels)
    return CleanResult(image=image, p_hat=p_hat, votes=votes, frames=n)


def frames_for_density(density: str) -> int:
    """The paper's starting number of frames for ``density`` (sparse 20, normal 100, dense 200)."""
    if density not in DENSITY_FRAMES:
        raise ValueError(f"density={density!r}: choose one of {list(DENSITY_FRAMES)}")
    return DENSITY_FRAMES[density]


def density_step(density: str) -> int:
    """Frames the paper adds after a rejection for ``density`` (sparse 10, normal 20, dense 50)."""
    if density not in DENSITY_STEP:
        raise ValueError(f"density={density!r}: choose one of {list(DENSITY_STEP)}")
    return DENSITY_STEP[density]
