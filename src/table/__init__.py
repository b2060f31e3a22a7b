"""The table of a sweep: ``python -m src.table SWEEP_DIR`` (src/table/cli.py says what it computes and writes).

read.py reads results (metrics.json via :class:`src.runs.result.RunResult`, W&B, ``--extra`` files) and the
sweep's jobs; stats.py makes the rows (means, bootstrap intervals, paired differences); complexity.py adds each
row's parameters and MACs (and with --profile its inference speed and memory); draw.py writes Markdown, LaTeX
and the chart."""

from src.table.cli import main
from src.table.draw import caption, job_report, plot_chart, to_latex, to_markdown
from src.table.read import (
    Job,
    Run,
    run_cost,
    runs_from_dir,
    runs_from_extras,
    runs_from_wandb,
    sweep_jobs,
    wandb_per_image,
)
from src.table.stats import Bootstrap, Row, bootstrap_ci, paper_protocol, reference_row, summarize

__all__ = [
    "Bootstrap",
    "Job",
    "Row",
    "Run",
    "bootstrap_ci",
    "caption",
    "job_report",
    "main",
    "paper_protocol",
    "plot_chart",
    "reference_row",
    "run_cost",
    "runs_from_dir",
    "runs_from_extras",
    "runs_from_wandb",
    "summarize",
    "sweep_jobs",
    "to_latex",
    "to_markdown",
    "wandb_per_image",
]
