"""Collect a sweep's results into a table: mean ± std over seeds, bootstrap intervals over test images, paired
per-image differences to SPANet, paper numbers beside ours, and a dot-and-whisker chart.

    python -m src.table SWEEP_DIR [--out DIR] [--protocol spanet] [--split test]
    python -m src.table --wandb ENTITY/PROJECT [--wandb-group table2] --out DIR [--protocol ...]
    python -m src.table SWEEP_DIR --extra DSC=dsc/metrics.json --extra JBO@realrain=jbo.json

A reader of finished runs, not a run: it composes no config and makes no run dir, so it takes a folder and
argparse options (``--help``) where the commands that run something take Hydra overrides. The code: reading
results (src/table/read.py, metrics.json through :class:`src.runs.result.RunResult`), the statistics
(src/table/stats.py), drawing (src/table/draw.py).

Sources. SWEEP_DIR: every ``metrics.json`` below it (recursively) written by ``src.train``:
``{"task", "experiment", "model", "data", "schedule", "seed", "ckpt_path", "global_step", "val": REPORT,
"test": REPORT, "val_input": REPORT, "test_input": REPORT}`` with REPORT the ``src.metrics`` schema
(n_images / mean / per_image). Files without a ``model`` key (e.g. those of ``src.eval``) are skipped with a note.
``--wandb``: the runs of a W&B project via ``wandb.Api()``: summary keys ``<split>/psnr_<protocol>``,
``<split>/ssim_<protocol>`` (and ``<split>/input_psnr_<protocol>`` for the rainy input); config keys
``run_info.model``, ``run_info.data``, ``run_info.schedule`` (or a string ``model``/``data``) and ``seed``;
``--wandb-group NAME`` keeps the runs of one W&B group (a sweep's ``experiment_name``, e.g. table2). Per-image
test scores come from each run's logged ``test/per_image`` table (downloaded); rows without it (and the rain
input, whose per-image scores are not logged) get no interval, and their differences are of the means.
``--extra LABEL[@DATA]=FILE`` (repeatable): one more row from a ``src.eval pred_dir=...`` metrics.json (a
method scored from a folder of its outputs, e.g. the Matlab-only DSC, LP, SILS, JBO), shown with the runs of
data set DATA (default: the one data set the other runs have). Its paper number is looked up by
lower-case LABEL.

Refused (the table is not built, every offending file is named): a run that src.train marked incomplete
(``"complete": false``, with its reasons), a run with ``global_step`` 0 (its scores are those of the untrained
network), a report whose ``n_images`` disagrees with its per-image scores, runs of one data set scored on
different test images (a run cut short, a changed data set), and two runs of the same model, schedule and seed.
A sweep folder's ``multirun.yaml`` says which jobs the sweep should have run: jobs that never
started, that failed (their ``error.txt``) or that left no metrics.json are listed under the table and on stderr.

Rows: one per (data set, model) -- split by schedule when a model was trained under several -- in the order
rain input, b_a..b_f, spanet, the baselines, then the rest alphabetically. Columns:

* seeds: the number of training seeds (runs) averaged; "-" for the rain input (no training) and --extra rows.
* PSNR / SSIM: mean over seeds of each run's per-image-averaged score ± the sample std over seeds (ddof 1).
* 95% CI: percentile bootstrap interval of the mean over test images (``--bootstrap`` resamples of the test
  images, ``--seed``, ``--level``); per-image scores are first averaged over seeds. It says how far the mean
  could move on another test set drawn like this one; seed-to-seed spread is the ± beside the mean.
  ``--resample-seeds`` makes it a two-level bootstrap (each resample also draws each row's seeds with
  replacement), so that the intervals cover both; with 2-3 seeds that part is coarse.
* Δ vs REF: the paired per-image difference to the reference model (``--reference``, default spanet, else b_f,
  which is SPANet in Table 4; ``best``: the row of highest mean PSNR): the mean over images of (model - REF) per
  image, with its bootstrap interval from the same resamples. An interval that excludes 0 is a gap this test set
  resolves.
* paper PSNR / SSIM: the published number, only where it was computed under the table's protocol
  (``PaperRow.protocol``, else its table's; "(copied)" after the paper table when that paper took the row from
  an earlier one); "-" otherwise, and a line under the table names a published number of another protocol.
* params, GMACs (runs whose dir holds the ``.hydra/config.yaml`` src.train saved; ``--size 0``: none): the
  network each run trained, built from that config: its parameters, and the multiply-accumulates of one forward
  pass of one ``--size`` x ``--size`` image (ptflops). See src/table/complexity.py.
* s/MP, peak GiB (``--profile`` only): inference seconds per megapixel and peak memory of one forward pass,
  measured on the machine drawing the table (``--profile-device``), each network in a fresh process.
* GPU-h (when runs record their cost, metrics.json's ``cost`` block): training wall time x device count,
  summed over the row's runs (CPU-h when every run ran on CPUs).

Writes table.md, table.tex (booktabs) and chart.png (PSNR and SSIM side by side: mean, 95% interval, each
seed, the paper's value) into --out (default SWEEP_DIR) and prints the Markdown.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable, Optional

from src.metrics.protocols import PROTOCOLS
from src.table.complexity import Speed, annotate
from src.table.draw import job_report, plot_chart, to_latex, to_markdown
from src.table.read import runs_from_dir, runs_from_extras, runs_from_wandb, sweep_jobs
from src.table.stats import Bootstrap, summarize


def main(argv: Optional[Iterable[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", nargs="?", type=Path, help="folder searched recursively for metrics.json")
    parser.add_argument("--wandb", metavar="PROJECT", help="read the runs of this W&B project instead")
    parser.add_argument("--wandb-group", metavar="NAME", help="only the W&B runs of this group (e.g. table2)")
    parser.add_argument(
        "--extra",
        metavar="LABEL[@DATA]=FILE",
        action="append",
        default=[],
        help="add a src.eval metrics.json as the row LABEL (repeatable)",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: SWEEP_DIR)")
    parser.add_argument("--protocol", default="spanet", choices=PROTOCOLS)
    parser.add_argument("--split", default="test", choices=("test", "val"))
    parser.add_argument(
        "--reference",
        metavar="MODEL",
        help="row the paired differences are taken against (default: spanet, else b_f; 'best': "
        "the row of highest mean PSNR)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=10000,
        metavar="N",
        help="bootstrap resamples of the test images (default 10000; 0: no intervals)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the bootstrap (default 0)")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
    parser.add_argument(
        "--resample-seeds",
        action="store_true",
        help="two-level bootstrap: resample each row's seeds too (intervals include seed spread)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=256,
        metavar="PX",
        help="image side of the GMACs column and of --profile (default 256; 0: no params/GMACs)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also measure each row's inference s/MP and peak memory on this machine (slow)",
    )
    parser.add_argument(
        "--profile-device",
        choices=("cpu", "cuda"),
        default=None,
        help="device of --profile (default: cuda when available, else cpu)",
    )
    parser.add_argument("--profile-repeats", type=int, default=3, metavar="N", help="timed passes (default 3)")
    args = parser.parse_args(None if argv is None else list(argv))
    if args.wandb is None and args.sweep_dir is None:
        parser.error("give SWEEP_DIR or --wandb PROJECT")
    if args.wandb_group and not args.wandb:
        parser.error("--wandb-group needs --wandb PROJECT")
    if args.bootstrap < 0:
        parser.error("--bootstrap must be >= 0")
    if not 0 < args.level < 1:
        parser.error("--level must be between 0 and 1")
    if args.size < 0 or (args.profile and args.size == 0) or args.profile_repeats < 1:
        parser.error("--size must be >= 0 (> 0 with --profile) and --profile-repeats >= 1")
    boot = Bootstrap(args.bootstrap, args.seed, args.level, args.resample_seeds)
    out = args.out or args.sweep_dir
    if out is None:
        parser.error("--out DIR is needed with --wandb when no SWEEP_DIR is given")

    jobs: list[str] = []
    if args.wandb:
        runs = runs_from_wandb(args.wandb, args.split, args.protocol, group=args.wandb_group)
    else:
        if not args.sweep_dir.is_dir():
            parser.error(f"SWEEP_DIR {args.sweep_dir} is not a folder")
        runs = runs_from_dir(args.sweep_dir, args.split, args.protocol)
        jobs = job_report(*sweep_jobs(args.sweep_dir))
    runs += runs_from_extras(args.extra, runs, args.protocol)
    rows = summarize(runs, args.protocol, boot, args.reference)
    costs = [r.cost for r in runs if r.cost is not None]
    complexity = annotate(rows, args.size, _speed(args)) if args.size else None

    out.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(rows, args.protocol, args.split, boot, costs, jobs, complexity)
    (out / "table.md").write_text(markdown)
    (out / "table.tex").write_text(to_latex(rows, args.protocol, args.split, boot, costs, complexity))
    plot_chart(rows, args.protocol, args.split, out / "chart.png", boot)
    print(markdown)
    if jobs:
        print("\n".join(ln for ln in jobs if ln), file=sys.stderr)
    print(f"wrote {out / 'table.md'}, {out / 'table.tex'}, {out / 'chart.png'}", file=sys.stderr)
    return markdown


def _speed(args: argparse.Namespace) -> Optional[Speed]:
    if not args.profile:
        return None
    import torch

    device = args.profile_device or ("cuda" if torch.cuda.is_available() else "cpu")
    return Speed(device, args.profile_repeats)


if __name__ == "__main__":
    main()
