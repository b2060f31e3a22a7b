"""Tiny rain clips as frame folders (lossless PNG, fast) for the review-loop and assembly tests, and
:func:`run_cli`, which runs a command's real Hydra entry point in this process."""

from __future__ import annotations

import sys
from typing import Callable, Sequence

import imageio.v3 as iio
import numpy as np
import pytest
from hydra.core.global_hydra import GlobalHydra


def run_cli(entry: Callable[[], None], args: Sequence[str]) -> int:
    """``python -m ... ARGS`` without a subprocess: call the ``@hydra.main`` function with ``sys.argv`` set;
    returns the exit status."""
    saved = sys.argv
    sys.argv = ["prog", *args]
    try:
        entry()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        sys.argv = saved
        GlobalHydra.instance().clear()
    return 0


def rain_clip(n: int, h: int, w: int, seed: int) -> np.ndarray:
    """uint8 (n, h, w, 3): a static random background with bright rain pixels (15% of pixels per frame)."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(20, 180, size=(h, w, 3), dtype=np.uint8)
    frames = np.repeat(bg[None], n, axis=0)
    frames[rng.random((n, h, w)) < 0.15] = 240
    return frames


@pytest.fixture
def make_frames():
    """The :func:`rain_clip` generator, for tests that write clips in other forms (e.g. video)."""
    return rain_clip


@pytest.fixture
def clips_dir(tmp_path):
    """Factory: clips_dir({name: (n, h, w, seed)}) -> (folder of clips, {name: frames})."""

    def make(spec: dict) -> tuple:
        root = tmp_path / "clips"
        frames = {}
        for name, (n, h, w, seed) in spec.items():
            frames[name] = rain_clip(n, h, w, seed)
            (root / name).mkdir(parents=True)
            for i, f in enumerate(frames[name]):
                iio.imwrite(root / name / f"{i:04d}.png", f)
        return root, frames

    return make
