"""Benchmark SPANet's training step and its IRNN scan, side by side in one run.

    python experiments/bench_spanet.py                      # CPU, 2 threads, both sizes
    python experiments/bench_spanet.py --device cuda --json bench.json
    python experiments/bench_spanet.py --sizes small --repeats 10 --threads 2

A script of experiments/, not a suite entry point: it takes argparse options (``--help``); the suite's
commands (``python -m src.*``) take Hydra overrides.

Measured, per input size (batch 8 at 64x64 and batch 1 at 512x512, float32):

* train step = forward + backward + Adam step, loss = L1(out, target), for B_a (no SAM), SPANet (b_f)
  with the IRNN backend "auto" (named in the row), with the "naive" autograd IRNN, and with the
  "identity" IRNN (returns its input for each direction: SPANet minus the scan's cost), and the ratio
  SPANet / identity (what the scan adds to a step).
* IRNN alone: forward + backward of all four directions on a (B, 32, H, W) input for the "auto",
  "torch" and "naive" backends, and the bandwidth floor = bytes the scan must move / copy bandwidth.
  Bytes, in values of x's size N: the forward reads x (N) and writes h (4N); the backward reads dL/dh
  (4N) and, to know h, at least x (N; the C backend recomputes h from x, the torch and triton
  backends read the saved h, 4N) and writes dx (N): 11 N at least. Copy bandwidth = 2 x bytes / time
  of copying a 256 MB tensor, measured here.
* inference: SPANet (auto IRNN) on one 512x512 image, in eval mode without autograd.

Times are medians over --repeats (--repeats-large at 512x512) after --warmup runs, except the IRNN
row of the "auto" backend: --irnn-repeats (default 30) at both sizes, as it is fast and noisy on a
shared machine. The naive IRNN at
512x512 is very slow: it runs --naive-large-repeats times without warm-up (or is skipped with
--skip-naive-large); the table says so. The machine may be shared: the load average is printed before
and after; ratios measured in the same run are more trustworthy than absolute times.
--thp sets THP_MEM_ALLOC_ENABLE=1 (transparent huge pages for PyTorch's large CPU tensors) before
torch is imported: fewer page faults for fresh 100+ MB activations.

Output: a Markdown table on stdout, and with --json FILE the same numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without install

SIZES = {"small": (8, 64), "large": (1, 512)}  # name -> (batch, side)
CHANNELS = 32


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on CPU (default 2)")
    p.add_argument("--sizes", nargs="+", choices=tuple(SIZES), default=list(SIZES))
    p.add_argument("--repeats", type=int, default=5, help="timed runs at 64x64 (default 5)")
    p.add_argument("--repeats-large", type=int, default=2, help="timed runs at 512x512 (default 2)")
    p.add_argument(
        "--irnn-repeats",
        type=int,
        default=30,
        help="timed runs of the IRNN-alone rows (cheap; default 30, at both sizes)",
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before timing (default 1)")
    p.add_argument(
        "--naive-large-repeats",
        type=int,
        default=1,
        help="timed runs of the naive IRNN at 512x512, no warm-up (default 1)",
    )
    p.add_argument(
        "--skip-naive-large",
        action="store_true",
        help="do not run the naive IRNN at 512x512 (it takes minutes per SPANet step)",
    )
    p.add_argument(
        "--irnn-only",
        action="store_true",
        help="time only the IRNN rows (no SPANet train steps, no inference): a quick check",
    )
    p.add_argument("--thp", action="store_true", help="set THP_MEM_ALLOC_ENABLE=1 before importing torch")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = p.parse_args(argv)
    for name in ("threads", "repeats", "repeats_large", "irnn_repeats", "naive_large_repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.thp:
        os.environ["THP_MEM_ALLOC_ENABLE"] = "1"  # read once by torch's CPU allocator
    import torch  # after the environment is set

    from src.models.irnn import irnn, resolve_backend
    from src.models.spanet import SPANet

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_spanet: --device cuda given but torch.cuda.is_available() is False")
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def median_ms(fn, repeats, warmup):
        for _ in range(warmup):
            fn()
            sync()
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3

    load_start = _loadavg()
    src = torch.ones(64 << 20, device=device)  # 256 MB, pages touched
    dst = torch.zeros_like(src)
    copy_ms = median_ms(lambda: dst.copy_(src), repeats=10, warmup=2)  # noqa: F821 (run before the del below)
    bandwidth = 2 * src.numel() * src.element_size() / (copy_ms * 1e-3)  # bytes / s
    del src, dst

    results: dict = {}
    notes: list[str] = []
    auto = resolve_backend("auto", torch.zeros(1, device=device).view(1, 1, 1, 1))
    for size in args.sizes:
        batch, side = SIZES[size]
        large = size == "large"
        repeats = args.repeats_large if large else args.repeats
        label = f"B{batch} {side}x{side}"
        r: dict = {}

        def naive_runs():
            if large and args.skip_naive_large:
                return None
            if large:
                return dict(repeats=args.naive_large_repeats, warmup=0)
            return dict(repeats=repeats, warmup=args.warmup)

        # --- IRNN alone ---
        g = torch.Generator(device="cpu").manual_seed(0)
        shape = (batch, CHANNELS, side, side)
        x = torch.randn(shape, generator=g).to(device).requires_grad_()
        w = torch.full((4, CHANNELS), 0.2, device=device, requires_grad=True)
        b = (torch.rand(4, CHANNELS, generator=g) * 2 - 1).to(device).requires_grad_()
        grad = torch.randn((batch, 4, *shape[1:]), generator=g).to(device)

        def irnn_step(backend):  # called in this iteration, before the del below
            x.grad = w.grad = b.grad = None  # noqa: F821
            irnn(x, w, b, backend).backward(grad)  # noqa: F821

        r[f"irnn_{auto}_ms"] = median_ms(lambda: irnn_step(auto), args.irnn_repeats, args.warmup)
        if auto != "torch":
            r["irnn_torch_ms"] = median_ms(lambda: irnn_step("torch"), repeats, args.warmup)
        runs = naive_runs()
        if not runs:
            notes.append(f"{label}: naive IRNN skipped (--skip-naive-large).")
        else:
            r["irnn_naive_ms"] = median_ms(lambda: irnn_step("naive"), **runs)
            if large:
                notes.append(f"{label}: naive IRNN rows are {runs['repeats']} run(s) without warm-up.")
        r["irnn_floor_ms"] = 11 * x.numel() * x.element_size() / bandwidth * 1e3
        r["irnn_over_floor"] = r[f"irnn_{auto}_ms"] / r["irnn_floor_ms"]
        del x, w, b, grad

        results[label] = r
        if args.irnn_only:
            continue

        # --- train steps ---
        def train_ms(runs, **net_kwargs):
            torch.manual_seed(0)
            net = SPANet(**net_kwargs).to(device)
            opt = torch.optim.Adam(net.parameters(), lr=5e-4)
            inp = torch.rand(batch, 3, side, side, device=device)
            target = torch.rand(batch, 3, side, side, device=device)

            def step():
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.l1_loss(net(inp)["out"], target)
                loss.backward()
                opt.step()

            return median_ms(step, **runs)

        std = dict(repeats=repeats, warmup=args.warmup)
        r["train_b_a_ms"] = train_ms(std, variant="b_a")
        r[f"train_spanet_{auto}_ms"] = train_ms(std, variant="b_f", irnn_backend=auto)
        if runs:
            r["train_spanet_naive_ms"] = train_ms(runs, variant="b_f", irnn_backend="naive")
        r["train_spanet_identity_ms"] = train_ms(std, variant="b_f", irnn_backend="identity")
        r["spanet_over_identity"] = r[f"train_spanet_{auto}_ms"] / r["train_spanet_identity_ms"]

    # --- inference on one 512x512 image ---
    inference_ms = None
    if not args.irnn_only:
        torch.manual_seed(0)
        net = SPANet(variant="b_f", irnn_backend=auto).to(device).eval()
        image = torch.rand(1, 3, 512, 512, device=device)

        def infer():
            with torch.inference_mode():
                net(image)

        inference_ms = median_ms(infer, args.repeats_large, args.warmup)

    info = {
        "device": _device_name(torch, device),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "torch": torch.__version__,
        "irnn_auto_backend": auto,
        "thp": os.environ.get("THP_MEM_ALLOC_ENABLE", "0") == "1",
        "copy_bandwidth_GBps": bandwidth / 1e9,
        "repeats": args.repeats,
        "repeats_large": args.repeats_large,
        "irnn_repeats": args.irnn_repeats,
        "warmup": args.warmup,
        "loadavg_start": load_start,
        "loadavg_end": _loadavg(),
    }
    report = {"info": info, "results": results, "inference_512_ms": inference_ms, "notes": notes}
    print(render_markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


ROWS = [  # (key, label); {auto} is the backend "auto" resolved to
    ("train_b_a_ms", "train step, B_a (no SAM) [ms]"),
    ("train_spanet_{auto}_ms", "train step, SPANet, IRNN '{auto}' [ms]"),
    ("train_spanet_naive_ms", "train step, SPANet, IRNN 'naive' [ms]"),
    ("train_spanet_identity_ms", "train step, SPANet, IRNN 'identity' [ms]"),
    ("spanet_over_identity", "SPANet '{auto}' / identity"),
    ("irnn_{auto}_ms", "IRNN fwd+bwd, '{auto}' [ms]"),
    ("irnn_torch_ms", "IRNN fwd+bwd, 'torch' [ms]"),
    ("irnn_naive_ms", "IRNN fwd+bwd, 'naive' [ms]"),
    ("irnn_floor_ms", "IRNN bandwidth floor [ms]"),
    ("irnn_over_floor", "IRNN '{auto}' / floor"),
]


def render_markdown(report: dict) -> str:
    info, results = report["info"], report["results"]
    auto = info["irnn_auto_backend"]
    labels = list(results)
    lines = [
        f"SPANet benchmark on {info['device']}"
        + (f", {info['threads']} threads" if info["threads"] else "")
        + f", torch {info['torch']}, float32, THP {'on' if info['thp'] else 'off'}",
        f"copy bandwidth {info['copy_bandwidth_GBps']:.1f} GB/s; load average "
        f"{info['loadavg_start']} at start, {info['loadavg_end']} at end (load inflates times)",
        f"medians of {info['repeats']} runs (64x64) / {info['repeats_large']} runs (512x512) "
        f"({info['irnn_repeats']} for the IRNN '{info['irnn_auto_backend']}' row) after {info['warmup']} warm-up",
        "",
        "| | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for key, label in ROWS:
        key, label = key.format(auto=auto), label.format(auto=auto)
        if all(key not in results[c] for c in labels):
            continue
        cells = [_fmt(results[c].get(key), ratio="over" in key) for c in labels]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    if report["inference_512_ms"] is not None:
        lines.append(f"inference, SPANet '{auto}', one 512x512 image: {report['inference_512_ms']:.0f} ms")
    lines.extend(f"note: {n}" for n in report["notes"])
    return "\n".join(lines)


def _fmt(value, ratio: bool) -> str:
    if value is None:
        return "-"
    if ratio:
        return f"{value:.2f}x"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _loadavg() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _device_name(torch, device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU ({name}, {os.cpu_count()} cores)"


if __name__ == "__main__":
    main()
