"""Regenerate the pictures of README's tour (docs/img/).

    python experiments/make_tour.py                                       # also runs the table4_smoke sweep
    python experiments/make_tour.py --sweep logs/train/multiruns/<time>   # reuse a finished table4_smoke sweep
    python experiments/make_tour.py --image my_rainy_photo.jpg            # derain your own photo instead

A script of experiments/, not a suite entry point: it takes argparse options (``--help``); the suite's
commands (``python -m src.*``) take Hydra overrides.

Writes into --out (default docs/img/):

* ``tour_derain.png``: the authors' released SPANet (``--weights``, default weights/spanet_release.pt) on a
  photo: rainy input | derained output | attention map of the first SAM | ground truth. The default photo is
  scikit-image's ``chelsea`` (a test photo of the built-in synthetic data, never trained on) with the built-in
  synthetic rain at medium density (seed 5), resized so its long side is 320 pixels (``--long-side``); PSNR/SSIM (protocol
  ``spanet``) of the input and the output against the clean photo are written above them. With ``--image``
  (a real rainy photo, no ground truth) the figure has three panels and no scores.
* ``tour_table4_smoke.png``: ``python -m src.table``'s chart of a ``table4_smoke`` sweep (B_a..B_f x 2 seeds on
  synthetic rain, 20 iterations each: a smoke test of the pipeline, not a result). Without ``--sweep`` the
  sweep is run first (``python -m src.train -m experiment=table4_smoke`` into a temporary log folder: 12 short
  CPU jobs); its table.md is printed.

Each PNG is kept under 300 KB (reduced to a 256-colour palette when the full-colour file would be larger).
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 300_000
PHOTO, LEVEL, RAIN_SEED, LONG_SIDE = "chelsea", 1, 5, 320  # level 1 = medium density


def save_png(fig, path: Path, max_bytes: int = MAX_BYTES, dpi: int = 100) -> int:
    """Save a matplotlib figure as PNG of at most max_bytes (full colour if it fits, else a 256-colour palette
    with dithering); returns the file size."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    for candidate in (image, image.quantize(256, dither=Image.Dither.FLOYDSTEINBERG)):
        out = io.BytesIO()
        candidate.save(out, format="PNG", optimize=True)
        if out.tell() <= max_bytes:
            path.write_bytes(out.getvalue())
            return out.tell()
    raise ValueError(f"{path}: {out.tell()} bytes even as a 256-colour PNG (limit {max_bytes}); use a smaller figure")


def resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """float32 H x W x 3 resized (anti-aliased) so that its long side is long_side pixels."""
    from skimage.transform import resize

    scale = long_side / max(image.shape[:2])
    size = (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))
    return resize(image, size, anti_aliasing=True).astype(np.float32)


def rainy_photo(long_side: int = LONG_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """(rainy, clean) float32 H x W x 3 in [0, 1]: the tour's default photo with built-in synthetic rain."""
    from src.data.synthetic import load_photo, make_rain_pair

    clean = resize_long_side(load_photo(PHOTO), long_side)
    rainy, _ = make_rain_pair(clean, LEVEL, np.random.default_rng(RAIN_SEED))
    return rainy, clean


@torch.inference_mode()
def derain_figure(
    net: torch.nn.Module, rainy: np.ndarray, path: Path, clean: Optional[np.ndarray] = None, caption: str = ""
) -> dict:
    """Run ``net`` (a SPANet-like network returning {"out", "att"}) on one H x W x 3 image and save the figure
    rain | derained | attention (| clean). Returns {"rain": scores, "derained": scores} under protocol spanet
    (empty without ``clean``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from src.metrics.protocols import score_all

    x = torch.from_numpy(np.ascontiguousarray(rainy.transpose(2, 0, 1)))[None]
    h, w = x.shape[-2:]
    result = net(x)  # SPANet takes any image size
    out = result["out"].float()
    att = result["att"][0][0, 0].float().numpy() if result.get("att") else None
    scores = {}
    if clean is not None:
        target = torch.from_numpy(np.ascontiguousarray(clean.transpose(2, 0, 1)))[None]
        for name, image in (("rain", x), ("derained", out)):
            s = score_all(image, target)["spanet"]
            scores[name] = {"psnr": float(s["psnr"]), "ssim": float(s["ssim"])}

    def title(name: str, label: str) -> str:
        s = scores.get(name)
        return label if s is None else f"{label}\n{s['psnr']:.2f} dB / SSIM {s['ssim']:.4f}"

    panels = [
        (rainy, title("rain", "rainy input")),
        (np.clip(out[0].numpy().transpose(1, 2, 0), 0, 1), title("derained", "derained (SPANet)")),
    ]
    if att is not None:
        panels.append((np.clip(att, 0, 1), "attention map (first SAM)"))
    if clean is not None:
        panels.append((clean, "ground truth"))
    # panels at the image's own resolution (one image pixel = one PNG pixel), two per row
    dpi, pad, title_h = 100, 12, 34
    cols = 2 if len(panels) == 4 else len(panels)
    rows = -(-len(panels) // cols)
    width = cols * w + (cols + 1) * pad
    caption = textwrap.fill(caption, width=max(40, int(width / 5.2)))
    caption_h = 11 * (caption.count("\n") + 1) + 10 if caption else 0
    height = rows * (h + title_h) + pad + caption_h
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    for i, (image, label) in enumerate(panels):
        r, c = divmod(i, cols)
        left, top = pad + c * (w + pad), r * (h + title_h) + title_h
        ax = fig.add_axes((left / width, 1 - (top + h) / height, w / width, h / height))
        ax.imshow(image, cmap="inferno" if image.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    if caption:
        fig.text(0.5, 4 / height, caption, ha="center", va="bottom", fontsize=7)
    save_png(fig, path, dpi=dpi)
    plt.close(fig)
    return scores


def released_spanet(weights: Path) -> torch.nn.Module:
    """The network of ``model=spanet_release`` (conf/model/spanet_release.yaml) with ``weights`` loaded strictly,
    as ``src.predict model=spanet_release ckpt_path=WEIGHTS`` builds it."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from src.utils.checkpoint import load_net_weights

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="predict", overrides=["model=spanet_release", "model.init_from=null"])
    model = instantiate(cfg.model, optimizer=None, scheduler=None)
    return load_net_weights(model.net, weights).eval()


def run_smoke_sweep(log_dir: Path) -> Path:
    """Run the table4_smoke sweep into log_dir; returns its sweep folder."""
    cmd = [sys.executable, "-m", "src.train", "-m", "experiment=table4_smoke", f"paths.log_dir={log_dir}"]
    print("running", " ".join(cmd[1:]), file=sys.stderr)
    subprocess.run(cmd, cwd=ROOT, check=True)
    (sweep,) = list((log_dir / "train" / "multiruns").iterdir())
    return sweep


def table_chart(sweep: Path, path: Path) -> str:
    """The chart of ``python -m src.table`` of the sweep, copied to path (size-checked); returns the table's
    Markdown."""
    from PIL import Image

    from src.table import main as make_table

    with tempfile.TemporaryDirectory() as tmp:
        markdown = make_table([str(sweep), "--out", tmp])
        chart = Path(tmp) / "chart.png"
        if chart.stat().st_size <= MAX_BYTES:
            shutil.copyfile(chart, path)
        else:
            Image.open(chart).convert("RGB").quantize(256).save(path, optimize=True)
    return markdown


def main(argv: Optional[Iterable[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder of the pictures")
    parser.add_argument(
        "--weights",
        type=Path,
        default=ROOT / "weights" / "spanet_release.pt",
        help="the released SPANet checkpoint (default weights/spanet_release.pt)",
    )
    parser.add_argument("--image", type=Path, help="derain this rainy photo (no ground truth) instead")
    parser.add_argument(
        "--long-side",
        type=int,
        default=LONG_SIDE,
        help=f"resize the photo so its long side is this many pixels (default {LONG_SIDE})",
    )
    parser.add_argument("--sweep", type=Path, help="a finished table4_smoke sweep folder (default: run one)")
    parser.add_argument("--skip-sweep", action="store_true", help="only the derained example")
    args = parser.parse_args(None if argv is None else list(argv))
    if not args.weights.is_file():
        parser.error(f"--weights {args.weights}: no such file (the authors' released checkpoint; see weights/)")
    if args.sweep is not None and not args.sweep.is_dir():
        parser.error(f"--sweep {args.sweep}: not a folder")
    args.out.mkdir(parents=True, exist_ok=True)

    net = released_spanet(args.weights)
    if args.image is not None:
        from src.data.io import read_image

        rainy, clean = resize_long_side(read_image(args.image), args.long_side), None
        caption = f"{args.image.name}; released SPANet weights"
    else:
        rainy, clean = rainy_photo(args.long_side)
        caption = (
            f"scikit-image '{PHOTO}' with the suite's synthetic rain (medium, seed {RAIN_SEED}); released "
            f"SPANet weights (trained on real rain); PSNR/SSIM protocol spanet"
        )
    scores = derain_figure(net, rainy, args.out / "tour_derain.png", clean, caption)
    print(f"wrote {args.out / 'tour_derain.png'}" + (f": {scores}" if scores else ""), file=sys.stderr)

    if args.skip_sweep:
        return
    with tempfile.TemporaryDirectory() as tmp:
        sweep = args.sweep or run_smoke_sweep(Path(tmp) / "logs")
        print(table_chart(sweep, args.out / "tour_table4_smoke.png"))
    print(f"wrote {args.out / 'tour_table4_smoke.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
