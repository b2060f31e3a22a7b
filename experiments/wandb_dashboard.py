"""A saved W&B view (and optionally a report) that compares one sweep's runs at a glance.

    python experiments/wandb_dashboard.py --group table4                     # saved workspace view "table4"
    python experiments/wandb_dashboard.py --group table4 --report            # + a report with the same panels
    python experiments/wandb_dashboard.py --group table4 --dry-run > v.json  # print the view; no login/network

A script of experiments/, not a suite entry point: it takes argparse options (``--help``); the suite's
commands (``python -m src.*``) take Hydra overrides.

The runs are those of W&B project ``--project`` (default spanet-suite, the project of conf/logger/wandb.yaml) in
run group ``--group`` (the ``experiment_name`` of the sweep, e.g. table4, table2, table4_smoke), grouped by
``run_info.model`` so seeds of one model are averaged (mean, band/error bar = std). Sections, top to bottom:

* test scores: bars of ``test/psnr_<protocol>`` and ``test/ssim_<protocol>`` per model for protocol ``spanet``
  (the paper's tables) with the rain input's score, then the same for the other protocols; a parallel-coordinates
  plot model -> seed -> test PSNR/SSIM of every protocol;
* curves: ``val/psnr_spanet``, ``val/ssim_spanet``, ``train/loss`` and the learning rate against the training step;
* images: the validation grids ``val/grid`` (rows: images; columns: rain | output | clean | attention);
* per-image scores: the ``test/per_image`` table (one row per test image, one column per protocol metric).

The metric names are the ones src.lit.module.DerainModule and src.lit.callbacks log (``KEYS`` lists them).
Needs the ``wandb-workspaces`` package (a dependency of the suite). Offline runs must be synced first
(``wandb sync <run dir>/wandb/offline-run-*``; see docs/wandb.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from src.metrics.protocols import PROTOCOLS  # noqa: E402

GROUP_BY = "run_info.model"  # config key written by src.train (conf/train.yaml run_info)
MAIN = "spanet"  # the protocol of the paper's tables
SCORES = [f"test/{m}_{p}" for p in PROTOCOLS for m in ("psnr", "ssim")]
INPUT_SCORES = [f"test/input_{m}_{MAIN}" for m in ("psnr", "ssim")]  # the rain input, for reference
CURVES = [f"val/psnr_{MAIN}", f"val/ssim_{MAIN}", "train/loss", "lr-Adam"]
GRID, TABLE, STEP = "val/grid", "test/per_image", "trainer/global_step"
KEYS = {"summary": SCORES + INPUT_SCORES, "history": CURVES, "media": [GRID], "table": [TABLE]}


def _bar(wr, metric: str, title: str):
    return wr.BarPlot(title=title, metrics=[metric], orientation="v", groupby=wr.Config(GROUP_BY),
                      groupby_aggfunc="mean", groupby_rangefunc="stddev")  # fmt: skip


def panels(wr) -> dict[str, list]:
    """Section title -> panels (``wr`` = ``wandb_workspaces.reports.v2``); the same for the view and the report."""
    main = [_bar(wr, f"test/{m}_{MAIN}", f"test {m.upper()} ({MAIN} protocol), mean ± std over seeds")
            for m in ("psnr", "ssim")]  # fmt: skip
    main += [_bar(wr, f"test/input_{m}_{MAIN}", f"rain input {m.upper()} ({MAIN} protocol)") for m in ("psnr", "ssim")]
    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(GROUP_BY), display_name="model"),
               wr.ParallelCoordinatesPlotColumn(metric=wr.Config("seed"), display_name="seed")]  # fmt: skip
    columns += [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(k), display_name=k[5:]) for k in SCORES]
    main.append(wr.ParallelCoordinatesPlot(title="model -> seed -> test scores, every protocol", columns=columns))
    others = [_bar(wr, f"test/{m}_{p}", f"test {m.upper()} ({p} protocol)")
              for p in PROTOCOLS if p != MAIN for m in ("psnr", "ssim")]  # fmt: skip
    curves = [wr.LinePlot(title=key, x=wr.Metric(STEP), y=[wr.Metric(key)], groupby=wr.Config(GROUP_BY),
                          groupby_aggfunc="mean", groupby_rangefunc="stddev") for key in CURVES]  # fmt: skip
    return {
        f"Test scores ({MAIN} protocol)": main,
        "Test scores (other protocols)": others,
        "Curves": curves,
        "Validation images (rain | output | clean | attention)": [wr.MediaBrowser(title=GRID, media_keys=[GRID])],
        "Per-image test scores": [wr.WeavePanelSummaryTable(table_name=TABLE)],
    }


def build_workspace(entity: str, project: str, group: str):
    """The saved workspace view: runs of one group, grouped by model, the sections of ``panels``."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    sections = [ws.Section(name=name, panels=ps, is_open=True) for name, ps in panels(wr).items()]
    runset = ws.RunsetSettings(filters=[ws.Metric("Group") == group], groupby=[ws.Config(GROUP_BY)])
    return ws.Workspace(entity=entity, project=project, name=group, sections=sections, runset_settings=runset,
                        settings=ws.WorkspaceSettings(x_axis=STEP, max_runs=100))  # fmt: skip


def build_report(entity: str, project: str, group: str):
    """A report with one panel grid per section, each over the runs of the group grouped by model."""
    import wandb_workspaces.reports.v2 as wr

    runset = dict(entity=entity, project=project, name=group, filters=f"Group = '{group}'",
                  groupby=[f"config.{GROUP_BY}"])  # fmt: skip
    blocks = [
        wr.H1(f"Sweep {group}"),
        wr.P(f"Runs of group {group} in {entity}/{project}, grouped by model ({GROUP_BY}): bars are the mean over "
             f"seeds with the standard deviation. Every number names its protocol: {MAIN} is the protocol of the "
             f"SPANet paper's tables (RGB in [0, 1], SSIM with data_range 2), y_matlab the one of most later "
             f"papers (Y channel, 8-bit), rgb_uint8 8-bit RGB. The table of the paper numbers beside ours is "
             f"made by experiments/make_table.py --wandb {entity}/{project}."),
    ]  # fmt: skip
    for name, ps in panels(wr).items():
        blocks += [wr.H2(name), wr.PanelGrid(runsets=[wr.Runset(**runset)], panels=ps)]
    return wr.Report(entity=entity, project=project, title=f"{group}: results by model", blocks=blocks,
                     width="fluid")  # fmt: skip


def main(argv: Optional[Iterable[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", required=True, help="W&B run group = the sweep's experiment_name, e.g. table4")
    parser.add_argument("--project", default="spanet-suite", help="W&B project (default: spanet-suite)")
    parser.add_argument("--entity", help="W&B user or team (default: your default entity; ENTITY with --dry-run)")
    parser.add_argument("--report", action="store_true", help="also create a report with the same panels")
    parser.add_argument("--dry-run", action="store_true", help="print the view's spec as JSON (no login, no network)")
    args = parser.parse_args(None if argv is None else list(argv))

    entity = args.entity
    if entity is None:
        if args.dry_run:
            entity = "ENTITY"
        else:
            import wandb

            try:
                entity = wandb.Api().default_entity
            except Exception as err:  # not logged in, no network, ...
                parser.error(f"cannot reach W&B to find your entity ({err}); log in (wandb login) or use --dry-run")
            if not entity:
                parser.error("no default W&B entity: pass --entity")
    workspace = build_workspace(entity, args.project, args.group)
    report = build_report(entity, args.project, args.group) if args.report else None
    if args.dry_run:  # the view's payload as save() would send it (_to_model: the library's own serialiser)
        print(workspace._to_model().model_dump_json(indent=1))
        if report is not None:  # its runsets look the project up through the API when serialised
            headings = [b.text for b in report.blocks if type(b).__name__ in ("H1", "H2")]
            print(f"report {report.title!r} (needs a login to serialise), headings: {headings}", file=sys.stderr)
        return
    workspace.save()
    print(f"saved workspace view {args.group!r}: {workspace.url}")
    if report is not None:
        report.save()
        print(f"saved report: {report.url}")


if __name__ == "__main__":
    main()
