"""Collect a sweep's results into a table: mean +- std over seeds, paper numbers beside ours.

    python experiments/make_table.py SWEEP_DIR [--out DIR] [--protocol spanet] [--split test]
    python experiments/make_table.py --wandb ENTITY/PROJECT [--wandb-group table2] --out DIR [--protocol ...]
    python experiments/make_table.py SWEEP_DIR --extra DSC=dsc/metrics.json --extra JBO@realrain=jbo.json

A script of experiments/, not a suite entry point: it takes argparse options (``--help``); the suite's
commands (``python -m src.*``) take Hydra overrides.

Sources. SWEEP_DIR: every ``metrics.json`` below it (recursively) written by ``src.train``:
``{"task", "experiment", "model", "data", "schedule", "seed", "ckpt_path", "val": REPORT, "test": REPORT,
"val_input": REPORT, "test_input": REPORT}`` with REPORT the ``src.metrics`` schema (n_images / mean /
per_image). Files without a ``model`` key (e.g. those of ``src.eval``) are skipped with a note.
``--wandb``: the runs of a W&B project via ``wandb.Api()``: summary keys ``<split>/psnr_<protocol>``,
``<split>/ssim_<protocol>`` (and ``<split>/input_psnr_<protocol>`` for the rainy input); config keys
``run_info.model``, ``run_info.data``, ``run_info.schedule`` (or a string ``model``/``data``) and ``seed``;
``--wandb-group NAME`` keeps the runs of one W&B group (a sweep's ``experiment_name``, e.g. table2).
``--extra LABEL[@DATA]=FILE`` (repeatable): one more row from a ``src.eval pred_dir=...`` metrics.json (a
method scored from a folder of its outputs, e.g. the Matlab-only DSC, LP, SILS, JBO), shown with the runs of
data set DATA (default: the one data set the other runs have). Its paper number is looked up by
lower-case LABEL.

Rows: one per (data set, model) -- split by schedule when a model was trained under several -- in the order
rain input, b_a..b_f, spanet, the baselines, then the rest alphabetically. Values are the mean and sample
standard deviation (ddof 1) over seeds of each run's per-image-averaged score. The rain-input row is scored
in every run (the same test images), so its "seeds" count the runs. Paper numbers (protocol ``spanet``) are
set beside ours for the paper's data sets (``realrain``: Tables 4 and 2; ``didmdn``: Table 3) and only when
``--protocol spanet``; everything else shows "-".

Writes table.md, table.tex (booktabs) and bars.png (PSNR, std error bars) into --out (default SWEEP_DIR) and
prints the Markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from src.metrics.paper import paper_reference
from src.metrics.protocols import PROTOCOL_SUMMARY, PROTOCOLS

MODEL_ORDER = (
    "input", "b_a", "b_b", "b_c", "b_d", "b_e", "b_f", "spanet", "spanet_release",
    "ddn", "jorder", "didmdn", "rescan", "clear",
)  # fmt: skip
DISPLAY = {"input": "rain input"}


@dataclass
class Run:
    """One training run's score on one data set (``model`` is "input" for the rainy input)."""

    source: str  # file path or W&B run path
    model: str
    data: str
    schedule: str
    seed: Optional[int]
    psnr: float
    ssim: float


@dataclass
class Row:
    data: str
    model: str
    label: str
    seeds: int
    psnr: float
    psnr_std: Optional[float]  # None with a single seed
    ssim: float
    ssim_std: Optional[float]
    paper_psnr: Optional[float] = None
    paper_ssim: Optional[float] = None
    paper_source: str = "-"


# --- reading ------------------------------------------------------------------------------------------


def runs_from_dir(sweep_dir: Path, split: str, protocol: str) -> list[Run]:
    """Runs of every metrics.json under sweep_dir; problems are collected and raised together."""
    files = sorted(sweep_dir.rglob("metrics.json"))
    if not files:
        raise SystemExit(f"no metrics.json found under {sweep_dir}")
    runs, problems = [], []
    for path in files:
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            problems.append(f"{path}: cannot read JSON ({err})")
            continue
        if not isinstance(record, dict) or "model" not in record:
            print(f"note: skipping {path} (not a training run's metrics.json: no 'model' key)", file=sys.stderr)
            continue
        report = record.get(split)
        if not isinstance(report, dict) or protocol not in report.get("mean", {}):
            problems.append(f"{path}: no '{split}' report with protocol '{protocol}' (try --split val?)")
            continue
        common = dict(
            source=str(path), data=str(record.get("data")), schedule=str(record.get("schedule") or "-"),
            seed=record.get("seed"),
        )  # fmt: skip
        mean = report["mean"][protocol]
        runs.append(Run(model=str(record["model"]), psnr=mean["psnr"], ssim=mean["ssim"], **common))
        inp = record.get(f"{split}_input")
        if isinstance(inp, dict) and protocol in inp.get("mean", {}):
            m = inp["mean"][protocol]
            runs.append(Run(model="input", psnr=m["psnr"], ssim=m["ssim"], **common))
    if problems:
        raise SystemExit("cannot build the table:\n  " + "\n  ".join(problems))
    return runs


def _config_value(config: dict, *keys: str) -> Any:
    """config["run_info"]["model"], also flattened as "run_info/model" or "run_info.model"."""
    node: Any = config
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            node = None
            break
        node = node[key]
    if node is None:
        for sep in ("/", "."):
            node = config.get(sep.join(keys), node)
    return node


def runs_from_wandb(project: str, split: str, protocol: str, api: Any = None,
                    group: Optional[str] = None) -> list[Run]:
    """Runs of a W&B project (``entity/project``) read through ``wandb.Api()``, of one group if given."""
    if api is None:
        import wandb

        api = wandb.Api()
    runs, skipped, problems = [], 0, []
    listed = api.runs(project) if group is None else api.runs(project, filters={"group": group})
    for run in listed:
        summary, config = run.summary, dict(run.config)
        psnr, ssim = summary.get(f"{split}/psnr_{protocol}"), summary.get(f"{split}/ssim_{protocol}")
        if psnr is None or ssim is None:
            skipped += 1
            continue
        source = f"wandb:{project}/{run.id}"
        model = _config_value(config, "run_info", "model") or config.get("model")
        if not isinstance(model, str):
            problems.append(f"{source}: config has no model config name (run_info.model or a string 'model')")
            continue
        data = _config_value(config, "run_info", "data") or config.get("data")
        schedule = _config_value(config, "run_info", "schedule") or config.get("schedule") or "-"
        common = dict(
            source=source, data=data if isinstance(data, str) else "?",
            schedule=schedule if isinstance(schedule, str) else "-", seed=config.get("seed"),
        )  # fmt: skip
        runs.append(Run(model=model, psnr=float(psnr), ssim=float(ssim), **common))
        ipsnr, issim = summary.get(f"{split}/input_psnr_{protocol}"), summary.get(f"{split}/input_ssim_{protocol}")
        if ipsnr is not None and issim is not None:
            runs.append(Run(model="input", psnr=float(ipsnr), ssim=float(issim), **common))
    if skipped:
        print(f"note: {skipped} W&B run(s) without {split}/psnr_{protocol} skipped", file=sys.stderr)
    if problems:
        raise SystemExit("cannot build the table:\n  " + "\n  ".join(problems))
    if not runs:
        where = f"W&B project {project}" + (f", group {group}" if group else "")
        raise SystemExit(f"no runs with {split}/psnr_{protocol} in {where}")
    return runs


def runs_from_extras(specs: Sequence[str], runs: Sequence[Run], protocol: str) -> list[Run]:
    """``--extra LABEL[@DATA]=FILE`` rows: FILE is a src.eval metrics.json (n_images / mean / per_image)."""
    data_sets = sorted({r.data for r in runs})
    extras, problems = [], []
    for spec in specs:
        label, sep, file = spec.partition("=")
        label, _, data = label.partition("@")
        if not sep or not label or not file:
            problems.append(f"--extra {spec!r}: expected LABEL=FILE or LABEL@DATA=FILE")
            continue
        if not data:
            if len(data_sets) != 1:
                problems.append(f"--extra {spec!r}: say which data set it belongs to, LABEL@DATA=FILE "
                                f"(the runs have {data_sets or 'none'})")
                continue
            data = data_sets[0]
        try:
            report = json.loads(Path(file).read_text())
        except (OSError, json.JSONDecodeError) as err:
            problems.append(f"--extra {spec!r}: cannot read {file} ({err})")
            continue
        if isinstance(report, dict) and "model" in report:
            problems.append(f"--extra {spec!r}: {file} is a training run's metrics.json; put it under SWEEP_DIR")
            continue
        mean = report.get("mean", {}).get(protocol) if isinstance(report, dict) else None
        if not isinstance(mean, dict) or "psnr" not in mean or "ssim" not in mean:
            problems.append(f"--extra {spec!r}: {file} has no mean.{protocol}.psnr/ssim (a src.eval metrics.json?)")
            continue
        extras.append(Run(source=file, model=label, data=data, schedule="-", seed=None,
                          psnr=float(mean["psnr"]), ssim=float(mean["ssim"])))
    if problems:
        raise SystemExit("cannot build the table:\n  " + "\n  ".join(problems))
    return extras


# --- aggregation --------------------------------------------------------------------------------------


def _model_rank(model: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(model), "") if model in MODEL_ORDER else (len(MODEL_ORDER), model)


def summarize(runs: Sequence[Run], protocol: str) -> list[Row]:
    """Rows sorted by data set, then model order; duplicate (data, model, schedule, seed) runs are an error."""
    groups: dict[tuple[str, str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.data, run.model, run.schedule)].append(run)
    problems = []
    for (data, model, schedule), members in groups.items():
        if model == "input":
            continue
        by_seed: dict[Any, list[str]] = defaultdict(list)
        for run in members:
            by_seed[run.seed].append(run.source)
        for seed, sources in by_seed.items():
            if len(sources) > 1:
                problems.append(f"{model} on {data} (schedule {schedule}), seed {seed}: {', '.join(sources)}")
    if problems:
        raise SystemExit("several runs for the same model and seed (remove all but one):\n  " + "\n  ".join(problems))

    schedules: dict[tuple[str, str], set[str]] = defaultdict(set)
    for data, model, schedule in groups:
        schedules[(data, model)].add(schedule)
    rows = []
    for (data, model, schedule), members in groups.items():
        if model == "input":  # the same images in every run: one row per data set, whatever the schedules
            if schedule != min(schedules[(data, model)]):
                continue
            members = [r for s in schedules[(data, model)] for r in groups[(data, model, s)]]
        several = len(schedules[(data, model)]) > 1 and model != "input"
        label = DISPLAY.get(model, model) + (f" [{schedule}]" if several else "")
        psnrs, ssims = [r.psnr for r in members], [r.ssim for r in members]
        row = Row(
            data=data, model=model, label=label, seeds=len(members),
            psnr=statistics.fmean(psnrs), psnr_std=statistics.stdev(psnrs) if len(psnrs) > 1 else None,
            ssim=statistics.fmean(ssims), ssim_std=statistics.stdev(ssims) if len(ssims) > 1 else None,
        )  # fmt: skip
        ref = paper_reference(data, model) if protocol == "spanet" else None
        if ref is not None:
            table, paper = ref
            row.paper_psnr, row.paper_ssim, row.paper_source = paper.psnr, paper.ssim, table.name
        rows.append(row)
    rows.sort(key=lambda r: (r.data, _model_rank(r.model), r.label))
    return rows


# --- output -------------------------------------------------------------------------------------------


def _pm(mean: float, std: Optional[float], digits: int, pm: str) -> str:
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f}{pm}{std:.{digits}f}"


def _paper(value: Optional[float], digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def caption(rows: Sequence[Row], protocol: str, split: str) -> str:
    seeds = sorted({r.seeds for r in rows if r.model != "input"})
    n = "" if not seeds else (f"{seeds[0]} seed{'s' if seeds[0] > 1 else ''}" if len(seeds) == 1
                              else f"{seeds[0]}-{seeds[-1]} seeds (column 'seeds')")  # fmt: skip
    paper = (
        "Paper numbers (protocol spanet) from the SPANet paper's Tables 2-4 where the data set is the paper's; "
        "'-' where the paper has none (e.g. runs on synthetic smoke data)."
        if protocol == "spanet"
        else "Paper numbers are computed with protocol spanet only, so none are shown beside this protocol."
    )
    inputs = (
        " The rain-input row scores the rainy test images themselves, once per run (its count is of runs)."
        if any(r.model == "input" for r in rows)
        else ""
    )
    return (
        f"{split} split, protocol {protocol} ({PROTOCOL_SUMMARY[protocol]}). Each image scored on its own, "
        f"then averaged over images; mean ± sample std over {n}. {paper}{inputs}"
    )


def to_markdown(rows: Sequence[Row], protocol: str, split: str) -> str:
    lines = []
    for data in sorted({r.data for r in rows}):
        lines += [
            f"### {data} ({split} split, protocol `{protocol}`)",
            "",
            "| model | seeds | PSNR (dB) | SSIM | paper PSNR | paper SSIM | paper table |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in (r for r in rows if r.data == data):
            lines.append(
                f"| {r.label} | {r.seeds} | {_pm(r.psnr, r.psnr_std, 2, ' ± ')} | {_pm(r.ssim, r.ssim_std, 4, ' ± ')}"
                f" | {_paper(r.paper_psnr, 2)} | {_paper(r.paper_ssim, 4)} | {r.paper_source} |"
            )
        lines.append("")
    lines.append(f"*{caption(rows, protocol, split)}*")
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text.replace("±", r"$\pm$")


def to_latex(rows: Sequence[Row], protocol: str, split: str) -> str:
    out = []
    for data in sorted({r.data for r in rows}):
        out += [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{_tex(data)}: {_tex(caption(rows, protocol, split))}}}",
            r"\begin{tabular}{lrccccl}",
            r"\toprule",
            r"Model & Seeds & PSNR (dB) & SSIM & Paper PSNR & Paper SSIM & Source \\",
            r"\midrule",
        ]
        for r in (r for r in rows if r.data == data):
            cells = [
                _tex(r.label), str(r.seeds), _pm(r.psnr, r.psnr_std, 2, r" $\pm$ "),
                _pm(r.ssim, r.ssim_std, 4, r" $\pm$ "), _paper(r.paper_psnr, 2), _paper(r.paper_ssim, 4),
                _tex(r.paper_source),
            ]  # fmt: skip
            out.append(" & ".join(cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def plot_bars(rows: Sequence[Row], protocol: str, split: str, path: Path) -> None:
    """PSNR bars (mean, std error bars) per model, one panel per data set; paper PSNR as a marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r.data for r in rows})
    counts = [sum(r.data == d for r in rows) for d in datasets]
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(2.0 + 0.65 * len(rows), 4.0), squeeze=False, gridspec_kw={"width_ratios": counts}
    )
    for ax, data in zip(axes[0], datasets):
        sub = [r for r in rows if r.data == data]
        xs = range(len(sub))
        means = [r.psnr for r in sub]
        ax.bar(xs, means, yerr=[r.psnr_std or 0.0 for r in sub], capsize=4, color="tab:blue", label="ours")
        paper = [(x, r.paper_psnr) for x, r in zip(xs, sub) if r.paper_psnr is not None]
        if paper:
            ax.plot(*zip(*paper), "r_", markersize=22, markeredgewidth=2.5, label="paper")
            means += [p for _, p in paper]
        low, high = min(means), max(means)
        ax.set_ylim(max(0.0, low - max(1.0, 0.2 * (high - low))), high + max(0.5, 0.1 * (high - low)))
        ax.set_xticks(list(xs))
        ax.set_xticklabels([r.label for r in sub], rotation=45, ha="right")
        ax.set_title(f"{data}")
        ax.set_ylabel(f"PSNR (dB), protocol {protocol}")
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(f"{split} split, mean ± std over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- entry point --------------------------------------------------------------------------------------


def main(argv: Optional[Iterable[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", nargs="?", type=Path, help="folder searched recursively for metrics.json")
    parser.add_argument("--wandb", metavar="PROJECT", help="read the runs of this W&B project instead")
    parser.add_argument("--wandb-group", metavar="NAME", help="only the W&B runs of this group (e.g. table2)")
    parser.add_argument("--extra", metavar="LABEL[@DATA]=FILE", action="append", default=[],
                        help="add a src.eval metrics.json as the row LABEL (repeatable)")
    parser.add_argument("--out", type=Path, help="output folder (default: SWEEP_DIR)")
    parser.add_argument("--protocol", default="spanet", choices=PROTOCOLS)
    parser.add_argument("--split", default="test", choices=("test", "val"))
    args = parser.parse_args(None if argv is None else list(argv))
    if args.wandb is None and args.sweep_dir is None:
        parser.error("give SWEEP_DIR or --wandb PROJECT")
    if args.wandb_group and not args.wandb:
        parser.error("--wandb-group needs --wandb PROJECT")
    out = args.out or args.sweep_dir
    if out is None:
        parser.error("--out DIR is needed with --wandb when no SWEEP_DIR is given")

    if args.wandb:
        runs = runs_from_wandb(args.wandb, args.split, args.protocol, group=args.wandb_group)
    else:
        if not args.sweep_dir.is_dir():
            parser.error(f"SWEEP_DIR {args.sweep_dir} is not a folder")
        runs = runs_from_dir(args.sweep_dir, args.split, args.protocol)
    runs += runs_from_extras(args.extra, runs, args.protocol)
    rows = summarize(runs, args.protocol)

    out.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(rows, args.protocol, args.split)
    (out / "table.md").write_text(markdown)
    (out / "table.tex").write_text(to_latex(rows, args.protocol, args.split))
    plot_bars(rows, args.protocol, args.split, out / "bars.png")
    print(markdown)
    print(f"wrote {out / 'table.md'}, {out / 'table.tex'}, {out / 'bars.png'}", file=sys.stderr)
    return markdown


if __name__ == "__main__":
    main()
