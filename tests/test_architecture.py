"""The architecture checks itself: the import contracts of pyproject.toml ([tool.importlinter]: the rooms' layers,
no framework in networks / losses / metrics / operators, no network in data) hold for the whole package."""

from __future__ import annotations

from tests.conftest import ROOT


def test_import_contracts_hold(monkeypatch, capsys):
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert code == 0, f"an import breaks a contract of pyproject.toml [tool.importlinter]:\n{report}"
    n = (ROOT / "pyproject.toml").read_text().count("[[tool.importlinter.contracts]]")
    assert n >= 4 and f"Contracts: {n} kept, 0 broken." in report
