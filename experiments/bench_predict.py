"""Benchmark src.predict's inference on large images: whole-image vs tiled, peak memory and seconds per megapixel.

    python experiments/bench_predict.py                            # CPU, 1 thread, 0.5 / 1 / 2 megapixels
    python experiments/bench_predict.py --megapixels 1 4 --tile 512 --overlap 128 --threads 2
    python experiments/bench_predict.py --device cuda --megapixels 4 12 24 --json bench.json

Every measurement runs in a fresh child process (so peak memory is that run's own): the child builds SPANet
(variant b_f, 32 channels, random weights: the cost does not depend on the weights), derains one random image
of the given size through :class:`src.inference.engine.Derainer` (``tile=None`` = whole image, ``tile=N`` =
N x N tiles with ``--overlap``) once to warm up on a small input, then times it --repeats times. Reported per
size and mode:

* seconds per megapixel (median over repeats; tiled runs include the overlap's extra work),
* peak resident memory of the child (CPU: ``ru_maxrss``; CUDA: the allocator's peak) and, beside it, the
  memory held before inference (Python, torch, the model), so the difference is what inference needed,
* the ratios tiled / whole, measured in the same run.

Output: a Markdown table on stdout; with --json FILE the same numbers as JSON.

``--accuracy WEIGHTS`` instead compares tiled with whole-image output of the released SPANet (the file
``weights/spanet_release.pt``) on scikit-image's 512x512 "astronaut" photo for each ``--tile`` / ``--overlap`` pair
given (e.g. ``--tile 256 384 --overlap 128 256``): PSNR of tiled vs whole (clipped to [0, 1]), mean and max
absolute difference, and the same for a randomly initialised SPANet (short-range, so tiling is exact there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(args: argparse.Namespace) -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    from src.inference.engine import Derainer
    from src.lit.module import DerainModule
    from src.models.spanet import SPANet

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    module = DerainModule(SPANet(variant="b_f"), torch.nn.L1Loss()).eval().to(device)
    tile = args.tile if args.mode == "tiled" else None
    d = Derainer(module, device, tile=tile, tile_overlap=args.overlap, batch_size=1)
    side_w = int(round((args.mp * 1e6 * 4 / 3) ** 0.5))  # 4:3 like a photo
    side_h = int(round(args.mp * 1e6 / side_w))
    x = torch.rand(1, 3, side_h, side_w)
    d.derain(torch.rand(1, 3, 64, 64))  # warm-up: IRNN library, allocator
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = _rss() if device.type == "cpu" else torch.cuda.memory_allocated()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        d.derain(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 if device.type == "cpu"
            else torch.cuda.max_memory_allocated())
    print(json.dumps({"mp": side_h * side_w / 1e6, "size": [side_h, side_w], "mode": args.mode,
                      "s_per_mp": statistics.median(times) / (side_h * side_w / 1e6), "peak_bytes": peak,
                      "before_bytes": before}))


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    for mp in args.megapixels:
        for mode in ("whole", "tiled"):
            cmd = [sys.executable, __file__, "--child", "--mp", str(mp), "--mode", mode, "--tile", str(args.tile),
                   "--overlap", str(args.overlap), "--threads", str(args.threads), "--repeats", str(args.repeats),
                   "--device", args.device]
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(ROOT))
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if res.returncode != 0:
                raise RuntimeError(f"{mode} at {mp} MP failed:\n{res.stderr[-2000:]}")
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"  {mode:5s} {mp} MP: {r['s_per_mp']:.2f} s/MP, peak {r['peak_bytes'] / 2**30:.2f} GiB", file=sys.stderr)
    return rows


def table(rows: list[dict], args: argparse.Namespace) -> str:
    gib = lambda b: f"{b / 2 ** 30:.2f}"  # noqa: E731
    lines = [f"| image | whole: s/MP | tiled {args.tile}/{args.overlap}: s/MP | time tiled/whole | whole: peak GiB "
             f"| tiled: peak GiB | peak tiled/whole | before inference GiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for mp in args.megapixels:
        w = next(r for r in rows if r["mode"] == "whole" and abs(r["mp"] - mp) < 0.01 * mp + 0.01)
        t = next(r for r in rows if r["mode"] == "tiled" and abs(r["mp"] - mp) < 0.01 * mp + 0.01)
        lines.append(f"| {w['size'][1]}x{w['size'][0]} ({w['mp']:.2f} MP) | {w['s_per_mp']:.2f} | {t['s_per_mp']:.2f} "
                     f"| {t['s_per_mp'] / w['s_per_mp']:.2f} | {gib(w['peak_bytes'])} | {gib(t['peak_bytes'])} "
                     f"| {t['peak_bytes'] / w['peak_bytes']:.2f} | {gib(w['before_bytes'])} |")
    return "\n".join(lines)


def accuracy(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from skimage import data as skdata

    sys.path.insert(0, str(ROOT))
    from src.inference.tiling import tiled_forward
    from src.models.spanet import SPANet
    from src.utils.checkpoint import load_net_weights

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.from_numpy(skdata.astronaut().astype(np.float32).transpose(2, 0, 1) / 255)[None]
    released = load_net_weights(SPANet(variant="b_d"), args.accuracy).eval()  # the release is variant b_d
    nets = {"released weights": released, "random init": SPANet().eval()}
    print("| network | tile / overlap | PSNR tiled vs whole [dB] | mean abs diff | max abs diff |")
    print("|---|---|---:|---:|---:|")
    for name, net in nets.items():
        with torch.inference_mode():
            whole = net(x)["out"].clamp(0, 1)
            for tile, overlap in zip(args.tile_list, args.overlap_list):
                tiled = tiled_forward(net, x, tile, overlap, batch_size=4)["out"].clamp(0, 1)
                d = (tiled - whole).abs()
                mse = float(d.pow(2).mean())
                psnr = "inf" if mse == 0 else f"{10 * np.log10(1 / mse):.1f}"
                print(f"| {name} | {tile} / {overlap} | {psnr} | {float(d.mean()):.2e} | {float(d.max()):.2e} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--megapixels", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    p.add_argument("--tile", type=int, nargs="+", default=[512], help="tile size (several with --accuracy)")
    p.add_argument("--overlap", type=int, nargs="+", default=[128], help="tile overlap (several with --accuracy)")
    p.add_argument("--accuracy", metavar="WEIGHTS", default=None, help="compare tiled vs whole output instead")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mp", type=float, help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["whole", "tiled"], help=argparse.SUPPRESS)
    args = p.parse_args()
    args.tile_list, args.overlap_list = args.tile, args.overlap
    args.tile, args.overlap = args.tile[0], args.overlap[0]
    if args.accuracy:
        return accuracy(args)
    if args.child:
        return child(args)
    print(f"# {platform.processor() or platform.machine()}, {args.threads} thread(s), device {args.device}, "
          f"load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    rows = run(args)
    print(table(rows, args))
    print(f"(load average after: {os.getloadavg()[0]:.1f})", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
