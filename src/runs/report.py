"""Console tables of metric reports (the JSON schema of src.metrics: n_images / mean / per_image): the end of a
``src.train`` / ``src.eval`` run and the results notebook."""

from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.table import Table

from src.metrics import PROTOCOL_SUMMARY


def report_table(rows: dict[str, Optional[dict]], title: str) -> Table:
    """One table: a row per protocol, PSNR/SSIM columns for each named report (e.g. output and input)."""
    rows = {k: v for k, v in rows.items() if v}
    table = Table(title=title)
    table.add_column("protocol")
    for name in rows:
        table.add_column(f"{name}\nPSNR dB", justify="right")
        table.add_column(f"{name}\nSSIM", justify="right")
    protocols = next(iter(rows.values()))["mean"] if rows else {}
    for proto in protocols:
        cells = []
        for rep in rows.values():
            m = rep["mean"].get(proto, {})
            cells += [f"{m.get('psnr', float('nan')):.2f}", f"{m.get('ssim', float('nan')):.4f}"]
        table.add_row(proto, *cells)
    n = {name: rep["n_images"] for name, rep in rows.items()}
    table.caption = f"images: {n}; scored per image, then averaged.\n" + "\n".join(
        f"{p}: {PROTOCOL_SUMMARY.get(p, '')}" for p in protocols
    )
    return table


#: What ``src.train`` records (metrics.json ``test_note``) and prints instead of a test table when its data set has no
#: test split: the validation split is not reported a second time under "test".
NO_TEST_SPLIT = (
    "no test split in this data set (e.g. data.test_dir=null): nothing was tested; the scores above are "
    "the validation split's, which chose the checkpoint"
)


def print_report(result, title: str) -> None:
    """The validation and test tables of a :class:`~src.runs.result.RunResult`: output beside the rain input;
    without a test split, the run's ``test_note`` instead of a test table."""
    console = Console()
    for split in ("val", "test"):
        if result.report(split):
            console.print(
                report_table(
                    {"output": result.report(split), "rain input": result.report(f"{split}_input")},
                    title=f"{title}: {split}",
                )
            )
    if result.test_note and not result.test:
        console.print(f"{title}: test: {result.test_note}")
