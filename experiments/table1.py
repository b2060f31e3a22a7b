"""Paper Table 1 set-up: clean images from synthetic rain videos, scored against the true background.

    python experiments/table1.py [--videos 10] [--frames 100] [--size 256] [--seed 0] [--out table1.md]

A script of experiments/, not a suite entry point: it takes argparse options (``--help``); the suite's
commands (``python -m src.*``) take Hydra overrides.

Videos: ``--videos`` still backgrounds (photos bundled in scikit-image, centre-cropped to a square and resized
to ``--size``), each with the suite's synthetic rain (``src.data.synthetic.make_rain_video``: a new streak
layer per frame, global brightness flicker 2 %, Gaussian sensor noise sigma 2 grey levels). Settings cycle
through sparse, normal and dense rain; every fourth video is dense rain with haze 0.2 (a hard case: the haze
is in every frame, so no temporal statistic can remove it).

Methods, each giving one uint8 RGB image per video: the paper's (``src.make_clean.algorithm.clean_image``),
and the per-pixel temporal mean, median (both rounded to the nearest level) and minimum over all frames.
"rain input" scores every rain frame and averages them.

Protocol: 8-bit RGB against the true background (uint8); PSNR with peak 255 over all 3 channels
(``skimage.metrics.peak_signal_noise_ratio``, data_range=255; the same number as peak 1 on [0, 1] images);
SSIM = ``skimage.metrics.structural_similarity`` with its defaults (7x7 uniform window, gaussian_weights=False,
K1 0.01, K2 0.03, sample covariance), ``channel_axis=-1``, data_range=255, averaged over the channels. The
column "SSIM (dr 2)" is the same on [0, 1] images with data_range=2, what the SPANet release's
``compare_ssim`` computed on float images (the suite's ``spanet`` protocol); the paper does not say which
it used for Table 1. Scores are averaged over the videos.

The paper's numbers are printed beside ours (its rain videos, its protocol; its video-deraining baselines
report their best frame). Prints a Markdown table; ``--out`` also writes it to a file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.transform import resize

from src.data.synthetic import PHOTOS, load_photo, make_rain_video
from src.make_clean.algorithm import clean_image
from src.metrics.paper import TABLE1

BACKGROUNDS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "motorcycle",
    "camera",
    "brick",
    "grass",
    "coins",
    "gravel",
    "moon",
    "hubble_deep_field",
)
SETTINGS = (("sparse", 0.0), ("normal", 0.0), ("dense", 0.0), ("dense", 0.2))  # (density, haze)
METHODS = ("input", "ours", "mean", "median", "min")
LABELS = {
    "input": "rain input (every frame)",
    "ours": "paper's method (ours)",
    "mean": "temporal mean",
    "median": "temporal median",
    "min": "temporal minimum",
}


def background(name: str, size: int) -> np.ndarray:
    """A bundled photo, centre-cropped to a square and resized to size x size, uint8 RGB."""
    img = load_photo(name)
    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    img = resize(img[y : y + s, x : x + s], (size, size), anti_aliasing=True)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """(PSNR peak 255, SSIM data_range 255, SSIM data_range 2 on [0, 1]) of two uint8 RGB images."""
    psnr = peak_signal_noise_ratio(truth, pred, data_range=255)
    ssim = structural_similarity(truth, pred, channel_axis=-1, data_range=255)
    ssim2 = structural_similarity(truth / 255.0, pred / 255.0, channel_axis=-1, data_range=2)
    return float(psnr), float(ssim), float(ssim2)


def estimates(frames: np.ndarray, ours: np.ndarray) -> dict[str, np.ndarray]:
    """One uint8 RGB image per method (mean and median rounded to the nearest level)."""
    return {
        "ours": ours,
        "mean": np.round(frames.mean(axis=0)).astype(np.uint8),
        "median": np.round(np.median(frames, axis=0)).astype(np.uint8),
        "min": frames.min(axis=0),
    }


def run(videos: int, frames: int, size: int, seed: int) -> tuple[dict, list[dict]]:
    """Scores per method averaged over videos, and one record per video."""
    names = [n for n in BACKGROUNDS if n in PHOTOS]
    if videos > len(names):
        raise ValueError(f"--videos {videos}: only {len(names)} bundled backgrounds ({', '.join(names)})")
    per_video = []
    for i, name in enumerate(names[:videos]):
        density, haze = SETTINGS[i % len(SETTINGS)]
        truth = background(name, size)
        t0 = time.perf_counter()
        clip = make_rain_video(truth, frames, seed=seed + i, density=density, haze=haze)
        t1 = time.perf_counter()
        result = clean_image(clip)
        t2 = time.perf_counter()
        est = estimates(clip, result.image)
        rec = {
            "video": name,
            "density": density,
            "haze": haze,
            "p_hat": result.p_hat,
            "input": tuple(np.mean([scores(f, truth) for f in clip], axis=0)),
        }
        rec.update({m: scores(img, truth) for m, img in est.items()})
        per_video.append(rec)
        print(
            f"[table1] {name:18s} {density:6s} haze {haze:.1f}: p_hat {rec['p_hat']:3d}, ours "
            f"{rec['ours'][0]:.2f} dB (rain {t1 - t0:.1f} s, ours {t2 - t1:.2f} s)",
            file=sys.stderr,
        )
    mean = {m: tuple(np.mean([r[m] for r in per_video], axis=0)) for m in METHODS}
    clear = [r for r in per_video if not r["haze"]] or per_video
    for m in METHODS:  # also the mean over the videos without haze (the paper's videos have none)
        mean[m] += tuple(np.mean([r[m][:2] for r in clear], axis=0))
    return mean, per_video


def markdown(mean: dict, per_video: list[dict], args) -> str:
    paper = {"input": TABLE1.rows["input"], "ours": TABLE1.rows["ours"]}
    lines = [
        f"Table 1 set-up: {len(per_video)} synthetic rain videos x {args.frames} frames at {args.size}x{args.size} "
        f"(seed {args.seed}); 8-bit RGB vs the true background, PSNR peak 255, SSIM skimage 7x7 uniform "
        f"(data_range 255; 'dr 2': data_range 2 on [0, 1]), mean over all videos and over the videos without haze.",
        "",
        "| method | PSNR (dB) | SSIM | SSIM (dr 2) | PSNR, no haze | SSIM, no haze | paper PSNR | paper SSIM |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in METHODS:
        p, s, s2, p_clear, s_clear = mean[m]
        ref = paper.get(m)
        lines.append(
            f"| {LABELS[m]} | {p:.2f} | {s:.4f} | {s2:.4f} | {p_clear:.2f} | {s_clear:.4f} | "
            f"{f'{ref.psnr:.2f}' if ref else '-'} | {f'{ref.ssim:.4f}' if ref else '-'} |"
        )
    for key in ("jiang", "wei", "li"):
        ref = TABLE1.rows[key]
        lines.append(f"| {ref.method} (paper only, {ref.note}) | - | - | - | - | - | {ref.psnr:.2f} | {ref.ssim:.4f} |")
    lines += ["", "| video | rain | p_hat | input | ours | mean | median | min |", "|---|---|---|---|---|---|---|---|"]
    for r in per_video:
        rain = r["density"] + (f" + haze {r['haze']:g}" if r["haze"] else "")
        lines.append(
            f"| {r['video']} | {rain} | {r['p_hat']} | "
            + " | ".join(f"{r[m][0]:.2f} / {r[m][1]:.4f}" for m in METHODS)
            + " |"
        )
    lines.append("")
    lines.append("Per video: PSNR / SSIM (data_range 255).")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=10)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    args = ap.parse_args(argv)
    mean, per_video = run(args.videos, args.frames, args.size, args.seed)
    text = markdown(mean, per_video, args)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
