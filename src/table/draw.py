"""Drawing the table: Markdown, LaTeX (booktabs) and a dot-and-whisker chart of the rows, the caption that says
how every number was computed, and the list of the sweep's missing and failed jobs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

from src.metrics.protocols import PROTOCOL_SUMMARY
from src.table.complexity import Complexity
from src.table.read import Job
from src.table.stats import Bootstrap, Row

DIGITS = {"psnr": 2, "ssim": 4}


def job_report(jobs: Sequence[Job], notes: Sequence[str]) -> list[str]:
    """Markdown lines on missing and failed jobs (empty when every job of every sweep finished)."""
    lines = []
    for root in sorted({j.sweep for j in jobs}):
        mine = [j for j in jobs if j.sweep == root]
        bad = [j for j in mine if j.status != "done"]
        if not bad:
            continue
        lines.append(
            f"**Incomplete sweep** `{root}`: {len(mine) - len(bad)} of {len(mine)} jobs finished; "
            f"the table holds only those. Missing or failed:"
        )
        for j in bad:
            where = f" in `{j.folder}`" if j.folder is not None else ""
            detail = {
                "failed": f"failed{where}: {j.error} (traceback in error.txt)" if j.error else f"failed{where}",
                "no metrics.json": f"no metrics.json{where} (still running, killed or interrupted)",
                "not started": "never started (no job folder)",
            }[j.status]
            lines.append(f"- job {j.num} ({' '.join(j.overrides)}): {detail}")
        lines.append("")
    for note in notes:
        lines += [f"Note: {note}", ""]
    return lines


def _pm(mean: float, std: Optional[float], digits: int, pm: str) -> str:
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f}{pm}{std:.{digits}f}"


def _paper(value: Optional[float], digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ci(ci: Optional[tuple[float, float]], digits: int) -> str:
    return "-" if ci is None else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _delta(row: Row, measure: str) -> str:
    if row.is_reference:
        return "(reference)"
    diff = getattr(row, f"d_{measure}")
    if diff is None:
        return "-"
    digits = DIGITS[measure]
    ci = getattr(row, f"d_{measure}_ci")
    return f"{diff:+.{digits}f}" + ("" if ci is None else f" [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]")


def _hours(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"  # short runs: two significant digits


def _reference_label(rows: Sequence[Row]) -> Optional[str]:
    return next((r.label for r in rows if r.is_reference), None)


def _cost_label(costs: Sequence[tuple[float, str, str]]) -> str:
    kinds = {accelerator for _, _, accelerator in costs}
    return "CPU-h" if kinds == {"cpu"} else "device-h" if "cpu" in kinds else "GPU-h"


def caption(
    rows: Sequence[Row],
    protocol: str,
    split: str,
    boot: Bootstrap = Bootstrap(),
    costs: Sequence[tuple[float, str, str]] = (),
    complexity: Optional[Complexity] = None,
) -> str:
    seeds = sorted({r.seeds for r in rows if r.seeds is not None})
    n = "" if not seeds else (f"{seeds[0]} seed{'s' if seeds[0] > 1 else ''}" if len(seeds) == 1
                              else f"{seeds[0]}-{seeds[-1]} seeds (column 'seeds')")  # fmt: skip
    images = sorted({r.n_images for r in rows if r.n_images is not None})
    over = f"the {images[0]} test images" if len(images) == 1 else "the test images"
    parts = [
        f"{split} split, protocol {protocol} ({PROTOCOL_SUMMARY[protocol]}). Each image is scored on its own, then "
        f"scores are averaged over {over}; PSNR/SSIM: mean ± sample std over {n or 'runs'}."
    ]
    if any(r.psnr_ci is not None for r in rows):
        level = f"{boot.level * 100:g}%"
        if boot.seeds:
            parts.append(
                f"{level} CI: two-level percentile bootstrap of the mean ({boot.n_resamples} resamples, seed "
                f"{boot.seed}): each resample draws the test images and, for each row on its own, its seeds, with "
                f"replacement; it covers both the test set and seed-to-seed spread (coarsely with few seeds)."
            )
        else:
            parts.append(
                f"{level} CI: percentile bootstrap interval of the mean over test images ({boot.n_resamples} "
                f"resamples of the images, seed {boot.seed}; per-image scores averaged over seeds first): how far "
                f"the mean could move on another test set like this one; it leaves out seed-to-seed spread (the ±; "
                f"--resample-seeds includes it)."
            )
    ref = sorted({_reference_label([r for r in rows if r.data == d]) or "" for d in {r.data for r in rows}} - {""})
    if ref:
        parts.append(
            f"Δ vs {' / '.join(ref)}: mean over images of the paired per-image difference (model - reference) with "
            f"its bootstrap interval from the same resamples; an interval that excludes 0 is a gap this test "
            f"set resolves."
        )
    parts.append(
        f"Paper numbers: the SPANet paper's, or for today's derainers their papers' SPA-Data tables ('copied': a row "
        f"that paper took from an earlier one), only where they were computed under protocol {protocol} and the data "
        f"set is the paper's; '-' otherwise (e.g. runs on synthetic smoke data, or a number copied from another "
        f"paper whose protocol is not stated)."
    )
    if any(r.model == "input" for r in rows):
        parts.append("The rain-input row scores the rainy test images themselves (no training, no seed).")
    if any(r.hours is not None for r in rows):
        total = math.fsum(r.hours for r in rows if r.hours is not None)
        names = sorted({f"{name} ({accelerator})" for _, name, accelerator in costs})
        parts.append(
            f"{_cost_label(costs)}: training wall time x devices, summed over the row's runs "
            f"({_hours(total)} in all; {', '.join(names)})."
        )
    parts += _complexity_caption(rows, complexity)
    return " ".join(parts)


def _complexity_caption(rows: Sequence[Row], complexity: Optional[Complexity]) -> list[str]:
    if complexity is None or not any(r.params is not None for r in rows):
        return []
    size = complexity.size
    parts = [
        f"params: parameters of the network the row's runs trained, built from each run's saved config; "
        f"GMACs: billions of multiply-accumulates of one forward pass of one 3x{size}x{size} image (ptflops, ATen "
        f"backend: convolutions, matrix products and linear layers, the network's own padding included)."
    ]
    if complexity.speed is not None and any(r.s_per_mp is not None for r in rows):
        parts.append(
            f"s/MP and peak GiB: inference measured when the table was drawn, on {complexity.machine}, "
            f"not on the machines that trained: median of {complexity.speed.repeats} forward passes of "
            f"one {size}x{size} image (batch 1, no autograd) in seconds per megapixel, and the memory a "
            f"pass needs above what was allocated before it."
        )
    return parts


def _count(value: Optional[float], digits: int = 2, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    value /= scale
    return f"{value:.{digits}f}" if value >= 1 else f"{value:.{digits + 1}g}"  # small: significant digits


def _columns(
    rows: Sequence[Row],
    costs: Sequence[tuple[float, str, str]],
    boot: Bootstrap,
    complexity: Optional[Complexity] = None,
) -> list[tuple[str, str, Any]]:
    """(header, alignment, cell function) of the table's columns for one data set's rows."""
    ref = _reference_label(rows)
    ci = f"{boot.level * 100:g}% CI"
    cols: list[tuple[str, str, Any]] = [
        ("model", "l", lambda r: r.label),
        ("seeds", "r", lambda r: "-" if r.seeds is None else str(r.seeds)),
        ("PSNR (dB)", "r", lambda r: _pm(r.psnr, r.psnr_std, 2, " ± ")),
        (ci, "r", lambda r: _ci(r.psnr_ci, 2)),
    ]
    if ref:
        cols.append((f"Δ PSNR vs {ref}", "r", lambda r: _delta(r, "psnr")))
    cols += [
        ("SSIM", "r", lambda r: _pm(r.ssim, r.ssim_std, 4, " ± ")),
        (ci, "r", lambda r: _ci(r.ssim_ci, 4)),
    ]
    if ref:
        cols.append((f"Δ SSIM vs {ref}", "r", lambda r: _delta(r, "ssim")))
    cols += [
        ("paper PSNR", "r", lambda r: _paper(r.paper_psnr, 2)),
        ("paper SSIM", "r", lambda r: _paper(r.paper_ssim, 4)),
        ("paper table", "l", lambda r: r.paper_source),
    ]
    if complexity is not None and any(r.params is not None for r in rows):
        cols += [
            ("params", "r", lambda r: "-" if r.params is None else f"{r.params:,}"),
            (f"GMACs ({complexity.size}x{complexity.size})", "r", lambda r: _count(r.macs, 2, 1e9)),
        ]
    if any(r.s_per_mp is not None for r in rows):
        cols += [
            ("s/MP", "r", lambda r: _count(r.s_per_mp, 3)),
            ("peak GiB", "r", lambda r: _count(r.peak_bytes, 3, 2**30)),
        ]
    if any(r.hours is not None for r in rows):
        cols.append((_cost_label(costs), "r", lambda r: _hours(r.hours)))
    return cols


def _sections(
    rows: Sequence[Row],
    costs: Sequence[tuple[float, str, str]],
    boot: Bootstrap,
    complexity: Optional[Complexity] = None,
):
    """(data set, its rows, its columns) for each data set, in name order: one table each."""
    for data in sorted({r.data for r in rows}):
        sub = [r for r in rows if r.data == data]
        yield data, sub, _columns(sub, costs, boot, complexity)


def _other_protocol(rows: Sequence[Row]) -> list[str]:
    """Lines under a data set's table: the published numbers computed under another protocol than the table's."""
    other = [r.paper_other for r in rows if r.paper_other]
    if not other:
        return []
    return [
        "Published under another protocol (PSNR / SSIM; not comparable with this table, '-': not given): "
        + "; ".join(other)
        + ".",
        "",
    ]


def to_markdown(
    rows: Sequence[Row],
    protocol: str,
    split: str,
    boot: Bootstrap = Bootstrap(),
    costs: Sequence[tuple[float, str, str]] = (),
    jobs: Sequence[str] = (),
    complexity: Optional[Complexity] = None,
) -> str:
    lines = []
    for data, sub, cols in _sections(rows, costs, boot, complexity):
        lines += [
            f"### {data} ({split} split, protocol `{protocol}`)",
            "",
            "| " + " | ".join(c[0] for c in cols) + " |",
            "|" + "|".join("---:" if c[1] == "r" else "---" for c in cols) + "|",
        ]
        lines += ["| " + " | ".join(c[2](r) for c in cols) + " |" for r in sub]
        lines.append("")
        lines += _other_protocol(sub)
    lines.append(f"*{caption(rows, protocol, split, boot, costs, complexity)}*")
    notes = [] if complexity is None else [f"Note: {n}" for n in complexity.notes]
    if jobs or notes:
        lines += ["", *notes, *jobs]
    return "\n".join(lines).rstrip("\n") + "\n"


def _tex(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("--", "-{}-")


def to_latex(
    rows: Sequence[Row],
    protocol: str,
    split: str,
    boot: Bootstrap = Bootstrap(),
    costs: Sequence[tuple[float, str, str]] = (),
    complexity: Optional[Complexity] = None,
) -> str:
    out = []
    for data, sub, cols in _sections(rows, costs, boot, complexity):
        other = " ".join(_other_protocol(sub)).strip()
        out += [
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            rf"\caption{{{_tex(data)}: {_tex(caption(sub, protocol, split, boot, costs, complexity))}"
            + (f" {_tex(other)}" if other else "")
            + "}",
            r"\begin{tabular}{" + "".join(c[1] for c in cols) + "}",
            r"\toprule",
            " & ".join(_tex(c[0]) for c in cols) + r" \\",
            r"\midrule",
        ]
        out += [" & ".join(_tex(c[2](r)) for c in cols) + r" \\" for r in sub]
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def plot_chart(rows: Sequence[Row], protocol: str, split: str, path: Path, boot: Bootstrap = Bootstrap()) -> None:
    """Dot-and-whisker chart, PSNR and SSIM side by side, one row of panels per data set: per model the mean
    (filled dot), its bootstrap interval (line), each seed's score (open circles) and the paper's value under
    this protocol (red diamond, just below)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    datasets = sorted({r.data for r in rows})
    counts = [sum(r.data == d for r in rows) for d in datasets]
    fig, axes = plt.subplots(
        len(datasets), 2, figsize=(9.0, 1.3 + 0.42 * sum(counts) + 0.5 * len(datasets)), squeeze=False,
        gridspec_kw={"height_ratios": counts}, sharey="row",
    )  # fmt: skip
    for (ax_psnr, ax_ssim), data in zip(axes, datasets):
        sub = [r for r in rows if r.data == data]
        for ax, measure in ((ax_psnr, "psnr"), (ax_ssim, "ssim")):
            for y, r in enumerate(sub):
                color = "black" if r.model == "input" else "tab:blue"
                seeds = r.seed_psnr if measure == "psnr" else r.seed_ssim
                if len(seeds) > 1:
                    ax.scatter(seeds, [y] * len(seeds), s=22, facecolors="none", edgecolors="0.45", linewidths=0.9,
                               zorder=2)  # fmt: skip
                ci = getattr(r, f"{measure}_ci")
                if ci is not None:
                    ax.plot(ci, [y, y], color=color, linewidth=2.2, solid_capstyle="butt", zorder=3)
                ax.plot([getattr(r, measure)], [y], "o", color=color, markersize=6.5, zorder=4)
                paper = getattr(r, f"paper_{measure}")
                if paper is not None:
                    ax.plot([paper], [y + 0.3], "D", color="tab:red", markersize=5, zorder=4)
            ax.set_yticks(range(len(sub)))
            ax.set_yticklabels([r.label for r in sub])
            ax.set_ylim(len(sub) - 0.5, -0.6)
            ax.grid(axis="x", alpha=0.3)
            ax.margins(x=0.08)
            ax.set_xlabel("PSNR (dB)" if measure == "psnr" else "SSIM")
        ax_psnr.set_title(f"{data}: PSNR", fontsize=10)
        ax_ssim.set_title(f"{data}: SSIM", fontsize=10)
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            color="tab:blue",
            linewidth=2.2,
            label=f"mean, {boot.level * 100:g}% bootstrap CI over images" + (" and seeds" if boot.seeds else ""),
        ),
        Line2D([], [], marker="o", linestyle="none", markerfacecolor="none", markeredgecolor="0.45", label="each seed"),
    ]
    if any(r.paper_psnr is not None for r in rows):
        handles.append(Line2D([], [], marker="D", linestyle="none", color="tab:red", label=f"paper ({protocol})"))
    images = sorted({r.n_images for r in rows if r.n_images is not None})
    n = f", {images[0]} test images" if len(images) == 1 else ""
    fig.suptitle(f"{split} split{n}, protocol {protocol}", fontsize=11)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
