"""Training throughput of a recipe, end to end (real loader on a generated SPA-Data-like tree), and what each
speed option changes, side by side in one run.

    python experiments/bench_train.py                                  # CPU: spanet recipe, smaller batch/crop
    python experiments/bench_train.py --device cuda --batch 32 --crop 256 --json bench_train.json
    python experiments/bench_train.py --recipe rescan --options default bf16 channels_last

What runs: the recipe's network, loss, optimiser and learning-rate schedule (``conf/recipe/<name>.yaml``) fed
by ``data=realrain`` (the release's random-resized crop to ``--crop``, decoding PNG files with ``--workers``
loader processes) from a SPA-Data-like tree of ``--pairs`` 256x256 PNG pairs written to a temporary folder.
Each step is split into

* data wait: ``next(loader)`` + the copy to the device (what the GPU would idle for),
* forward + backward: the network, the recipe's loss (float32) and ``backward()``,
* optimiser: ``optimizer.step()``, ``zero_grad()``, the scheduler step,

timed with a device synchronisation between the parts (so the parts add up to the step). All rows are set up
side by side and their timed steps interleaved (one step of each row in turn, ``--steps`` rounds, after
``--warmup`` untimed steps each; compilation happens in warm-up), so a change of load on a shared machine hits
every row alike; medians. The projected wall time is the recipe's
``schedule.max_steps`` x the median step, training only (validation excluded).

Rows (``--options``): ``default`` (float32, NCHW, eager), ``bf16`` (autocast bfloat16, as
``trainer.precision=bf16-mixed``: the IRNN recurrence and the loss stay float32), ``channels_last``
(``speed.channels_last``), ``compile`` (``speed.compile``, inductor), ``cudnn_benchmark``
(``trainer.benchmark``; CUDA only), ``pin_memory`` (``data.pin_memory`` + ``persistent_workers``; CUDA only,
needs --workers > 0). The ratio column is default step time / the row's step time (> 1: faster).
The machine may be shared: ratios measured in one run are more trustworthy than absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without install

OPTIONS = ("default", "bf16", "channels_last", "compile", "cudnn_benchmark", "pin_memory")
CUDA_ONLY = ("cudnn_benchmark", "pin_memory")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="spanet", help="conf/recipe/<name>.yaml (default spanet)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--batch", type=int, default=None, help="global batch (default: the recipe's)")
    p.add_argument(
        "--crop",
        type=int,
        default=None,
        help="training crop side (default: the recipe's schedule.train_patch or realrain's 256)",
    )
    p.add_argument("--steps", type=int, default=10, help="timed steps per row (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per row (default 2)")
    p.add_argument("--workers", type=int, default=2, help="data loader worker processes (default 2)")
    p.add_argument("--pairs", type=int, default=64, help="training pairs in the generated tree (default 64)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on CPU (default 2)")
    p.add_argument("--options", nargs="+", choices=OPTIONS, default=list(OPTIONS))
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    return p.parse_args(argv)


# --- a SPA-Data-like tree ------------------------------------------------------------------------------------
def make_spa_tree(root: Path, pairs: int, side: int = 256, seed: int = 0) -> Path:
    """``pairs`` rainy/clean 256x256 PNG pairs in SPA-Data's layout (list file, scene folders, test folder), made
    from the photos bundled with scikit-image with the suite's synthetic rain (src/data/synthetic.py)."""
    import imageio.v3 as iio
    import numpy as np

    from src.data.synthetic import PHOTOS, load_photo, make_rain_pair

    rng = np.random.default_rng(seed)
    names = [n for n in PHOTOS if min(load_photo(n).shape[:2]) >= side]
    lines = []
    for k in range(pairs):
        scene, frame, pos = f"{k // 8:03d}", 1 + k % 2, (k // 2) % 4
        photo = load_photo(names[k % len(names)])
        y = int(rng.integers(photo.shape[0] - side + 1))
        x = int(rng.integers(photo.shape[1] - side + 1))
        clean = photo[y : y + side, x : x + side]
        rain, _ = make_rain_pair(clean, int(rng.integers(3)), rng)
        rain_rel = f"real_world/{scene}/{scene}-{frame}/{scene}-{frame}_{pos}_0.png"
        clean_rel = f"real_world_gt/{scene}/{scene}_{pos}_0.png"
        for rel, img in ((rain_rel, rain), (clean_rel, clean)):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            iio.imwrite(root / rel, (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
        lines.append(f"/{rain_rel} /{clean_rel}")
    (root / "real_world.txt").write_text("\n".join(lines) + "\n")
    for i in range(2):  # a test split, as the data module expects one
        for sub, name in (("rain", f"{i:03d}.png"), ("gt", f"{i:03d}gt.png")):
            (root / "real_test_1000" / sub).mkdir(parents=True, exist_ok=True)
            iio.imwrite(root / "real_test_1000" / sub / name, np.full((64, 64, 3), 128, np.uint8))
    return root


# --- one row ----------------------------------------------------------------------------------------------
def compose(args, root: Path, option: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from src.runs.resolvers import register_resolvers

    register_resolvers()  # the configs' ${suite_*}

    overrides = [
        f"recipe={args.recipe}",
        "data=realrain",
        f"data.root={root}",
        "data.val_scenes=0",
        f"data.num_workers={args.workers}",
        "data.check_orientation=false",
    ]
    if args.batch:
        overrides.append(f"schedule.batch_size={args.batch}")
    if args.crop:
        overrides.append(f"schedule.train_patch={args.crop}")
    if option == "pin_memory":
        overrides += ["data.pin_memory=true", "+data.persistent_workers=true"]
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Row:
    """One option's training set-up (network, optimiser, loader); :meth:`step` runs and times one step."""

    def __init__(self, args, root: Path, option: str) -> None:
        import torch
        from hydra.utils import instantiate

        self.option = option
        self.cfg = cfg = compose(args, root, option)
        self.device = device = torch.device(args.device)
        torch.manual_seed(0)
        dm = instantiate(cfg.data)
        dm.setup("fit")
        self.module = module = instantiate(cfg.model).to(device)
        if option == "channels_last":
            module.net.to(memory_format=torch.channels_last)
        if option == "compile":
            module.net.compile()
        opt_conf = module.configure_optimizers()
        self.optimizer = opt_conf["optimizer"] if isinstance(opt_conf, dict) else opt_conf
        self.scheduler = opt_conf["lr_scheduler"]["scheduler"] if isinstance(opt_conf, dict) else None
        self.loader = dm.train_dataloader()
        self.it = iter(self.loader)
        self.parts: dict[str, list[float]] = {"data_wait": [], "fwd_bwd": [], "optimizer": []}

    def step(self, record: bool) -> None:
        import torch

        from src.lit.module import _float32

        torch.backends.cudnn.benchmark = self.option == "cudnn_benchmark"
        device, module = self.device, self.module
        t0 = time.perf_counter()
        try:
            batch = next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            batch = next(self.it)
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        sync(device)
        t1 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.option == "bf16"):
            out = module(batch["rain"], batch.get("label"))
        with torch.autocast(device.type, enabled=False):
            loss, _ = module.loss(_float32(out), batch)
        loss.backward()
        sync(device)
        t2 = time.perf_counter()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        sync(device)
        t3 = time.perf_counter()
        if record:
            for k, v in zip(self.parts, (t1 - t0, t2 - t1, t3 - t2)):
                self.parts[k].append(v)

    def result(self) -> dict:
        med = {k: statistics.median(v) for k, v in self.parts.items()}
        step_s = statistics.median([a + b + c for a, b, c in zip(*self.parts.values())])
        cfg = self.cfg
        return {
            "option": self.option,
            "batch": int(cfg.schedule.batch_size),
            "crop": int(cfg.data.train_patch or 256),
            "max_steps": int(cfg.schedule.max_steps),
            **{f"{k}_ms": 1e3 * v for k, v in med.items()},
            "step_ms": 1e3 * step_s,
            "it_per_s": 1 / step_s,
            "projected_h": cfg.schedule.max_steps * step_s / 3600,
        }


def device_line(device: str) -> str:
    import torch

    if device == "cuda":
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    from src.runs.cost import cpu_name

    return f"{os.cpu_count()}-core CPU ({cpu_name()}), {torch.get_num_threads()} threads, torch {torch.__version__}"


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    import torch

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    elif not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    options = [o for o in args.options if args.device == "cuda" or o not in CUDA_ONLY]
    skipped = sorted(set(args.options) - set(options))
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        root = make_spa_tree(Path(tmp) / "SPA-Data", args.pairs)
        set_ups = [Row(args, root, option) for option in options]
        for r in set_ups:  # warm-up (compilation, cuDNN autotuning, loader workers starting)
            print(f"... warm-up {r.option}", file=sys.stderr, flush=True)
            for _ in range(args.warmup):
                r.step(record=False)
        for n in range(args.steps):  # interleaved: a change of load on a shared machine hits every row alike
            print(f"... round {n + 1}/{args.steps}", file=sys.stderr, flush=True)
            for r in set_ups:
                r.step(record=True)
        rows = [r.result() for r in set_ups]
    base = next((r for r in rows if r["option"] == "default"), rows[0])
    for r in rows:
        r["ratio"] = base["step_ms"] / r["step_ms"]
    r0 = rows[0]
    print(
        f"\n{args.recipe} recipe, batch {r0['batch']} at {r0['crop']}x{r0['crop']}, {args.workers} loader "
        f"workers, {args.steps} timed steps after {args.warmup}; {device_line(args.device)}; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"\n| option | data wait ms | fwd+bwd ms | optimizer ms | step ms | it/s | {r0['max_steps']} steps, h "
        f"| x default |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['option']} | {r['data_wait_ms']:.1f} | {r['fwd_bwd_ms']:.1f} | {r['optimizer_ms']:.1f} | "
            f"{r['step_ms']:.1f} | {r['it_per_s']:.3f} | {r['projected_h']:.1f} | {r['ratio']:.2f} |"
        )
    if skipped:
        print(f"\n(not run on {args.device}: {', '.join(skipped)})")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"device": device_line(args.device), "platform": platform.platform(), "rows": rows}, indent=2)
        )
    return rows


if __name__ == "__main__":
    main()
