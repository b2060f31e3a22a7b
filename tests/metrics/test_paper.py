"""Protocol labels of the paper's numbers (src.metrics.paper): which numbers the SPANet authors computed
themselves under the release's scoring (``spanet``) and which were copied from other papers (None)."""

import pytest

from src.metrics.paper import TABLE1, TABLE2, TABLE3, TABLE4, PaperRow, PaperTable, paper_reference
from src.metrics.protocols import PROTOCOLS

# Table 3's rows that the SPANet paper copied from DID-MDN's paper (Zhang & Patel 2018, Rain1200 table):
# same values, and DID-MDN does not say how it scored them.
COPIED_FROM_DIDMDN = {
    "input": (21.15, 0.7781),
    "dsc": (21.44, 0.7896),
    "lp": (22.75, 0.8352),
    "clear": (22.07, 0.8422),
    "jorder": (24.32, 0.8622),
    "ddn": (27.33, 0.8978),
    "jbo": (23.05, 0.8522),
    "didmdn": (27.95, 0.9087),
}


def test_rows_default_to_their_tables_protocol():
    for table in (TABLE2, TABLE4):
        assert table.protocol == "spanet"
        assert {r.protocol for r in table.rows.values()} == {"spanet"}
    assert TABLE1.protocol is None and {r.protocol for r in TABLE1.rows.values()} == {None}


def test_table3_labels_only_the_spanet_row():
    assert TABLE3.rows["spanet"].protocol == "spanet"
    assert {k for k, r in TABLE3.rows.items() if r.protocol is None} == set(COPIED_FROM_DIDMDN)
    for key, (psnr, ssim) in COPIED_FROM_DIDMDN.items():
        assert (TABLE3.rows[key].psnr, TABLE3.rows[key].ssim) == (psnr, ssim)
        assert "DID-MDN" in TABLE3.rows[key].note


def test_explicit_row_protocol_and_validation():
    t = PaperTable(
        "T",
        "d",
        "spanet",
        rows={
            "a": PaperRow("A", 1.0, 0.5),
            "b": PaperRow("B", 1.0, 0.5, protocol="y_matlab"),
            "c": PaperRow("C", 1.0, 0.5, protocol=None),
        },
    )
    assert [t.rows[k].protocol for k in "abc"] == ["spanet", "y_matlab", None]
    assert "y_matlab" in PROTOCOLS
    with pytest.raises(ValueError, match="unknown protocol 'psnr_y'"):
        PaperTable("T", "d", "spanet", rows={"a": PaperRow("A", 1.0, 0.5, protocol="psnr_y")})


def test_paper_reference_filters_by_protocol():
    assert paper_reference("didmdn", "ddn")[1].psnr == 27.33
    assert paper_reference("didmdn", "ddn", protocol="spanet") is None
    table, row = paper_reference("didmdn", "b_f", protocol="spanet")
    assert (table.name, row.psnr) == ("Table 3", 30.05)
    assert paper_reference("realrain", "rescan", protocol="spanet")[1].psnr == 35.19
    assert paper_reference("realrain", "rescan", protocol="y_matlab") is None


def test_later_papers_spa_data_numbers_are_y_matlab_with_sources():
    from src.metrics.paper import DRSFORMER_SPA, NERD_RAIN_SPA, SPA_TABLES

    for table in SPA_TABLES:
        assert (
            table.protocol == "y_matlab" and table.source and {r.protocol for r in table.rows.values()} == {"y_matlab"}
        )
    want = {
        "nerd_rain": (49.58, 0.9940),
        "nerd_rain_s": (48.90, 0.9936),
        "drsformer_spa": (48.54, 0.9924),
        "restormer": (47.98, None),
        "mprnet": (43.64, None),
        "rcdnet": (43.36, None),
        "prenet": (40.16, None),
    }
    for key, (psnr, ssim) in want.items():
        _, row = paper_reference("realrain", key, protocol="y_matlab")
        assert (row.psnr, row.ssim) == (psnr, ssim), key
    # the rows DRSformer's table took from earlier papers are marked; its own and the retrained Restormer are not
    assert {k for k, r in DRSFORMER_SPA.rows.items() if r.copied} == {"idt", "uformer", "mprnet", "rcdnet", "prenet"}
    assert not any(r.copied for r in NERD_RAIN_SPA.rows.values())
    assert "retrained" in DRSFORMER_SPA.rows["restormer"].note


def test_spanet_on_spa_data_under_each_protocol():
    """SPANet has two published SPA-Data numbers: its authors' under protocol spanet, the later papers' under
    y_matlab (copied from paper to paper); the protocol picks the comparable one."""
    table, row = paper_reference("realrain", "spanet", protocol="spanet")
    assert (table.name, row.psnr, row.copied) == ("Table 2", 38.06, False)
    table, row = paper_reference("realrain", "spanet", protocol="y_matlab")
    assert (row.psnr, row.ssim, row.copied) == (40.24, 0.981, True)
    assert paper_reference("realrain", "spanet")[0].name == "Table 2"  # without a protocol: the SPANet paper's
    assert paper_reference("realrain", "nafnet", protocol="y_matlab") is None  # no published deraining number
    assert paper_reference("synthetic", "nerd_rain") is None
