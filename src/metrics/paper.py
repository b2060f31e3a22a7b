"""Published numbers, as data, to print beside ours: the SPANet paper's (CVPR 2019) tables, and the SPA-Data
numbers of the later derainers (DRSformer, CVPR 2023; NeRD-Rain, CVPR 2024; DFSSM, ACCV 2024).

Every row records the protocol its numbers were computed with (:attr:`PaperRow.protocol`): a name in
:data:`src.metrics.protocols.PROTOCOLS`, or None where nobody can tell. A row takes its table's protocol unless
it says otherwise. What is known:

* Tables 2 and 4 and the release README: the SPANet authors scored every method themselves with the release's
  scoring code, i.e. protocol ``spanet`` (RGB in [0, 1], PSNR peak 1, SSIM 7x7 uniform window with
  data_range 2).
* Table 3: only the SPANet row was computed by the SPANet authors (``spanet``). Every other row, the rain
  input included, is copied from DID-MDN's paper (Zhang & Patel, CVPR 2018), whose scoring protocol is not
  stated: those rows have protocol None.
* Table 1: the paper does not say how it scored the clean images (None).

* The later papers' SPA-Data tables: Y channel of MATLAB's rgb2ycbcr, scored with the MATLAB script that
  Restormer ships (``evaluate_PSNR_SSIM.m``) or a copy of it, i.e. protocol ``y_matlab``. Each such table also
  lists earlier methods; rows a paper copied from an earlier one (its authors did not train or score the method
  themselves) are marked ``copied`` and say where from, as far as the paper tells; a row whose SSIM the source
  does not give has ``ssim`` None.

Our numbers are comparable with a paper number only under the same protocol; a row with protocol None is
comparable with nothing we compute.

Rows are keyed by the suite's model config names (``conf/model/<key>.yaml``) where the suite trains the
method, by ``"input"`` for the rainy input itself, and by lower-case method names otherwise (methods only
scored from folders of their outputs). :func:`paper_reference` picks the row that matches a model trained
on a data config.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from src.metrics.protocols import PROTOCOLS

# PaperRow.protocol's default: "the protocol of the table that holds the row" (resolved by PaperTable).
TABLE_PROTOCOL = "<table>"


@dataclass(frozen=True)
class PaperRow:
    """One method's published PSNR (dB) and SSIM, and how it was obtained.

    ``protocol``: the protocol (a name in ``PROTOCOLS``) these numbers were computed with, None when unknown;
    left at ``TABLE_PROTOCOL``, the row takes its table's protocol when the table is built.
    """

    method: str  # as printed in the paper
    psnr: float
    ssim: Optional[float]  # None: not given by the source
    note: str = ""
    protocol: Optional[str] = TABLE_PROTOCOL
    copied: bool = False  # the paper took this row from an earlier paper (see note) instead of computing it


@dataclass(frozen=True)
class PaperTable:
    name: str  # "Table 2"
    dataset: str
    protocol: Optional[str]  # a name in src.metrics.protocols.PROTOCOLS; None when the paper does not say
    rows: dict[str, PaperRow] = field(default_factory=dict)
    note: str = ""
    source: str = ""  # where the numbers are printed (paper, table; repository @ commit)

    def __post_init__(self) -> None:
        for p in (self.protocol, *(r.protocol for r in self.rows.values())):
            if p is not None and p != TABLE_PROTOCOL and p not in PROTOCOLS:
                raise ValueError(f"{self.name}: unknown protocol {p!r}; expected one of {PROTOCOLS} or None")
        rows = {
            k: replace(r, protocol=self.protocol) if r.protocol == TABLE_PROTOCOL else r for k, r in self.rows.items()
        }
        object.__setattr__(self, "rows", rows)


TABLE2 = PaperTable(
    name="Table 2",
    dataset="SPA-Data test set (1000 real rain images)",
    protocol="spanet",
    rows={
        "input": PaperRow("Rain input", 32.64, 0.9315),
        "dsc": PaperRow("DSC", 32.33, 0.9335),
        "lp": PaperRow("LP", 32.99, 0.9475),
        "sils": PaperRow("SILS", 33.40, 0.9528),
        "clear": PaperRow("Clear", 31.31, 0.9304),
        "ddn": PaperRow("DDN", 34.88, 0.9727, "retrained on SPA-Data"),
        "ddn_published": PaperRow("DDN", 33.28, 0.9414, "authors' published model"),
        "jorder": PaperRow("JORDER", 35.72, 0.9776, "retrained on SPA-Data"),
        "jorder_published": PaperRow("JORDER", 32.16, 0.9327, "authors' published model"),
        "didmdn": PaperRow("DID-MDN", 28.96, 0.9457, "fine-tuned on SPA-Data"),
        "didmdn_published": PaperRow("DID-MDN", 24.91, 0.8895, "authors' published model"),
        "rescan": PaperRow("RESCAN", 35.19, 0.9784, "retrained on SPA-Data"),
        "rescan_published": PaperRow("RESCAN", 30.36, 0.9553, "authors' published model"),
        "spanet": PaperRow("SPANet", 38.06, 0.9867),
    },
    note="Baselines trained by the suite (ddn, jorder, didmdn, rescan) map to the retrained (red) numbers.",
)

_FROM_DIDMDN = "copied from DID-MDN's paper; scoring protocol not stated"

TABLE3 = PaperTable(
    name="Table 3",
    dataset="DID-MDN synthetic test set (all methods trained on DID-MDN's synthetic training set)",
    protocol="spanet",
    rows={
        "input": PaperRow("Rain input", 21.15, 0.7781, _FROM_DIDMDN, None),
        "dsc": PaperRow("DSC", 21.44, 0.7896, _FROM_DIDMDN, None),
        "lp": PaperRow("LP", 22.75, 0.8352, _FROM_DIDMDN, None),
        "clear": PaperRow("Clear", 22.07, 0.8422, _FROM_DIDMDN, None),
        "jorder": PaperRow("JORDER", 24.32, 0.8622, _FROM_DIDMDN, None),
        "ddn": PaperRow("DDN", 27.33, 0.8978, _FROM_DIDMDN, None),
        "jbo": PaperRow("JBO", 23.05, 0.8522, _FROM_DIDMDN, None),
        "didmdn": PaperRow("DID-MDN", 27.95, 0.9087, _FROM_DIDMDN, None),
        "spanet": PaperRow("SPANet", 30.05, 0.9342),
    },
    note="The paper prints SSIM before PSNR in this table. Only the SPANet row was scored by the SPANet "
    "authors; the others are DID-MDN's published numbers (protocol unknown).",
)

TABLE4 = PaperTable(
    name="Table 4",
    dataset="SPA-Data test set (1000 real rain images)",
    protocol="spanet",
    rows={
        "b_a": PaperRow("B_a (no SAM, 17 plain RBs)", 37.43, 0.9856),
        "b_b": PaperRow("B_b (one SAM evaluated once)", 37.43, 0.9854),
        "b_c": PaperRow("B_c (4 independent SAMs)", 37.47, 0.9854),
        "b_d": PaperRow("B_d (no direction attention)", 37.70, 0.9858),
        "b_e": PaperRow("B_e (no attention loss)", 37.39, 0.9856),
        "b_f": PaperRow("B_f = SPANet", 38.06, 0.9867),
    },
)

TABLE1 = PaperTable(
    name="Table 1",
    dataset="10 synthetic rain videos of 100 frames (clean-image generation, section 3)",
    protocol=None,  # the paper does not say how it scored Table 1
    rows={
        "input": PaperRow("Rain input", 25.40, 0.7228),
        "jiang": PaperRow("Jiang et al.", 32.79, 0.8827, "best frame of each video"),
        "wei": PaperRow("Wei et al.", 27.30, 0.9043, "best frame of each video"),
        "li": PaperRow("Li et al.", 32.59, 0.9458, "best frame of each video"),
        "ours": PaperRow("SPANet's clean-image generation", 51.40, 0.9907, "best frame of each video"),
    },
    note="Best frame of each video method; the paper's averages are lower.",
)

RELEASE_README = PaperTable(
    name="release README",
    dataset="SPA-Data test set (1000 real rain images)",
    protocol="spanet",
    rows={
        "spanet_release": PaperRow("SPANet (release)", 38.53, 0.9875, "after the release's later IRNN change"),
        "spanet_release_before": PaperRow("SPANet (release)", 38.02, 0.9868, "before the IRNN change"),
    },
    note="The README does not say which figure the released file corresponds to.",
)

_FROM_DRSFORMER = "as printed in DRSformer's SPA-Data column, which took several baseline rows from earlier papers"

DRSFORMER_SPA = PaperTable(
    name="DRSformer, Table 1",
    dataset="SPA-Data test set (1000 real rain images)",
    protocol="y_matlab",
    source="Chen et al., Learning A Sparse Transformer Network for Effective Image Deraining, CVPR 2023, Table 1 "
    "(SPA-Data); scored with evaluations/Evalution_Rain200L_Rain200H_SPA-Data/evaluate_PSNR_SSIM.m "
    "(cschenxiang/DRSformer @ e77bbb4)",
    rows={
        "drsformer_spa": PaperRow("DRSformer", 48.54, 0.9924, "trained without MEFC on SPA-Data (the authors' README)"),
        "restormer": PaperRow("Restormer", 47.98, None, "retrained on SPA-Data by DRSformer's authors"),
        "idt": PaperRow("IDT", 47.35, None, _FROM_DRSFORMER, copied=True),
        "uformer": PaperRow("Uformer", 46.13, None, _FROM_DRSFORMER, copied=True),
        "mprnet": PaperRow("MPRNet", 43.64, None, _FROM_DRSFORMER, copied=True),
        "rcdnet": PaperRow("RCDNet", 43.36, None, _FROM_DRSFORMER, copied=True),
        "prenet": PaperRow("PReNet", 40.16, None, _FROM_DRSFORMER, copied=True),
    },
    note="DRSformer's baseline rows are partly copied from earlier papers; only DRSformer's own row and the "
    "retrained Restormer are known to be its authors' runs.",
)

NERD_RAIN_SPA = PaperTable(
    name="NeRD-Rain",
    dataset="SPA-Data test set (1000 real rain images)",
    protocol="y_matlab",
    source="Chen et al., Bidirectional Multi-Scale Implicit Neural Representations for Image Deraining, CVPR 2024 "
    "(SPA-Data); README links the same MATLAB script (cschenxiang/NeRD-Rain @ 295f4fd)",
    rows={
        "nerd_rain": PaperRow("NeRD-Rain", 49.58, 0.9940),
        "nerd_rain_s": PaperRow("NeRD-Rain-S", 48.90, 0.9936),
    },
)

DFSSM_SPA = PaperTable(
    name="DFSSM",
    dataset="SPA-Data test set (1000 real rain images)",
    protocol="y_matlab",
    source="DFSSM, ACCV 2024 (SPA-Data); ShugoYamashita/DFSSM @ 64d9346",
    rows={"dfssm": PaperRow("DFSSM", 49.55, 0.9939, "not a model of this suite (needs CUDA-only mamba_ssm)")},
)

LATER_PAPERS_SPA = PaperTable(
    name="later papers",
    dataset="SPA-Data test set (1000 real rain images)",
    protocol="y_matlab",
    source="SPA-Data tables of later deraining papers under the MATLAB Y protocol",
    rows={
        "spanet": PaperRow(
            "SPANet",
            40.24,
            0.981,
            "SPANet as later papers report it (not the SPANet authors' "
            "number: theirs is 38.06 / 0.9867 under protocol spanet)",
            copied=True,
        )
    },
)

# The later papers' SPA-Data tables, newest first.
SPA_TABLES = (NERD_RAIN_SPA, DFSSM_SPA, DRSFORMER_SPA, LATER_PAPERS_SPA)

# Which published tables hold the counterpart of a model trained on a data config (first match wins).
_TABLES_BY_DATA: dict[str, tuple[PaperTable, ...]] = {
    "realrain": (TABLE4, TABLE2, RELEASE_README, *SPA_TABLES),
    "didmdn": (TABLE3,),
}
# Our model config names that are the same method as a paper row under another key.
_ALIASES = {"didmdn": {"b_f": "spanet"}}


def paper_reference(data: str, model: str, protocol: Optional[str] = None) -> Optional[tuple[PaperTable, PaperRow]]:
    """The published (table, row) for ``model`` (a model config name, or "input") trained and tested on the
    data config ``data``; None when the paper has no counterpart (e.g. the synthetic smoke data). With
    ``protocol`` given, the first row computed under that protocol (SPANet on SPA-Data: the SPANet paper's
    number under ``spanet``, the later papers' under ``y_matlab``); None when there is none."""
    model = model.lower()
    key = _ALIASES.get(data, {}).get(model, model)
    for table in _TABLES_BY_DATA.get(data, ()):
        row = table.rows.get(key)
        if row is not None and (protocol is None or row.protocol == protocol):
            return table, row
    return None
