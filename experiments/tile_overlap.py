"""Measure, per model, the tile overlap at which tiled output scores within 0.1 dB of whole-image output against
the clean image: the numbers behind ``src.inference.tiling.MEASURED_OVERLAP`` (what ``tile=auto`` uses).

    python experiments/tile_overlap.py                                  # every model, tile 256
    python experiments/tile_overlap.py --models spanet_release ddn --overlaps 16 32 64 128 --json overlap.json
    python experiments/tile_overlap.py --models restormer --weights deraining.pth --pairs rain/1.png:gt/1.png

Images: scikit-image's "astronaut" (512x512) and "coffee" (400x600) with the suite's synthetic rain
(src/data/synthetic.py, seed 0, medium density), or your own ``--pairs`` (e.g. SPA-Data test pairs). Tiles of ``--tile`` pixels (256: 2x2 to 3x3 tiles on these
photos, so every pixel is near a cut) with each ``--overlaps`` value, blended as src.predict blends them.
Per model and overlap: the largest |PSNR(tiled, clean) - PSNR(whole, clean)| over the images (the criterion,
<= ``--max-db``), and the smallest PSNR(tiled, whole). The chosen overlap is the smallest that meets the
criterion on every image (overlaps are tried in increasing order; ``--all`` tries every value).

Weights: ``spanet_release`` the authors' released weights; ``spanet`` the same weights in variant b_f (the
direction-attention branch keeps the release's untrained values), so its IRNN has trained, long-range weights;
every other model (any conf/model name can be given) is randomly initialised (seed 0) unless ``--weights`` names a
checkpoint (read as ``model.init_from`` reads it): no trained weights ship for them, and tiling error comes from
how far a network looks, which a random network of the same architecture shares only in part (trained recurrent
or pooling layers may look further): see docs/predict.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("spanet", "b_a", "spanet_release", "ddn", "jorder", "rescan", "didmdn", "clear")


def build(name: str, weights: str | None = None):
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from src.utils.checkpoint import load_net_weights, require_complete

    init = "null" if weights is None else str(Path(weights).resolve())
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="predict", overrides=[f"model={name}", f"model.init_from={init}"])
    torch.manual_seed(0)
    module = instantiate(cfg.model, optimizer=None, scheduler=None)
    if weights is not None:
        require_complete(module.net, module.init_report, weights)
    net = module.net.eval()
    if weights is None and name in ("spanet", "spanet_release"):
        net = load_net_weights(net, ROOT / "weights" / "spanet_release.pt").eval()
    return net


def pairs(files: list[str] | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, rain, clean) float32 (H, W, 3): ``files`` as "RAIN:CLEAN" paths, else the two built-in photos."""
    if files:
        from src.utils.image_io import ImageReadError, read_image

        out = []
        for spec in files:
            rain_path, sep, clean_path = spec.partition(":")
            if not sep or not rain_path or not clean_path:
                raise SystemExit(f"error: --pairs takes RAIN:CLEAN, got {spec!r}")
            try:
                rain, clean = read_image(rain_path), read_image(clean_path)
            except ImageReadError as e:
                raise SystemExit(f"error: {e}") from None
            if rain.shape != clean.shape:
                raise SystemExit(f"error: {rain_path} is {rain.shape[:2]}, {clean_path} is {clean.shape[:2]}")
            out.append((Path(rain_path).name, rain, clean))
        return out
    from skimage import data as skdata

    from src.data.synthetic import make_rain_pair

    out = []
    for name in ("astronaut", "coffee"):
        clean = getattr(skdata, name)().astype(np.float32) / 255
        rain, _ = make_rain_pair(clean, 1, np.random.default_rng(0))
        out.append((name, np.clip(rain, 0, 1).astype(np.float32), clean))
    return out


def psnr(a, b) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2, dtype=np.float64))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def measure(name: str, images, args) -> dict:
    import torch

    from src.inference.tiling import tiled_forward

    net = build(name, args.weights)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]  # noqa: E731
    to_np = lambda t: t[0].float().numpy().transpose(1, 2, 0)  # noqa: E731
    whole = {}
    with torch.inference_mode():
        for img, rain, _clean in images:
            whole[img] = to_np(net(to_t(rain))["out"])
        rows, chosen = [], None
        for overlap in args.overlaps:
            deltas, vs_whole = [], []
            for img, rain, clean in images:
                tiled = to_np(tiled_forward(net, to_t(rain), args.tile, overlap, batch_size=4)["out"])
                deltas.append(psnr(tiled, clean) - psnr(whole[img], clean))
                vs_whole.append(psnr(tiled, whole[img]))
            row = {
                "overlap": overlap,
                "max_abs_delta_db": max(abs(d) for d in deltas),
                "deltas_db": deltas,
                "min_psnr_vs_whole": min(vs_whole),
            }
            rows.append(row)
            print(
                f"  {name} overlap {overlap}: |delta| {row['max_abs_delta_db']:.3f} dB, tiled vs whole "
                f">= {row['min_psnr_vs_whole']:.1f} dB",
                file=sys.stderr,
                flush=True,
            )
            if chosen is None and row["max_abs_delta_db"] <= args.max_db:
                chosen = overlap
                if not args.all:
                    break
    psnr_whole = {img: psnr(whole[img], clean) for img, _, clean in images}
    return {"model": name, "network": type(net).__name__, "chosen": chosen, "rows": rows, "psnr_whole": psnr_whole}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), help="model configs (conf/model/<name>.yaml)")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--overlaps", type=int, nargs="+", default=[16, 32, 64, 96, 128, 192])
    p.add_argument("--max-db", type=float, default=0.1)
    p.add_argument("--all", action="store_true", help="measure every overlap, not only up to the first that passes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--pairs", nargs="+", metavar="RAIN:CLEAN", help="image pairs to use instead of the built-in photos")
    p.add_argument("--weights", default=None, help="a checkpoint for every model (model.init_from's formats)")
    args = p.parse_args(argv)
    import torch

    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(args.threads)
    images = pairs(args.pairs)
    results = [measure(m, images, args) for m in args.models]
    print(
        f"| model | network | PSNR whole vs clean [dB] | overlap: max abs delta vs clean [dB] / min PSNR tiled "
        f"vs whole [dB] | overlap within {args.max_db} dB |"
    )
    print("|---|---|---|---|---:|")
    for r in results:
        whole = ", ".join(f"{k} {v:.2f}" for k, v in r["psnr_whole"].items())
        cells = "; ".join(
            f"{x['overlap']}: {x['max_abs_delta_db']:.3f} / {x['min_psnr_vs_whole']:.1f}" for x in r["rows"]
        )
        print(f"| {r['model']} | {r['network']} | {whole} | {cells} | {r['chosen']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"tile": args.tile, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
