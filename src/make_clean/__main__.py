"""Clean image from a rain clip (paper section 3).

    python -m src.make_clean input=VIDEO_OR_FRAME_DIR output=FILE.png [frames=N] [start=K]
                             [density=sparse|normal|dense] [cache_dir=DIR] [band_pixels=4096]
                             [notebook_compat=false|true] [overwrite=true]

Options are Hydra overrides of ``conf/make_clean.yaml`` (see :mod:`src.make_clean.cli`; ``--help`` lists them).
Writes FILE.png (uint8 RGB) and FILE.json ({"p_hat", "frames", "size": [H, W], "start", "input",
"notebook_compat"}). ``notebook_compat=true`` reproduces the release notebook's output, including its two
slips (luma + 128 outside image column 0; some pixels left out of the vote when H is odd or W is not a multiple
of 4), with its float luma in one fixed order; the default is the algorithm as the paper describes it, with the
exact integer luma (docs/models.md). Both give the same image on every machine.
``frames`` defaults to the paper's count for ``density`` (sparse 20, normal 100, dense 200; default normal).
Frames are cached in a raw file under ``cache_dir`` (default: the system temporary folder; N x H x W x 3
bytes, 1.9 GB for 300 frames of 1080p) while the two passes run; memory stays at one band of rows.
An existing FILE.png or FILE.json is refused unless overwrite=true; FILE.png may not lie inside the frame folder.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from src.make_clean.algorithm import DENSITY_FRAMES
from src.make_clean.cli import CONFIG_PATH, boolean, choice, integer, read_options, run_main, text
from src.make_clean.pipeline import generate, record_path

OPTIONS = {
    "input": text,
    "output": text,
    "frames": integer(1),
    "start": integer(0),
    "density": choice(*DENSITY_FRAMES),
    "cache_dir": text,
    "band_pixels": integer(1),
    "notebook_compat": boolean,
    "overwrite": boolean,
}


def main(cfg: DictConfig) -> int:
    opts = read_options(cfg, OPTIONS, required=("input", "output"), nullable=("frames", "cache_dir"))
    record = generate(
        opts["input"],
        opts["output"],
        opts["frames"],
        opts["start"],
        opts["density"],
        opts["cache_dir"],
        opts["band_pixels"],
        opts["notebook_compat"],
        overwrite=opts["overwrite"],
    )
    print(
        f"{opts['output']}: p_hat={record['p_hat']} from {record['frames']} frames "
        f"(start {record['start']}), size {record['size'][0]}x{record['size'][1]}; "
        f"record {record_path(opts['output'])}"
    )
    return 0


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="make_clean")
def entry(cfg: DictConfig) -> None:
    sys.exit(run_main(main, cfg))


if __name__ == "__main__":
    entry()
