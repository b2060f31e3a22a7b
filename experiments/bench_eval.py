"""Benchmark the evaluation protocols and folder scoring, side by side in one run.

    python experiments/bench_eval.py                         # CPU, 1 thread, 512x512, + 200 pairs end to end
    python experiments/bench_eval.py --pairs 1000 --workers 2
    python experiments/bench_eval.py --pairs 0 --repeats 20  # protocols only
    python experiments/bench_eval.py --device cuda --json bench.json

(A plain argparse script, not a suite entry point.)

Measured on one realistic pair of ``--size`` x ``--size`` images (a photo of scikit-image's sample set as the
clean image, the prediction = clean + mild noise and a few faint streaks, both saved as 8-bit PNG and decoded
back), in ms per pair, medians over ``--repeats`` runs after ``--warmup``:

* per protocol (``spanet``, ``y_matlab``, ``rgb_uint8``), SSIM and PSNR+SSIM: the suite
  (``src.metrics.protocols``) and scikit-image's implementation of the same protocol (the protocol's
  conversion in numpy -- clipping, 8-bit levels, MATLAB's Y -- then ``skimage.metrics``'
  ``structural_similarity`` / ``peak_signal_noise_ratio`` with the protocol's window, data range and
  covariance), and their ratio;
* all three protocols together: the suite's ``score_all`` against scikit-image's three pipelines, and
  against the PNG decode floor: decoding the pair's two PNG files with Pillow (what any scoring must do),
  timed in alternation with ``score_all`` (the ratio is the median of the per-run ratios);
* with ``--pairs N``: folder scoring end to end (``score_folders`` with ``--workers`` decoding/scoring
  processes): N pairs written to a temporary folder (``--workdir``, removed afterwards unless ``--keep``), then
  matching, decoding, scoring and the report, timed as a whole (wall clock), with the CPU time it took in all
  processes (on a shared machine, CPU time / cores is what the run would take with the cores to itself).

The suite's scores are checked against scikit-image's on the benchmark pair (to 1e-9) before timing.
The machine may be shared: the load average is printed; ratios measured in the same run are more
trustworthy than absolute times. Output: a Markdown table on stdout; with ``--json FILE`` the same numbers.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without install

PROTOCOL_NAMES = ("spanet", "y_matlab", "rgb_uint8")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the suite's metrics run")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the per-pair rows (default 1)")
    p.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per row (default 7)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before timing (default 2)")
    p.add_argument("--pairs", type=int, default=200, help="pairs for the folder row; 0 skips it (default 200)")
    p.add_argument("--workers", type=int, default=2, help="num_workers of the folder row (default 2)")
    p.add_argument(
        "--distinct",
        type=int,
        default=20,
        help="distinct pairs generated for the folder row; the others are copies (default 20)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where to write the folder row's pairs (default: a new temporary folder)",
    )
    p.add_argument("--keep", action="store_true", help="keep the folder row's pairs")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    for name in ("threads", "size", "repeats", "distinct"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.size < 11:
        p.error("--size must be >= 11 (the Gaussian SSIM window)")
    if args.warmup < 0 or args.pairs < 0 or args.workers < 0:
        p.error("--warmup, --pairs and --workers must be >= 0")
    return args


def make_pair(size: int, seed: int):
    """(prediction, clean) uint8 (size, size, 3): a sample photo, and it with mild noise and faint streaks."""
    import numpy as np
    from skimage import data
    from skimage.transform import resize

    photos = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
    rng = np.random.default_rng(seed)
    photo = getattr(data, photos[seed % len(photos)])()
    if seed >= len(photos):  # other pairs: flipped / shifted crops of the same photos
        photo = photo[:, ::-1] if seed % 2 else photo[::-1]
    clean = resize(photo, (size, size), anti_aliasing=True) * 255
    clean = np.clip(clean + rng.normal(0, 1.0, clean.shape), 0, 255)  # sensor noise, as in real photos
    i, j = np.mgrid[:size, :size]
    streaks = ((3 * i + j + seed) % 23 == 0)[:, :, None] * 12.0
    pred = np.clip(clean + streaks + rng.normal(0, 2.0, clean.shape), 0, 255)
    return (np.floor(pred + 0.5).astype(np.uint8), np.floor(clean + 0.5).astype(np.uint8))


def skimage_protocols():
    """scikit-image's implementation of each protocol: {name: (psnr_fn, ssim_fn)} on float RGB HxWx3 in [0, 1]."""
    import numpy as np
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    def levels(x):
        return np.floor(np.clip(x, 0.0, 1.0) * 255.0 + 0.5)

    def y_of(q):  # MATLAB rgb2ycbcr's Y, exact integers (as src.metrics.protocols)
        n = 16 * 255000 + 65481 * q[..., 0] + 128553 * q[..., 1] + 24966 * q[..., 2] + 127500
        return np.floor(n / 255000)

    gauss = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    return {
        "spanet": (
            lambda p, t: peak_signal_noise_ratio(t, np.clip(p, 0, 1), data_range=1),
            lambda p, t: structural_similarity(np.clip(p, 0, 1), t, win_size=7, channel_axis=-1, data_range=2),
        ),
        "y_matlab": (
            lambda p, t: peak_signal_noise_ratio(y_of(levels(t)), y_of(levels(p)), data_range=255),
            lambda p, t: structural_similarity(y_of(levels(p)), y_of(levels(t)), **gauss),
        ),
        "rgb_uint8": (
            lambda p, t: peak_signal_noise_ratio(levels(t), levels(p), data_range=255),
            lambda p, t: structural_similarity(levels(p), levels(t), channel_axis=-1, **gauss),
        ),
    }


def _loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv=None) -> dict:
    args = parse_args(argv)
    import imageio.v3 as iio
    import numpy as np
    import torch
    from PIL import Image

    from src.metrics.folder import score_folders
    from src.metrics.protocols import PROTOCOL_FUNCTIONS, score_all

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_eval: --device cuda given but torch.cuda.is_available() is False")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def median_ms(fn):
        for _ in range(args.warmup):
            fn()
        sync()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3

    def interleaved(floor_fn, fn):
        """Medians of floor_fn's and fn's times, run in alternation, and the median of their ratios."""
        for _ in range(args.warmup):
            floor_fn()
            fn()
        sync()
        floors, times = [], []
        for _ in range(args.repeats):
            for f, out in ((floor_fn, floors), (fn, times)):
                t0 = time.perf_counter()
                f()
                sync()
                out.append(time.perf_counter() - t0)
        ratio = statistics.median(t / f for f, t in zip(floors, times))
        return statistics.median(floors) * 1e3, statistics.median(times) * 1e3, ratio

    load_start = _loadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench_eval_pair_"))
    atexit.register(shutil.rmtree, tmp, True)
    pred8, clean8 = make_pair(args.size, seed=0)
    files = (tmp / "pred.png", tmp / "clean.png")
    iio.imwrite(files[0], pred8)
    iio.imwrite(files[1], clean8)

    def decode_pair():
        for f in files:
            with Image.open(f) as im:
                np.asarray(im)

    pred_np, clean_np = pred8 / 255.0, clean8 / 255.0
    pred_t = torch.from_numpy(np.ascontiguousarray(pred_np.transpose(2, 0, 1)))[None].to(device)
    clean_t = torch.from_numpy(np.ascontiguousarray(clean_np.transpose(2, 0, 1)))[None].to(device)
    sk = skimage_protocols()

    # agreement first: a fast wrong answer is worth nothing
    ours = score_all(pred_t, clean_t)
    for name in PROTOCOL_NAMES:
        for j, measure in enumerate(("psnr", "ssim")):
            want, got = sk[name][j](pred_np, clean_np), float(ours[name][measure][0])
            if abs(want - got) > 1e-9:
                sys.exit(f"bench_eval: {name} {measure} = {got!r} differs from scikit-image's {want!r}")

    rows: list[tuple[str, float, float]] = []  # (label, suite ms, scikit-image ms)
    for name in PROTOCOL_NAMES:
        psnr_fn, ssim_fn = PROTOCOL_FUNCTIONS[name]
        sk_psnr, sk_ssim = sk[name]
        rows.append(
            (f"{name} SSIM", median_ms(lambda: ssim_fn(pred_t, clean_t)), median_ms(lambda: sk_ssim(pred_np, clean_np)))
        )
        rows.append(
            (
                f"{name} PSNR + SSIM",
                median_ms(lambda: (psnr_fn(pred_t, clean_t), ssim_fn(pred_t, clean_t))),
                median_ms(lambda: (sk_psnr(pred_np, clean_np), sk_ssim(pred_np, clean_np))),
            )
        )
    sk_all_ms = median_ms(lambda: [f(pred_np, clean_np) for name in PROTOCOL_NAMES for f in sk[name]])
    # the floor and the three protocols are timed in alternation, so that both see the same machine load
    decode_ms, all_ms, all_over_decode = interleaved(decode_pair, lambda: score_all(pred_t, clean_t))
    rows.append(("all three protocols (score_all)", all_ms, sk_all_ms))

    folder = None
    if args.pairs:
        folder = _folder_row(args, iio, score_folders, make_pair)
    load_end = _loadavg()

    out = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "device": str(device),
        "threads": args.threads,
        "size": args.size,
        "repeats": args.repeats,
        "load_start": load_start,
        "load_end": load_end,
        "decode_pair_ms": decode_ms,
        "rows": [{"row": label, "suite_ms": a, "skimage_ms": b, "speedup": b / a} for label, a, b in rows],
        "all_over_decode": all_over_decode,
        "folder": folder,
    }
    print(render(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


def _folder_row(args, iio, score_folders, make_pair) -> dict:
    """Write ``args.pairs`` pairs, score the folder end to end, return the timing."""
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_eval_folder_"))
    pred_dir, gt_dir = work / "pred", work / "gt"
    pred_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    try:
        for i in range(args.pairs):
            if i < args.distinct:
                pred, clean = make_pair(args.size, seed=i)
                iio.imwrite(pred_dir / f"{i:05d}.png", pred)
                iio.imwrite(gt_dir / f"{i:05d}.png", clean)
            else:
                shutil.copyfile(pred_dir / f"{i % args.distinct:05d}.png", pred_dir / f"{i:05d}.png")
                shutil.copyfile(gt_dir / f"{i % args.distinct:05d}.png", gt_dir / f"{i:05d}.png")
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        report = score_folders(pred_dir, gt_dir, device=args.device, num_workers=args.workers)
        seconds = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if report["n_images"] != args.pairs:
        sys.exit(f"bench_eval: the folder row scored {report['n_images']} of {args.pairs} pairs")
    return {
        "pairs": args.pairs,
        "workers": args.workers,
        "seconds": seconds,
        "pairs_per_s": args.pairs / seconds,
        "cpu_seconds": cpu,
        "cpu_ms_per_pair": cpu / args.pairs * 1e3,
    }


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children (the DataLoader workers)."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def render(out: dict) -> str:
    size = out["size"]
    lines = [
        f"# bench_eval: {out['device']}, {out['threads']} thread(s), {size}x{size} pair, medians of "
        f"{out['repeats']} runs; torch {out['torch']}; load average {out['load_start']} -> {out['load_end']}",
        "",
        f"| {size}x{size} pair, ms | suite | scikit-image | scikit-image / suite |",
        "|---|---:|---:|---:|",
    ]
    for row in out["rows"]:
        lines.append(f"| {row['row']} | {row['suite_ms']:.1f} | {row['skimage_ms']:.1f} | {row['speedup']:.2f}x |")
    lines.append(f"| PNG decode floor (Pillow, the pair's two files) | {out['decode_pair_ms']:.1f} | | |")
    lines.append(f"| all three protocols / decode floor (target <= 4x) | {out['all_over_decode']:.2f}x | | |")
    folder = out.get("folder")
    if folder:
        lines += [
            "",
            f"folder scoring end to end: {folder['pairs']} pairs of {size}x{size}, "
            f"num_workers={folder['workers']}: {folder['seconds']:.1f} s ({folder['pairs_per_s']:.1f} pairs/s); "
            f"CPU time of all processes {folder['cpu_seconds']:.1f} s ({folder['cpu_ms_per_pair']:.1f} ms a pair)",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
