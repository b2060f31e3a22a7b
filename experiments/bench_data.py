"""Data-loading throughput: how many DataLoader workers keep a GPU fed with SPANet training batches.

    python experiments/bench_data.py                                  # all sections
    python experiments/bench_data.py --spanet-json bench.json         # + workers needed per SPANet step
    python experiments/bench_data.py --list-lines 0 --json data.json  # skip the 600K-line list section

A script of experiments/, not a suite entry point: it takes argparse options (``--help``); the suite's
commands (``python -m src.*``) take Hydra overrides.

Everything is made on the fly in a temporary folder (removed afterwards), from photos bundled in
scikit-image with synthetic bright streaks, saved as the real sets store them:

1. decoders: ms per image for Pillow (``Image.open().convert('RGB')`` + ``np.asarray``, what
   ``src.utils.image_io`` uses) and imageio (``imageio.v3.imread``), on 256x256 and 512x512 PNGs.
2. samples/s of ONE process (= one DataLoader worker) through ``PairedDataset`` (decode both images,
   paired transform, to float tensors): SPA-Data-like 256x256 PNG pairs with a 256 crop (decode +
   to-tensor), with the release's random-resized crop (``data=realrain``'s default), 512x512 PNG test
   pairs at full size, and DID-MDN-like 1024x512 side-by-side JPEGs with a 256 crop. Medians over
   ``--repeats`` passes.
3. a real DataLoader (batch 16) with ``--loader-workers`` workers, samples/s.
4. SPA-Data's list: a tree of ``--list-lines`` empty files in the real layout with a list file (plus 3
   lines of a broken scene), timed through ``read_pair_list`` (one ``os.scandir`` per folder) and, for
   comparison, with one ``os.path.exists`` per listed file.
5. with ``--spanet-json FILE`` (written by ``experiments/bench_spanet.py --json FILE``): its SPANet train
   step per sample, scaled by pixel count to a 256x256 patch, and the workers needed =
   (samples/s the step consumes) / (samples per CPU second one worker delivers with the release crop).

The machine may be shared (load average printed): rates are given per CPU second (what a worker with a
whole core delivers) beside the wall-clock rate measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without install


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--patches", type=int, default=128, help="256x256 training pairs made (default 128)")
    p.add_argument("--tests", type=int, default=24, help="512x512 test pairs / side-by-side files (default 24)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes, median reported (default 3)")
    p.add_argument("--loader-workers", type=int, nargs="*", default=[0, 2], help="DataLoader worker counts timed")
    p.add_argument("--list-lines", type=int, default=600_000, help="lines of the synthetic SPA list (0: skip)")
    p.add_argument("--spanet-json", "--spanet", type=Path, default=None, help="JSON of bench_spanet.py --json")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    p.add_argument("--tmp", type=Path, default=None, help="folder for the temporary files (default: system temp)")
    return p.parse_args(argv)


# --- synthetic images -----------------------------------------------------------------------------------
def _photos() -> list[np.ndarray]:
    from skimage import data

    return [np.asarray(f()) for f in (data.astronaut, data.coffee, data.chelsea, data.rocket)]


def _rain(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage

    seeds = (rng.random(clean.shape[:2]) < 0.004).astype(np.float32)
    streaks = ndimage.convolve(seeds, np.ones((15, 1), np.float32) / 2, mode="wrap")
    return np.clip(clean + 120 * np.minimum(streaks, 1)[:, :, None], 0, 255).astype(np.uint8)


def _crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    from skimage.transform import resize

    if min(photo.shape[:2]) < size:
        scale = size / min(photo.shape[:2])
        photo = (
            resize(
                photo, (int(np.ceil(photo.shape[0] * scale)), int(np.ceil(photo.shape[1] * scale))), anti_aliasing=True
            )
            * 255
        ).astype(np.uint8)
    i = rng.integers(0, photo.shape[0] - size + 1)
    j = rng.integers(0, photo.shape[1] - size + 1)
    return np.ascontiguousarray(photo[i : i + size, j : j + size, :3])


def make_images(folder: Path, n_patch: int, n_test: int):
    """Pairs in three layouts; returns (patch pairs, test pairs, side-by-side pairs) as Pair lists."""
    from PIL import Image

    from src.data.readers import Pair

    rng = np.random.default_rng(0)
    photos = _photos()
    out = {"patch": [], "test": [], "sbs": []}
    for kind, n, size in (("patch", n_patch, 256), ("test", n_test, 512), ("sbs", n_test, 512)):
        (folder / kind).mkdir(parents=True)
        for k in range(n):
            clean = _crop(photos[k % len(photos)], size, rng)
            rain = _rain(clean, rng)
            if kind == "sbs":
                path = str(folder / kind / f"{k}.jpg")
                Image.fromarray(np.concatenate([rain, clean], axis=1)).save(path, quality=95)
                out[kind].append(Pair(path, path, str(k), -1, "", "rain_clean"))
            else:
                r, c = str(folder / kind / f"{k}.png"), str(folder / kind / f"{k}gt.png")
                Image.fromarray(rain).save(r)
                Image.fromarray(clean).save(c)
                out[kind].append(Pair(r, c, str(k)))
    return out


# --- timing -------------------------------------------------------------------------------------------
def _median_rate(fn, n_items: int, repeats: int) -> tuple[float, float]:
    """(items per wall second, items per CPU second of this process): medians over ``repeats`` timed
    passes after one warm-up pass (warms the page cache). On a shared machine the CPU rate is what one
    worker with a whole core delivers; the wall rate is what it delivered here."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return n_items / statistics.median(wall), n_items / statistics.median(cpu)


def bench_decoders(pairs: dict, repeats: int) -> dict:
    import imageio.v3 as iio
    from PIL import Image

    def pil(path):
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))

    out = {}
    for kind, label in (("patch", "png256"), ("test", "png512")):
        files = [p.rain for p in pairs[kind]]
        for name, fn in (("pillow", pil), ("imageio", iio.imread)):
            _, cpu_rate = _median_rate(lambda: [fn(f) for f in files], len(files), repeats)
            out[f"{label}_{name}_ms"] = 1e3 / cpu_rate  # CPU ms per image
    return out


def bench_dataset(pairs: dict, repeats: int) -> dict:
    import torch

    from src.data.paired import PairedDataset
    from src.data.transforms import build_train_transform

    torch.set_num_threads(1)  # a DataLoader worker runs single-threaded
    cases = {
        "patch256_crop256": (pairs["patch"], build_train_transform(crop=256)),
        "patch256_release_rrc256": (pairs["patch"], build_train_transform(resized_crop=256)),
        "patch256_crop128_flips": (pairs["patch"], build_train_transform(crop=128, hflip=True, vflip=True)),
        "test512_full": (pairs["test"], None),
        "sbs1024x512_jpeg_crop256": (pairs["sbs"], build_train_transform(crop=256, hflip=True)),
    }
    out = {}
    for name, (plist, transform) in cases.items():
        ds = PairedDataset(plist, transform)
        wall_rate, cpu_rate = _median_rate(lambda: [ds[i] for i in range(len(ds))], len(ds), repeats)
        out[name] = {"wall": wall_rate, "cpu": cpu_rate}
    return out


def bench_loader(pairs: dict, workers: list[int]) -> dict:
    from torch.utils.data import DataLoader

    from src.data.paired import PairedDataset
    from src.data.transforms import build_train_transform

    ds = PairedDataset(pairs["patch"], build_train_transform(resized_crop=256))
    out = {}
    for w in workers:
        loader = DataLoader(ds, batch_size=16, shuffle=True, num_workers=w, drop_last=True)
        for _ in loader:  # warm-up epoch (worker start-up, page cache)
            pass
        t0 = time.perf_counter()
        n = sum(len(b["name"]) for b in loader)
        out[f"workers_{w}"] = n / (time.perf_counter() - t0)
    return out


def bench_list(folder: Path, lines: int) -> dict:
    """A SPA-Data-like tree of empty files (~22 positions x ~168 frames per scene) and its list file."""
    from src.data.readers import read_pair_list

    positions, frames = 22, 168
    scenes = max(1, int(np.ceil(lines / (positions * frames))))
    t0 = time.perf_counter()
    out_lines = []
    for s in range(scenes):
        sid = f"{s:03d}"
        gt = folder / "real_world_gt" / sid
        gt.mkdir(parents=True)
        for k in range(positions):
            open(gt / f"{sid}_{k}_0.png", "wb").close()
        for f in range(frames):
            if len(out_lines) >= lines:
                break
            fdir = folder / "real_world" / sid / f"{sid}-{f}"
            fdir.mkdir(parents=True)
            for k in range(positions):
                if len(out_lines) >= lines:
                    break
                open(fdir / f"{sid}-{f}_{k}_0.png", "wb").close()
                out_lines.append(
                    f"/real_world/{sid}/{sid}-{f}/{sid}-{f}_{k}_0.png /real_world_gt/{sid}/{sid}_{k}_0.png"
                )
    out_lines += [f"/real_world/274/274-{f}/274-{f}_0_0.png /real_world_gt/274/274_0_0.png" for f in range(3)]
    (folder / "real_world.txt").write_text("\n".join(out_lines) + "\n")
    made = time.perf_counter() - t0
    os.system("sync")

    t0, c0 = time.perf_counter(), time.process_time()
    res = read_pair_list(str(folder / "real_world.txt"), str(folder))
    scandir_s, scandir_cpu = time.perf_counter() - t0, time.process_time() - c0
    assert len(res.pairs) == len(out_lines) - 3 and len(res.missing) == 3, (len(res.pairs), len(res.missing))

    t0, c0 = time.perf_counter(), time.process_time()
    found = 0
    for line in out_lines:
        a, b = line.split()
        found += os.path.exists(os.path.join(str(folder), a.lstrip("/"))) and os.path.exists(
            os.path.join(str(folder), b.lstrip("/"))
        )
    exists_s, exists_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "lines": len(out_lines),
        "folders": scenes * (frames + 1),
        "tree_made_s": made,
        "read_pair_list_s": scandir_s,
        "read_pair_list_cpu_s": scandir_cpu,
        "per_file_exists_s": exists_s,
        "per_file_exists_cpu_s": exists_cpu,
        "pairs": len(res.pairs),
        "skipped": len(res.missing),
    }


def spanet_rows(path: Path) -> list[dict]:
    """SPANet train-step rows of bench_spanet.py's JSON: batch, side, ms, ms per 256x256 sample."""
    report = json.loads(path.read_text())
    auto = report.get("info", {}).get("irnn_auto_backend", "auto")
    rows = []
    for label, r in report.get("results", {}).items():  # labels like "B8 64x64"
        ms = r.get(f"train_spanet_{auto}_ms")
        if ms is None:
            continue
        batch_s, size_s = label.split()
        batch, side = int(batch_s[1:]), int(size_s.split("x")[0])
        rows.append(
            {
                "label": label,
                "batch": batch,
                "side": side,
                "step_ms": ms,
                "ms_per_256_sample": ms / batch * (256 * 256) / (side * side),
                "device": report.get("info", {}).get("device", "?"),
            }
        )
    return rows


def main(argv=None) -> dict:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_data_", dir=args.tmp))
    report: dict = {"loadavg_start": os.getloadavg()}
    try:
        pairs = make_images(tmp / "img", args.patches, args.tests)
        report["decoder_ms"] = bench_decoders(pairs, args.repeats)
        report["samples_per_s_one_worker"] = bench_dataset(pairs, args.repeats)
        report["loader_samples_per_s"] = bench_loader(pairs, args.loader_workers)
        if args.list_lines:
            report["spa_list"] = bench_list(tmp / "spa", args.list_lines)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.spanet_json:
        per_worker = report["samples_per_s_one_worker"]["patch256_release_rrc256"]["cpu"]
        rows = spanet_rows(args.spanet_json)
        for r in rows:
            need = 1e3 / r["ms_per_256_sample"]  # samples/s one training process consumes
            r["samples_per_s_consumed"] = need
            r["workers_needed"] = need / per_worker
        report["spanet"] = rows
    report["loadavg_end"] = os.getloadavg()
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


def render(rep: dict) -> str:
    lines = [
        f"load average {rep['loadavg_start'][0]:.2f} -> {rep['loadavg_end'][0]:.2f}",
        "",
        "| decoder | CPU ms / image |",
        "|---|---|",
    ]
    lines += [f"| {k[:-3]} | {v:.2f} |" for k, v in rep["decoder_ms"].items()]
    lines += [
        "",
        "| pipeline (decode both + transform + to-tensor), one worker | samples / CPU s | samples / wall s |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v['cpu']:.1f} | {v['wall']:.1f} |" for k, v in rep["samples_per_s_one_worker"].items()]
    lines += ["", "| DataLoader, 256 patches + release crop, batch 16 | samples/s |", "|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {v:.1f} |" for k, v in rep["loader_samples_per_s"].items()]
    if "spa_list" in rep:
        s = rep["spa_list"]
        lines += [
            "",
            f"SPA list: {s['lines']} lines in {s['folders']} folders -> {s['pairs']} pairs, "
            f"{s['skipped']} skipped: read_pair_list {s['read_pair_list_s']:.2f} s wall, "
            f"{s['read_pair_list_cpu_s']:.2f} s CPU (one os.path.exists per file instead: "
            f"{s['per_file_exists_s']:.2f} s wall, {s['per_file_exists_cpu_s']:.2f} s CPU; "
            f"tree made in {s['tree_made_s']:.0f} s)",
        ]
    if "spanet" in rep:
        lines += [
            "",
            "| SPANet step (from JSON) | device | ms | ms per 256x256 sample | samples/s | workers needed |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['label']} | {r['device']} | {r['step_ms']:.1f} | {r['ms_per_256_sample']:.2f} | "
            f"{r['samples_per_s_consumed']:.0f} | {r['workers_needed']:.1f} |"
            for r in rep["spanet"]
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
