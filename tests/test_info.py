"""python -m src.info: every config listed with a description, models with their parameter counts."""

from __future__ import annotations

import re

import pytest

from src.info import GROUPS, entries, first_sentence, show


@pytest.mark.parametrize("group", [g for g in GROUPS if g != "model"])
def test_every_config_has_a_description(group):
    for name, _facts, lines in entries(group):
        assert lines and len(lines[0]) > 20, f"conf/{group}/{name}.yaml: no header comment to describe it"


def test_models_with_parameter_counts_and_paper(capsys):
    show(["model", "data"])
    out = capsys.readouterr().out
    # the SPANet paper's count, and the release (B_d: no direction-attention branch)
    assert re.search(r"\n  spanet\s+\[283,716 parameters\].*Wang et al., CVPR 2019", out)
    assert re.search(r"\n  spanet_release\s+\[276,704 parameters\]", out)
    assert re.search(r"\n  ddn\s+\[57,369 parameters\] DDN \(Fu et al., CVPR 2017\)", out)
    # today's derainers at the authors' sizes (counted on the meta device; the model tests count real networks)
    for model, count in [
        ("restormer", "26,126,644"),
        ("drsformer", "33,655,424"),
        ("drsformer_spa", "32,610,304"),
        ("nafnet", "29,159,715"),
        ("nerd_rain", "22,888,538"),
        ("nerd_rain_s", "10,528,266"),
        ("prenet", "168,963"),
    ]:
        assert re.search(rf"\n  {model}\s+\[{count} parameters\]", out), model
    assert re.search(r"\n  realrain\s+\[needs data.root=DIR\] SPA-Data", out)
    assert re.search(r"\n  synthetic\s+\[built in, no download\]", out)


def test_first_sentence_ignores_dots_in_brackets():
    assert (
        first_sentence(["SPANet as trained (CVPR'19, sec. 5): Adam.", "More."])
        == "SPANet as trained (CVPR'19, sec. 5): Adam."
    )
    assert first_sentence(["Paper Table 4 on SPA-Data:"]) == "Paper Table 4 on SPA-Data."


def test_unknown_group_is_an_error():
    with pytest.raises(ValueError, match=r"unknown \['models'\]; choose from model"):
        show(["models"])
