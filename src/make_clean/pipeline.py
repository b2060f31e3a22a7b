"""One clip in, one clean image out: what ``python -m src.make_clean`` and the review loop run.

``generate(input, output)`` reads frames ``start .. start + N - 1`` of a clip (video file or frame folder) into
a :class:`~src.make_clean.io.FrameCache`, computes the clean image
(:func:`~src.make_clean.algorithm.clean_image`) and writes ``output`` (PNG, uint8 RGB) and, beside it, the
record ``output`` with suffix ``.json``: ``{"p_hat": p, "frames": N, "size": [H, W], "start": K, "input": ...}``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

from src.make_clean.algorithm import BAND_PIXELS, clean_image, frames_for_density
from src.make_clean.io import PathLike, cache_frames, write_image, write_json
from src.utils.files import is_inside, refuse_existing


def record_path(output: PathLike) -> Path:
    """The JSON record written beside a clean image: ``clean.png`` -> ``clean.json``."""
    return Path(output).with_suffix(".json")


def generate(
    input: PathLike,
    output: PathLike,
    frames: Optional[int] = None,
    start: int = 0,
    density: str = "normal",
    cache_dir: Optional[PathLike] = None,
    band_pixels: int = BAND_PIXELS,
    notebook_compat: bool = False,
    overwrite: bool = False,
) -> dict:
    """Clean image of frames ``start .. start + N - 1`` of ``input``; returns the JSON record it wrote.

    ``frames`` None: N is the paper's starting count for ``density`` (sparse 20, normal 100, dense 200), or
    the whole clip from ``start`` if it is shorter (with a warning). An explicit ``frames`` larger than
    what the clip has from ``start`` is an error. ``notebook_compat``: the release notebook's exact output,
    slips included (see :mod:`src.make_clean.algorithm`); recorded in the JSON record.

    Nothing the user has is replaced unless asked: an existing ``output`` or record is refused unless
    ``overwrite`` (a ``FileExistsError`` naming it), and an output inside a frame folder is always refused
    (it would become a frame of the clip).
    """
    output = Path(output)
    if output.suffix.lower() != ".png":
        raise ValueError(f"output={output}: the clean image is written as PNG; give a file name ending in .png")
    if Path(input).is_dir() and is_inside(output, input):
        raise ValueError(
            f"output={output} lies inside the input clip {input}: it would be read as one of its "
            f"frames next time; write it outside the frame folder"
        )
    if not overwrite:
        refuse_existing([output, record_path(output)], what="clean image (or its .json record)")
    n = frames_for_density(density) if frames is None else int(frames)
    if n < 1:
        raise ValueError(f"frames={n}: need at least one frame")
    if start < 0:
        raise ValueError(f"start={start}: must be >= 0")
    with cache_frames(input, start, n, cache_dir) as cache:
        if cache.n < n:
            msg = f"{input}: has only {cache.n} frames from start={start}, {n} requested"
            if frames is not None:
                raise ValueError(msg)
            warnings.warn(f"{msg} (density={density}); using all {cache.n}", UserWarning, stacklevel=2)
        result = clean_image(cache, band_pixels, notebook_compat)
    write_image(output, result.image)
    record = {
        "p_hat": result.p_hat,
        "frames": result.frames,
        "size": [int(result.image.shape[0]), int(result.image.shape[1])],
        "start": int(start),
        "input": str(input),
        "notebook_compat": bool(notebook_compat),
    }
    write_json(record_path(output), record)
    return record
