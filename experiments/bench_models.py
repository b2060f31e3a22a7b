"""What each network of the suite costs, side by side in one run: parameters, MACs, forward and forward+backward
time and peak memory.

    python experiments/bench_models.py                                  # CPU, 1 thread, batch 1 at 256x256
    python experiments/bench_models.py --device cuda --batch 8 --json bench_models.json
    python experiments/bench_models.py --models spanet restormer --side 128 --override restormer:model.net.dim=24

A script of experiments/, not a suite entry point: argparse options (``--help``). Every network is built from its
config (``conf/model/<name>.yaml``, default sizes), so a new model appears here as soon as its config exists; by
default every config except the SPANet ablations B_b..B_f and ``spanet_release`` (the same network as spanet).

Per model, in a fresh process of its own (so that the CPU peak-memory figures belong to that model alone):

* parameters, and MACs of one forward pass of ONE image of ``--side`` x ``--side`` (ptflops, ATen backend:
  convolutions and matrix products, see src/models/profile.py),
* forward (no autograd) and forward + backward (of the output's mean) of a batch of ``--batch`` random images:
  median seconds over ``--repeats`` after ``--warmup``, and seconds per megapixel of the batch,
* peak memory of one forward and of one forward + backward, above what was allocated before the pass (CUDA:
  PyTorch's allocated peak; CPU: peak resident memory of the process).

Networks that pad inside (to a multiple of 8, 16, a window) are timed at ``--side`` as given. The machine may be
shared: the load average is printed before and after; ratios measured in the same run are more trustworthy than
absolute times. Output: a Markdown table on stdout, and with --json FILE the same numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere without install

# variants of another row's network (same architecture): left out unless named with --models
SAME_NETWORK = ("b_b", "b_c", "b_d", "b_e", "b_f", "spanet_release")


def default_models() -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml") if p.stem not in SAME_NETWORK)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=None, help="conf/model names (default: every network, see above)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batch", type=int, default=None, help="images per pass (default 1 on CPU, 8 on CUDA)")
    p.add_argument("--side", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads on CPU (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes before them (default 1)")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="MODEL:KEY=VALUE",
        help="a Hydra override for one model, e.g. restormer:model.net.dim=24 (repeatable)",
    )
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: measure one model, print JSON
    return p.parse_args(argv)


def build(name: str, overrides: list[str]):
    """The model of ``conf/model/<name>.yaml`` (the LightningModule wrapping the network) from its config."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from src.runs.resolvers import register_resolvers

    register_resolvers()  # ${suite_run_dir} & co. in the configs

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={name}", *overrides])
    GlobalHydra.instance().clear()
    return instantiate(cfg.model, init_from=None)


def measure(args) -> dict:
    """One model's row (runs in its own process: see the module docstring)."""
    import torch

    from src.models import profile

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    overrides = [o.split(":", 1)[1] for o in args.override if o.split(":", 1)[0] == args.one]
    module = build(args.one, overrides).to(device)
    torch.manual_seed(0)
    batch = args.batch or (8 if device.type == "cuda" else 1)

    def inputs(n: int) -> dict:
        x = torch.rand(n, 3, args.side, args.side, device=device)
        return {"rain": x, "label": torch.zeros(n, dtype=torch.long, device=device)}

    row = {
        "model": args.one,
        "params": profile.count_parameters(module.net),
        "batch": batch,
        "side": args.side,
        "macs_g": profile.count_macs(module, inputs(1)) / 1e9,
    }
    x = inputs(batch)
    for name, backward in (("fwd", False), ("fwd_bwd", True)):  # the smaller pass first (CPU peak memory)
        module.train(backward)
        peak = profile.peak_memory(lambda: profile.run_pass(module, x, backward), device)
        row[f"{name}_peak_gib"] = None if peak is None else peak / 2**30
        seconds = profile.time_pass(module, x, backward, args.repeats, args.warmup)
        row[f"{name}_s"] = seconds
        row[f"{name}_s_per_mp"] = profile.seconds_per_megapixel(seconds, batch, args.side, args.side)
    return row


def run_one(args, name: str) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--one",
        name,
        "--device",
        args.device,
        "--side",
        str(args.side),
        "--threads",
        str(args.threads),
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
        *(["--batch", str(args.batch)] if args.batch else []),
        *[f"--override={o}" for o in args.override],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        return {"model": name, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(rows: list[dict]) -> str:
    head = (
        "| model | params | GMACs (1 image) | fwd s | fwd s/MP | fwd peak GiB | fwd+bwd s | fwd+bwd s/MP "
        "| fwd+bwd peak GiB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | failed: {r['error']} |||||||| ")
            continue
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['macs_g']:.2f} | {r['fwd_s']:.3f} | "
            f"{r['fwd_s_per_mp']:.3f} | {_num(r['fwd_peak_gib'], '.3f')} | {r['fwd_bwd_s']:.3f} | "
            f"{r['fwd_bwd_s_per_mp']:.3f} | {_num(r['fwd_bwd_peak_gib'], '.3f')} |"
        )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(measure(args)))
        return []
    models = args.models or default_models()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows = [run_one(args, name) for name in models]
    batch = args.batch or (8 if args.device == "cuda" else 1)
    import torch

    from src.runs.cost import device_name

    print(
        f"bench_models: {device_name(torch.device(args.device))}, threads {args.threads}, "
        f"batch {batch} at {args.side}x{args.side}, median of {args.repeats}; load average before "
        f"{load}, after {os.getloadavg() if load else None}\n"
    )
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "load": load, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
