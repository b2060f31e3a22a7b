"""Speed and memory of the clean-image algorithm against the per-pixel notebook reference, in one run.

    python experiments/bench_clean.py [--frames 300] [--height 1080] [--width 1920] [--cache-dir DIR]

1. small clips (20 frames of 64x64, and 100 frames of 24x24): our time (best of 5) and the per-pixel
   reference's (``src.make_clean.reference``, one run) on the same synthetic rain frames, and whether the
   outputs are identical (image and p_hat);
2. the reference's time per pixel at 100 frames, extrapolated to 100 frames of 1080p, against our measured
   time on 100 frames of 1080p;
3. our time and peak memory on ``--frames`` (300) frames of 1080p, read band by band from a
   :class:`src.make_clean.io.FrameCache` (a raw file of N x H x W x 3 bytes in ``--cache-dir``, default the
   system temporary folder: 1.9 GB for 300 frames of 1080p). Runs in a child process that imports neither
   torch nor this script's generator, so its resident memory is the algorithm's: the peak (Linux VmHWM,
   reset just before the run through /proc/self/clear_refs) and the ``tracemalloc`` peak = memory allocated
   by numpy/Python during ``clean_image`` (the 300-frame run is timed with tracemalloc on).

The large clip is made cheaply: 8 rain layers (``src.data.synthetic.make_rain_video`` over black, no noise)
added, shifted differently each frame, over a photo resized to the frame size, plus +-2 levels of noise.
Prints a Markdown table. Timings depend on the machine and its load (printed with the results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from src.make_clean.algorithm import clean_image
from src.make_clean.io import FrameCache
from src.make_clean.reference import reference_clean_image

LAYERS = 8


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: VmHWM on Linux (ru_maxrss would include the parent's
    memory, which Linux carries over through fork + exec), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB elsewhere


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current resident size (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def photo(height: int, width: int) -> np.ndarray:
    from skimage.transform import resize

    from src.data.synthetic import load_photo

    return np.clip(np.round(resize(load_photo("coffee"), (height, width)) * 255), 0, 255).astype(np.uint8)


def small_case(frames: int, size: int, seed: int) -> dict:
    from src.data.synthetic import make_rain_video

    clip = make_rain_video(photo(size, size), frames, seed=seed, density="normal")
    t_ours, ours = best_time(lambda: clean_image(clip), 5)
    t = time.perf_counter()
    ref_image, ref_p, _ = reference_clean_image(clip)
    t_ref = time.perf_counter() - t
    return {"frames": frames, "size": f"{size}x{size}", "pixels": size * size, "ours": t_ours, "ref": t_ref,
            "identical": bool(ours.p_hat == ref_p and np.array_equal(ours.image, ref_image))}


# --- the large clip, in a child process -------------------------------------------------------------------
def child(npz: Path, frames: int, cache_dir: str | None) -> dict:
    """Build the large clip in a FrameCache, then time clean_image on its first 100 frames and on all."""
    data = np.load(npz)
    bg, layers = data["background"], data["layers"]
    h, w = bg.shape[:2]
    rng = np.random.default_rng(0)
    out: dict = {}
    with FrameCache(h, w, cache_dir) as cache:
        def add(n: int) -> None:
            for _ in range(n):
                t = cache.n
                rain = np.roll(layers[t % LAYERS], ((t * 37) % h, (t * 53) % w), axis=(0, 1))
                frame = bg.astype(np.int16) + rain + rng.integers(-2, 3, size=bg.shape, dtype=np.int16)
                cache.append(np.clip(frame, 0, 255).astype(np.uint8))

        first = min(100, frames)
        add(first)
        out["rss_build_mb"] = peak_rss_mb()
        out["t100"], r = best_time(lambda: clean_image(cache), 1)
        out["frames100"], out["p_hat100"] = first, r.p_hat
        add(frames - first)
        out["rss_reset"] = reset_peak_rss()
        out["rss_before_mb"] = peak_rss_mb()
        tracemalloc.start()
        t = time.perf_counter()
        r = clean_image(cache)
        out["t_all"] = time.perf_counter() - t
        out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        out["rss_after_mb"] = peak_rss_mb()
        out["frames_all"], out["p_hat_all"] = cache.n, r.p_hat
        out["cache_gb"] = cache.path.stat().st_size / 1e9
    return out


def large_case(frames: int, height: int, width: int, cache_dir: str | None) -> dict:
    from src.data.synthetic import make_rain_video

    t = time.perf_counter()
    layers = make_rain_video(np.zeros((height, width, 3), np.uint8), LAYERS, seed=1, density="normal",
                             noise_sigma=0.0, flicker=0.0)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        npz = Path(tmp) / "clip.npz"
        np.savez(npz, background=photo(height, width), layers=layers)
        del layers
        print(f"[bench] rain layers {time.perf_counter() - t:.1f} s; running the {frames}-frame clip in a child",
              file=sys.stderr)
        cmd = [sys.executable, __file__, "--child", str(npz), "--frames", str(frames)]
        if cache_dir:
            cmd += ["--cache-dir", cache_dir]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=300, help="frames of the large clip")
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.frames, args.cache_dir)))
        return 0

    small = [small_case(20, 64, 0), small_case(100, 24, 1)]
    per_px_100 = small[1]["ref"] / small[1]["pixels"]
    big = large_case(args.frames, args.height, args.width, args.cache_dir)
    px = args.height * args.width
    size = f"{args.height}x{args.width}"
    ref_big = per_px_100 * px * big["frames100"] / 100
    lines = [
        f"Clean-image benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan'):.1f}, "
        f"numpy {np.__version__}",
        "",
        "| clip | frames | size | ours (s) | per-pixel reference (s) | speed-up | identical output |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in small:
        lines.append(f"| synthetic rain | {s['frames']} | {s['size']} | {s['ours']:.4f} | {s['ref']:.2f} | "
                     f"{s['ref'] / s['ours']:.0f}x | {'yes' if s['identical'] else 'NO'} |")
    lines.append(f"| synthetic rain | {big['frames100']} | {size} | {big['t100']:.2f} | {ref_big:.0f} "
                 f"(extrapolated: {per_px_100 * 1e6:.0f} us/pixel at 100 frames) | {ref_big / big['t100']:.0f}x | "
                 f"(reference not run) |")
    lines.append(f"| synthetic rain | {big['frames_all']} | {size} | {big['t_all']:.2f} (tracemalloc on) | - | - | - |")
    lines += [
        "",
        f"{big['frames_all']} frames of {size}: frame cache {big['cache_gb']:.2f} GB on disk; numpy/Python "
        f"allocations during clean_image peak at {big['tracemalloc_peak_mb']:.1f} MB (tracemalloc); the child "
        f"process's peak resident memory during that run is {big['rss_after_mb']:.0f} MB "
        f"({'VmHWM reset to' if big['rss_reset'] else 'peak so far'} {big['rss_before_mb']:.0f} MB just before it: "
        f"interpreter, numpy, the clip's background and rain layers). "
        f"p_hat = {big['p_hat100']} (100 frames), {big['p_hat_all']} ({big['frames_all']} frames).",
    ]
    print("\n".join(lines))
    return 0 if all(s["identical"] for s in small) else 1


if __name__ == "__main__":
    sys.exit(main())
