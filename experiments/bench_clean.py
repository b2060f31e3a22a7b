"""Speed and memory of the clean-image algorithm against the per-pixel notebook reference, in one run.

    python experiments/bench_clean.py [--frames 300] [--height 1080] [--width 1920] [--crop 32] [--cache-dir DIR]

A script of experiments/, not a suite entry point: it takes argparse options (``--help``); the suite's
commands (``python -m src.*``) take Hydra overrides.

1. small clips (20 frames of 64x64, and 100 frames of 24x24 synthetic rain): our time (best of 5) and the
   per-pixel reference's (``src.make_clean.reference``, one run) on the same frames, and whether the outputs
   are identical (image and p_hat; both use exact integer luma and numpy's element-wise percentile, so they are
   equal on every machine; where not, the largest difference in grey levels and both p_hat are printed);
2. 100 frames of 1080p: our time on the whole frames, and the reference's time on a ``--crop`` x ``--crop``
   crop of the same frames, extrapolated per pixel to the whole frame;
3. ``--frames`` (300) frames of 1080p: our time and peak memory.

Times are CPU seconds of the process (``time.process_time``; the algorithm and the reference are both
single-threaded numpy, so this is the fair comparison on a shared machine whose load inflates wall-clock
time); wall-clock seconds are printed beside them.

Parts 2 and 3 read the frames band by band from a :class:`src.make_clean.io.FrameCache` (a raw file of
N x H x W x 3 bytes in ``--cache-dir``, default the system temporary folder: 1.9 GB for 300 frames of 1080p)
in a child process that imports neither torch nor the rain generator, so that its memory is the
algorithm's: the peak resident memory (Linux VmHWM, reset just before the run through
/proc/self/clear_refs) and the ``tracemalloc`` peak = memory numpy/Python allocate during ``clean_image``
(the 300-frame run is timed with tracemalloc on). The large clip is made cheaply: 8 rain layers
(``src.data.synthetic.make_rain_video`` over black, no noise) added, shifted differently each frame, over a
photo resized to the frame size, plus +-2 levels of noise. Prints a Markdown table.
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


def timed(fn, repeat: int = 1) -> tuple[float, float, object]:
    """(best CPU seconds, best wall seconds, last result) over ``repeat`` calls."""
    cpu, wall, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        out = fn()
        cpu, wall = min(cpu, time.process_time() - c), min(wall, time.perf_counter() - w)
    return cpu, wall, out


def photo(height: int, width: int) -> np.ndarray:
    from skimage.transform import resize

    from src.data.synthetic import load_photo

    return np.clip(np.round(resize(load_photo("coffee"), (height, width)) * 255), 0, 255).astype(np.uint8)


def compare(clip: np.ndarray, repeat: int = 5) -> dict:
    """Our time (best of ``repeat``) and the reference's (one run) on the same frames, and equality."""
    cpu, wall, ours = timed(lambda: clean_image(clip), repeat)
    ref_cpu, ref_wall, (ref_image, ref_p, _) = timed(lambda: reference_clean_image(clip))
    return {
        "frames": clip.shape[0],
        "size": f"{clip.shape[1]}x{clip.shape[2]}",
        "pixels": clip.shape[1] * clip.shape[2],
        "cpu": cpu,
        "wall": wall,
        "ref_cpu": ref_cpu,
        "ref_wall": ref_wall,
        "identical": bool(ours.p_hat == ref_p and np.array_equal(ours.image, ref_image)),
        "max_diff": int(np.abs(ours.image.astype(np.int16) - ref_image).max()),
        "p_hats": (ours.p_hat, ref_p),
    }


def same(s: dict) -> str:
    """The table's last column: yes, or what differs."""
    if s["identical"]:
        return "yes"
    return f"NO: max difference {s['max_diff']} grey levels, p_hat {s['p_hats'][0]} vs {s['p_hats'][1]}"


def small_case(frames: int, size: int, seed: int) -> dict:
    from src.data.synthetic import make_rain_video

    return compare(make_rain_video(photo(size, size), frames, seed=seed, density="normal"))


# --- the large clip, in a child process -------------------------------------------------------------------
def child(npz: Path, frames: int, crop: int, cache_dir: str | None) -> dict:
    """Build the large clip in a FrameCache; time clean_image on its first 100 frames (and the reference on a
    crop of them), then on all frames with tracemalloc on."""
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

        add(min(100, frames))
        out["cpu100"], out["wall100"], r = timed(lambda: clean_image(cache))
        out["frames100"], out["p_hat100"] = cache.n, r.p_hat
        y0, x0 = (h - crop) // 2, (w - crop) // 2
        part = cache.read_rows(y0, y0 + crop)[:, :, x0 : x0 + crop]
        out["crop"] = compare(np.ascontiguousarray(part), repeat=1)
        add(frames - cache.n)
        out["rss_reset"] = reset_peak_rss()
        out["rss_before_mb"] = peak_rss_mb()
        tracemalloc.start()
        out["cpu_all"], out["wall_all"], r = timed(lambda: clean_image(cache))
        out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        out["rss_after_mb"] = peak_rss_mb()
        out["frames_all"], out["p_hat_all"] = cache.n, r.p_hat
        out["cache_gb"] = cache.path.stat().st_size / 1e9
    return out


def large_case(frames: int, height: int, width: int, crop: int, cache_dir: str | None) -> dict:
    from src.data.synthetic import make_rain_video

    t = time.perf_counter()
    layers = make_rain_video(
        np.zeros((height, width, 3), np.uint8), LAYERS, seed=1, density="normal", noise_sigma=0.0, flicker=0.0
    )
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        npz = Path(tmp) / "clip.npz"
        np.savez(npz, background=photo(height, width), layers=layers)
        del layers
        print(
            f"[bench] rain layers {time.perf_counter() - t:.1f} s; running the {frames}-frame clip in a child",
            file=sys.stderr,
        )
        cmd = [sys.executable, __file__, "--child", str(npz), "--frames", str(frames), "--crop", str(crop)]
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
    ap.add_argument("--crop", type=int, default=32, help="side of the crop the reference runs on in part 2")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.frames, args.crop, args.cache_dir)))
        return 0

    small = [small_case(20, 64, 0), small_case(100, 24, 1)]
    big = large_case(args.frames, args.height, args.width, args.crop, args.cache_dir)
    crop = big["crop"]
    scale = args.height * args.width / crop["pixels"]
    ref_cpu, ref_wall = crop["ref_cpu"] * scale, crop["ref_wall"] * scale
    size = f"{args.height}x{args.width}"
    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"
    lines = [
        f"Clean-image benchmark: {platform.machine()}, {os.cpu_count()} CPUs, load average {load}, "
        f"numpy {np.__version__}. Seconds: CPU time (wall clock in brackets).",
        "",
        "| clip | frames | size | ours | per-pixel reference | speed-up (CPU) | identical output |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in small + [crop]:
        what = "1080p crop" if s is crop else "synthetic rain"
        lines.append(
            f"| {what} | {s['frames']} | {s['size']} | {s['cpu']:.4f} ({s['wall']:.4f}) | "
            f"{s['ref_cpu']:.2f} ({s['ref_wall']:.2f}) | {s['ref_cpu'] / s['cpu']:.0f}x | "
            f"{same(s)} |"
        )
    lines.append(
        f"| synthetic rain | {big['frames100']} | {size} | {big['cpu100']:.2f} ({big['wall100']:.2f}) | "
        f"{ref_cpu:.0f} ({ref_wall:.0f}), extrapolated from the crop: "
        f"{crop['ref_cpu'] / crop['pixels'] * 1e6:.0f} us per pixel | {ref_cpu / big['cpu100']:.0f}x | - |"
    )
    lines.append(
        f"| synthetic rain | {big['frames_all']} | {size} | {big['cpu_all']:.2f} ({big['wall_all']:.2f}), "
        f"tracemalloc on | - | - | - |"
    )
    lines += [
        "",
        f"{big['frames_all']} frames of {size}: frame cache {big['cache_gb']:.2f} GB on disk; numpy/Python "
        f"allocations during clean_image peak at {big['tracemalloc_peak_mb']:.1f} MB (tracemalloc); the child "
        f"process's peak resident memory during that run is {big['rss_after_mb']:.0f} MB "
        f"({'VmHWM reset to' if big['rss_reset'] else 'peak so far'} {big['rss_before_mb']:.0f} MB just before it: "
        f"interpreter, numpy, the clip's background and rain layers). "
        f"p_hat = {big['p_hat100']} ({big['frames100']} frames), {big['p_hat_all']} ({big['frames_all']} frames).",
    ]
    print("\n".join(lines))
    return 0 if all(s["identical"] for s in small + [crop]) else 1


if __name__ == "__main__":
    sys.exit(main())
