"""Benchmark whole-image and tiled inference on large photos, before/after: bytes per pixel, seconds per megapixel,
and PSNR, for SPANet, B_a and the released weights, each measurement in a fresh process.

    python experiments/bench_predict.py --baseline 6deeb2f                 # 1 and 4 MP, this tree vs 6deeb2f
    python experiments/bench_predict.py --megapixels 16 --no-tiled         # this tree only (no --baseline)
    python experiments/bench_predict.py --baseline HEAD~3 --models spanet --megapixels 4 --threads 1 2 \\
        --timeline timeline.csv --json bench.json

Inputs: one rain/clean pair per size, made here: scikit-image's "coffee" photo resized to the size (4:3) with the
suite's synthetic rain (src/data/synthetic.py, seed 0) on it. Models: ``spanet`` (variant b_f, random weights:
memory and time do not depend on the weights), ``b_a`` (random), ``spanet_release`` (weights/spanet_release.pt).

``--baseline REV`` exports that revision of this repository (``git archive``) into a temporary folder and runs
the same measurement with its code, alternating old and new runs so that both see the same machine load. Each run
is a child process that builds the model, derains a 64x64 image (warm-up: compiled kernels, allocator), returns
freed heap to the OS, reads its resident memory (the baseline), resets the kernel's peak counter (VmHWM) and
derains the image under ``torch.inference_mode``. Reported per run:

* bytes per pixel: (peak resident memory - baseline) / pixels;
* seconds per megapixel (wall clock), and the CPU time split into user and system time (system time is the
  kernel's: mostly page faults on freshly allocated memory);
* PSNR [dB] of the output against the clean image (outputs clipped to [0, 1]), and for tiled runs against the
  whole-image output of the same code; ``|new - old|``: the largest difference of this tree's whole-image
  output from the baseline's.

Tiled runs (this tree only) use ``--tile`` pixels and the model's measured overlap
(:func:`src.inference.tiling.auto_overlap`, the overlap ``tile=auto`` uses). ``--threads 1 2`` adds a line per
thread count for this tree's whole-image run at the largest size (thread scaling). ``--timeline FILE`` records the
resident memory every 50 ms during this tree's (and the baseline's) whole-image run of the first model at the
largest baseline size: a CSV, a condensed table on stdout, and FILE.png when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("spanet", "b_a", "spanet_release")


# --- the child: one measurement ---------------------------------------------------------------------------------
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _build(name: str, code: Path):
    import torch

    from src.models.spanet import SPANet

    torch.manual_seed(0)
    if name == "spanet_release":
        from src.utils.checkpoint import load_net_weights

        return load_net_weights(SPANet(variant="b_d"), str(code / "weights" / "spanet_release.pt")).eval()
    return SPANet(variant="b_f" if name == "spanet" else name).eval()


def child(args: argparse.Namespace) -> None:
    import ctypes

    import torch

    sys.path.insert(0, str(args.code))
    torch.set_num_threads(args.threads)
    net = _build(args.model, args.code)
    x = torch.from_numpy(np.load(args.input))[None]
    with torch.inference_mode():
        net(torch.rand(1, 3, 64, 64))
        run = lambda: net(x)["out"]  # noqa: E731
        tiled = {}
        if args.mode == "tiled":
            from src.inference.tiling import auto_overlap, tiled_forward

            tiled = {"tile": args.tile, "overlap": auto_overlap(net)}
            run = lambda: tiled_forward(net, x, args.tile, tiled["overlap"], batch_size=1)["out"]  # noqa: E731
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        base = _rss()
        Path("/proc/self/clear_refs").write_text("5")
        samples, stop = [], threading.Event()
        watcher = threading.Thread(target=_watch, args=(samples, stop, time.perf_counter()), daemon=True)
        if args.timeline:
            watcher.start()
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        out = run()
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        stop.set()
    peak = _hwm() - base
    np.save(args.save, out[0].float().numpy())
    if args.timeline:
        watcher.join()
        Path(args.timeline).write_text(
            "t_s,rss_above_baseline_bytes\n" + "".join(f"{t:.3f},{rss - base}\n" for t, rss in samples)
        )
    print(
        json.dumps(
            {
                "wall_s": wall,
                "user_s": r1.ru_utime - r0.ru_utime,
                "sys_s": r1.ru_stime - r0.ru_stime,
                "peak_bytes": peak,
                "baseline_bytes": base,
                **tiled,
            }
        )
    )


def _watch(samples: list, stop: threading.Event, t0: float) -> None:
    while not stop.is_set():
        samples.append((time.perf_counter() - t0, _rss()))
        stop.wait(0.05)
    samples.append((time.perf_counter() - t0, _rss()))


# --- the parent ---------------------------------------------------------------------------------------------
def make_pair(mp: float, folder: Path) -> tuple[Path, Path, tuple[int, int]]:
    """rain.npy / clean.npy (3, H, W) float32 of about ``mp`` megapixels, 4:3."""
    sys.path.insert(0, str(ROOT))
    from skimage import data as skdata
    from skimage.transform import resize

    from src.data.synthetic import make_rain_pair

    w = int(round((mp * 1e6 * 4 / 3) ** 0.5))
    h = int(round(mp * 1e6 / w))
    clean = resize(skdata.coffee().astype(np.float32) / 255, (h, w), order=1, anti_aliasing=False).astype(np.float32)
    rain, _ = make_rain_pair(clean, 1, np.random.default_rng(0))
    paths = folder / f"rain_{mp:g}.npy", folder / f"clean_{mp:g}.npy"
    for p, img in zip(paths, (rain, clean)):
        np.save(p, np.ascontiguousarray(np.clip(img, 0, 1).transpose(2, 0, 1), dtype=np.float32))
    return paths[0], paths[1], (h, w)


def export_revision(rev: str, folder: Path) -> Path:
    """The files of ``rev`` (git archive) under folder/code."""
    code = folder / "baseline"
    code.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
    return code


def measure(code: Path, model: str, rain: Path, mode: str, threads: int, args, save: Path, timeline: str = "") -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--code",
        str(code),
        "--model",
        model,
        "--input",
        str(rain),
        "--mode",
        mode,
        "--threads",
        str(threads),
        "--tile",
        str(args.tile),
        "--save",
        str(save),
    ]
    if timeline:
        cmd += ["--timeline", timeline]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(code))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=code)
    if res.returncode != 0:
        raise RuntimeError(f"{model} {mode} ({code}) failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2, dtype=np.float64))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def run(args: argparse.Namespace, tmp: Path) -> list[dict]:
    base_code = export_revision(args.baseline, tmp) if args.baseline else None
    rows = []
    largest_base = max([mp for mp in args.megapixels if mp <= args.baseline_max_mp] or [0])
    for mp in args.megapixels:
        rain, clean_path, (h, w) = make_pair(mp, tmp)
        clean = np.load(clean_path)
        for model in args.models:
            codes = [("new", ROOT)]
            if base_code is not None and mp <= args.baseline_max_mp:
                codes.insert(0, ("old", base_code))  # alternating: old, new, old, new ...
            outs = {}
            for rep in range(args.repeats):
                for label, code in codes:
                    tl = ""
                    if args.timeline and rep == 0 and mp == largest_base and model == args.models[0]:
                        tl = str(tmp / f"timeline_{label}.csv")
                    save = tmp / f"{label}_{model}_{mp:g}.npy"
                    r = measure(code, model, rain, "whole", args.threads[0], args, save, tl)
                    outs[label] = np.load(save)
                    rows.append(
                        _row(
                            r,
                            label,
                            model,
                            mp,
                            (h, w),
                            "whole",
                            args.threads[0],
                            outs[label],
                            clean,
                            outs.get("old") if label == "new" else None,
                            None,
                            timeline=tl,
                        )
                    )
                    _progress(rows[-1])
            if not args.no_tiled:
                save = tmp / f"tiled_{model}_{mp:g}.npy"
                r = measure(ROOT, model, rain, "tiled", args.threads[0], args, save)
                rows.append(
                    _row(r, "new", model, mp, (h, w), "tiled", args.threads[0], np.load(save), clean, None, outs["new"])
                )
                _progress(rows[-1])
            if mp == max(args.megapixels) and model == args.models[0]:
                for threads in args.threads[1:]:
                    r = measure(ROOT, model, rain, "whole", threads, args, tmp / "threads.npy")
                    rows.append(
                        _row(
                            r,
                            "new",
                            model,
                            mp,
                            (h, w),
                            "whole",
                            threads,
                            np.load(tmp / "threads.npy"),
                            clean,
                            None,
                            None,
                        )
                    )
                    _progress(rows[-1])
    return rows


def _row(r, label, model, mp, size, mode, threads, out, clean, old_out, whole_out, timeline="") -> dict:
    px = size[0] * size[1]
    row = {
        "code": label,
        "model": model,
        "mp": px / 1e6,
        "size": list(size),
        "mode": mode,
        "threads": threads,
        "bytes_per_px": r["peak_bytes"] / px,
        "s_per_mp": r["wall_s"] / (px / 1e6),
        "cpu_s_per_mp": (r["user_s"] + r["sys_s"]) / (px / 1e6),
        "user_s": r["user_s"],
        "sys_s": r["sys_s"],
        "psnr_clean": psnr(out, clean),
        "tile": r.get("tile"),
        "overlap": r.get("overlap"),
        "timeline": timeline,
    }
    if old_out is not None:
        row["max_abs_vs_old"] = float(np.abs(out - old_out).max())
    if whole_out is not None:
        row["psnr_vs_whole"] = psnr(out, whole_out)
        row["delta_vs_clean_db"] = row["psnr_clean"] - psnr(whole_out, clean)
    return row


def _progress(r: dict) -> None:
    print(
        f"  {r['code']} {r['model']} {r['mp']:.1f} MP {r['mode']} x{r['threads']}: {r['bytes_per_px']:.0f} B/px, "
        f"{r['s_per_mp']:.1f} s/MP (user {r['user_s']:.0f} s, sys {r['sys_s']:.0f} s), load "
        f"{os.getloadavg()[0]:.1f}",
        file=sys.stderr,
        flush=True,
    )


def table(rows: list[dict]) -> str:
    fmt = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
    lines = [
        "| model | MP | code | mode | threads | B/px | s/MP | CPU s/MP | sys/user | PSNR vs clean | "
        "tiled vs whole | tiled - whole vs clean | new/old time | new/old CPU time | new/old B/px | max abs new-old |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        old = _baseline_rows(rows, r)
        ratio_t = ratio_c = ratio_b = None
        if r["code"] == "new" and r["mode"] == "whole" and old:
            ratio_t = r["s_per_mp"] / _median([o["s_per_mp"] for o in old])
            ratio_c = r["cpu_s_per_mp"] / _median([o["cpu_s_per_mp"] for o in old])
            ratio_b = r["bytes_per_px"] / _median([o["bytes_per_px"] for o in old])
        mode = r["mode"] if r["mode"] == "whole" else f"tiled {r['tile']}/{r['overlap']}"
        lines.append(
            f"| {r['model']} | {r['mp']:.2f} | {r['code']} | {mode} | {r['threads']} | "
            f"{r['bytes_per_px']:.0f} | {r['s_per_mp']:.1f} | {r['cpu_s_per_mp']:.1f} | "
            f"{r['sys_s'] / max(r['user_s'], 1e-9):.2f} | {r['psnr_clean']:.2f} | "
            f"{fmt(r.get('psnr_vs_whole'), '.1f')} | {fmt(r.get('delta_vs_clean_db'), '+.3f')} | {fmt(ratio_t, '.2f')} | {fmt(ratio_c, '.2f')} | "
            f"{fmt(ratio_b, '.2f')} | "
            f"{fmt(r.get('max_abs_vs_old'), '.1e')} |"
        )
    return "\n".join(lines)


def verdicts(rows: list[dict], max_bpp: float = 500, max_time: float = 0.5, max_diff: float = 1e-6) -> str:
    """The issue's targets, read off the rows: whole-image bytes per pixel, time against the baseline, output
    against the baseline's, per model and size (1-thread runs); and per model the tile overlap used and whether
    the tiled output stays within 0.1 dB of the whole image against the clean image."""
    lines = []
    for r in rows:
        if r["code"] != "new" or r["mode"] != "whole" or r["threads"] != rows[0]["threads"]:
            continue
        old = _baseline_rows(rows, r)
        parts = [f"{r['bytes_per_px']:.0f} B/px ({'<=' if r['bytes_per_px'] <= max_bpp else '>'} {max_bpp:g})"]
        if old:
            t = r["s_per_mp"] / _median([o["s_per_mp"] for o in old])
            d = r["max_abs_vs_old"]
            parts += [
                f"time {t:.2f}x the baseline ({'<=' if t <= max_time else '>'} {max_time:g})",
                f"max |new - old| {d:.1e} ({'<=' if d <= max_diff else '>'} {max_diff:g})",
            ]
        lines.append(f"{r['model']} {r['mp']:.1f} MP whole: " + ", ".join(parts))
    for r in rows:
        if r["mode"] == "tiled":
            ok = abs(r["delta_vs_clean_db"]) <= 0.1
            lines.append(
                f"{r['model']} {r['mp']:.1f} MP tiles {r['tile']}, overlap {r['overlap']}: tiled - whole against the "
                f"clean image {r['delta_vs_clean_db']:+.3f} dB ({'within' if ok else 'NOT within'} 0.1 dB)"
            )
    return "\n".join(lines)


def _baseline_rows(rows: list[dict], r: dict) -> list[dict]:
    """The baseline's ("old") runs of ``r``'s model and size."""
    return [o for o in rows if o["code"] == "old" and o["model"] == r["model"] and abs(o["mp"] - r["mp"]) < 1e-3]


def _median(v: list[float]) -> float:
    return float(np.median(v))


def timeline_report(rows: list[dict], out: Path) -> str:
    """The recorded timelines: CSV files next to ``out``, a condensed table, and a PNG when matplotlib exists."""
    runs = [(r["code"], Path(r["timeline"])) for r in rows if r.get("timeline")]
    if not runs:
        return ""
    lines = ["| run | " + " | ".join(f"{k / 10:.0%}" for k in range(11)) + " | peak GB |", "|---|" + "---:|" * 12]
    curves = {}
    for label, path in runs:
        data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        curves[label] = data
        shutil.copy(path, out.with_name(f"{out.stem}_{label}{out.suffix}"))
        at = [data[min(int(k / 10 * (len(data) - 1)), len(data) - 1), 1] / 1e9 for k in range(11)]
        lines.append(
            f"| {label} ({data[-1, 0]:.0f} s) | "
            + " | ".join(f"{v:.2f}" for v in at)
            + f" | {data[:, 1].max() / 1e9:.2f} |"
        )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5))
        for label, data in curves.items():
            ax.plot(data[:, 0], data[:, 1] / 1e9, label=label)
        ax.set_xlabel("seconds")
        ax.set_ylabel("resident memory above baseline [GB]")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out.with_suffix(".png"), dpi=100)
    except ImportError:
        pass
    return "resident memory above the baseline [GB] at 0 %, 10 %, ... of each run (sampled every 50 ms):\n" + "\n".join(
        lines
    )


def main(argv: list[str] | None = None) -> list[dict] | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--megapixels", type=float, nargs="+", default=[1.0, 4.0])
    p.add_argument("--baseline", default=None, help="git revision to compare with (exported with git archive)")
    p.add_argument("--baseline-max-mp", type=float, default=4.0, help="largest size run with the baseline's code")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--no-tiled", action="store_true", help="whole-image runs only")
    p.add_argument("--threads", type=int, nargs="+", default=[1], help="first: every run; others: scaling lines")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--timeline", default=None, help="CSV file for the resident-memory timeline (and .png)")
    p.add_argument("--json", default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--code", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["whole", "tiled"], help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.threads = args.threads[0]
        return child(args)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, threads {args.threads}, "
        f"load average {os.getloadavg()[0]:.1f}",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        rows = run(args, Path(tmp))
        print(table(rows))
        print(verdicts(rows))
        if args.timeline:
            print(timeline_report(rows, Path(args.timeline)))
    print(f"(load average after: {os.getloadavg()[0]:.1f})", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2)
        )
    return rows


if __name__ == "__main__":
    main()
