"""Dataset over a list of file pairs: decode -> paired transform -> the sample dict of ``src/data/base.py``.

Sample: ``rain`` / ``clean`` float32 tensors (3, H, W), RGB in [0, 1] (8-bit / 255, 16-bit / 65535);
``name`` str; ``label`` int64 scalar (0 heavy, 1 medium, 2 light, -1 unknown).

Side-by-side files are split at ``W // 2``: left = ``[:, :W//2]``, right = ``[:, W//2 : 2*(W//2)]`` (an odd
last column is dropped). The pair list is stored as flat numpy byte-string arrays rather than Python
objects, so DataLoader workers forked from the main process share it instead of each copying 600K objects
as their reference counts change.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from src.data.readers import ORDERS, Pair, evenly_spaced
from src.data.transforms import sub_crop
from src.utils.image_io import grey_levels, read_array

_HALVES = (None,) + ORDERS  # code 0: two files; 1: left rainy; 2: left clean


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """Decode a pair to two RGB arrays (H, W, 3) of the file's dtype (uint8 / uint16); sizes checked."""
    if pair.halves is not None:
        both = read_array(pair.rain)
        half = both.shape[1] // 2
        left, right = both[:, :half], both[:, half : 2 * half]
        return (left, right) if pair.halves == "rain_clean" else (right, left)
    rain, clean = read_array(pair.rain), read_array(pair.clean)
    if rain.shape != clean.shape:
        raise ValueError(
            f"size mismatch: {pair.rain} is {rain.shape[1]}x{rain.shape[0]} (WxH) but "
            f"{pair.clean} is {clean.shape[1]}x{clean.shape[0]}"
        )
    return rain, clean


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8/uint16/float array -> float32 tensor (3, H, W) in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    if arr.dtype == np.uint8:
        return t.float().div_(255.0)
    if arr.dtype == np.uint16:
        return t.float().div_(65535.0)
    return t.float()


def rain_minus_clean(pair: Pair) -> float:
    """mean(rain) - mean(clean) over all pixels and channels, in 8-bit grey levels."""
    rain, clean = load_pair(pair)
    return grey_levels(rain) - grey_levels(clean)


def check_orientation(
    pairs: Sequence[Pair],
    samples: int = 16,
    where: str = "data",
    hint: str = "set data.swap=true",
    skip_unreadable: bool = False,
) -> float:
    """Rain brightens pixels: fail when, on ``samples`` evenly spaced pairs, the rainy images are not brighter
    than the clean ones on average. Returns the mean difference (8-bit grey levels). ``skip_unreadable``: leave
    out sampled pairs that cannot be read (``data.on_bad_file=skip``) instead of raising."""
    chosen = evenly_spaced(pairs, samples)
    diffs = []
    for p in chosen:
        try:
            diffs.append(rain_minus_clean(p))
        except (OSError, ValueError):
            if not skip_unreadable:
                raise
    if not diffs:
        return 0.0
    mean = float(np.mean(diffs))
    if mean <= 0:
        raise ValueError(
            f"{where}: the rainy images are not brighter than the clean ones ({mean:+.2f} grey levels on "
            f"average over {len(chosen)} pairs, e.g. {chosen[0].rain}); rain brightens pixels, so rainy and "
            f"clean look swapped: {hint} (or data.check_orientation=false to skip this check)"
        )
    return mean


#: ``on_bad_file=skip``: how many unreadable pairs in a row may be stepped over before the error is raised
MAX_BAD_IN_A_ROW = 16


class PairedDataset(Dataset):
    """Decode + optional paired transform of a list of :class:`Pair` -> sample dicts.

    ``on_bad_file="skip"`` (training): a pair whose file is missing, unreadable or of mismatched sizes is replaced
    by the next pair of the list, and the sample carries ``"bad_files"``: the skipped files' errors, one per line
    ("" when none), so that the training loop can count them across DataLoader worker processes.
    ``"raise"`` (default): the error is raised.

    Items are read by index, or by ``(index, sample_seed)`` as the training sampler hands them out
    (:class:`src.data.base.ResumableSampler`): the transform then draws from a generator seeded with it. A
    progressive schedule's keys ``(index, sample_seed, patch)`` (:mod:`src.data.progressive`) also crop the
    transformed pair to the stage's ``patch`` (:func:`src.data.transforms.sub_crop`)."""

    takes_sample_seed = True

    def __init__(self, pairs: Sequence[Pair], transform: Optional[Callable] = None, on_bad_file: str = "raise") -> None:
        if on_bad_file not in ("raise", "skip"):
            raise ValueError(f"data.on_bad_file={on_bad_file!r}: choose 'raise' or 'skip'")
        self.on_bad_file = on_bad_file
        self._rain = np.array([p.rain.encode() for p in pairs], dtype=np.bytes_)
        self._clean = np.array([p.clean.encode() for p in pairs], dtype=np.bytes_)
        self._name = np.array([p.name.encode() for p in pairs], dtype=np.bytes_)
        self._label = np.array([p.label for p in pairs], dtype=np.int64)
        self._halves = np.array([_HALVES.index(p.halves) for p in pairs], dtype=np.int8)
        self.transform = transform

    def __len__(self) -> int:
        return len(self._label)

    def pair(self, index: int) -> Pair:
        return Pair(
            self._rain[index].decode(),
            self._clean[index].decode(),
            self._name[index].decode(),
            int(self._label[index]),
            "",
            _HALVES[self._halves[index]],
        )

    def __getitem__(self, key) -> dict:
        index, seed, patch = (*key, None)[:3] if isinstance(key, tuple) else (key, None, None)
        if self.on_bad_file == "raise":
            pair = self.pair(index)
            return self._sample(pair, load_pair(pair), seed, patch)
        errors = []
        for step in range(min(len(self), MAX_BAD_IN_A_ROW + 1)):
            pair = self.pair((index + step) % len(self))
            try:
                arrays = load_pair(pair)
            except (OSError, ValueError) as exc:  # missing, truncated / corrupt, size mismatch
                errors.append(str(exc).replace("\n", " "))
                continue
            return {**self._sample(pair, arrays, seed, patch), "bad_files": "\n".join(errors)}
        raise RuntimeError(
            f"data.on_bad_file=skip: {len(errors)} unreadable pairs in a row from index {index} "
            f"(last: {errors[-1]}); the data set looks broken, check it with python -m src.data.check"
        )

    def _sample(
        self, pair: Pair, arrays: tuple[np.ndarray, np.ndarray], seed: Optional[int] = None, patch: Optional[int] = None
    ) -> dict:
        rain, clean = arrays
        if self.transform is not None or patch is not None:
            g = torch.Generator().manual_seed(seed) if seed is not None else None
            try:
                if self.transform is not None:
                    rain, clean = self.transform(rain, clean, g)
                if patch is not None:
                    rain, clean = sub_crop(rain, clean, patch, g)
            except ValueError as exc:
                raise ValueError(f"{pair.rain}: {exc}") from exc
        return {
            "rain": to_tensor(rain),
            "clean": to_tensor(clean),
            "name": pair.name,
            "label": torch.tensor(pair.label, dtype=torch.int64),
        }

    def __repr__(self) -> str:
        return f"PairedDataset({len(self)} pairs, transform={self.transform!r})"
