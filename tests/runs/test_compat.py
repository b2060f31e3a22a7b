"""src/runs/compat.py: every private Lightning / Hydra / submitit API the suite uses still exists in the installed
versions; when an upgrade removes one, the failure names it, its user and the versions."""

from __future__ import annotations

import logging
import subprocess
import sys

from src.runs import compat
from tests.conftest import ROOT


def test_every_private_api_the_suite_uses_exists():
    problems = compat.check()
    assert problems == [], "a library upgrade broke a private API the suite uses:\n" + "\n".join(problems)


def test_a_removed_private_api_is_named_with_its_user_and_the_versions(monkeypatch):
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    monkeypatch.delattr(_SubprocessScriptLauncher, "_call_children_scripts")
    monkeypatch.setitem(compat.PRIVATE_CLASSES, "Gone", ("lightning.pytorch.strategies", "_Gone", "src/x.py"))
    problems = compat.check()
    assert (
        "lightning.pytorch.strategies.launchers.subprocess_script._SubprocessScriptLauncher._call_children_scripts"
        " is gone (src/runs/ddp.py overrides or calls it)"
    ) in problems
    gone = "lightning.pytorch.strategies._Gone is gone (AttributeError; used by src/x.py as compat.Gone)"
    assert gone in problems
    assert problems[-1].startswith("installed: lightning ") and "(checked: 2.6.6)" in problems[-1]


def test_importing_a_class_for_a_hydra_plugin_does_not_import_lightning():
    """Hydra imports every plugin at start-up, also for the tools: the sweeper's import must stay cheap."""
    code = (
        "import sys; from src.runs.compat import BasicSweeper; print('lightning' in sys.modules, BasicSweeper.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "BasicSweeper"]


def test_known_noise_is_quiet(caplog):
    compat.quiet_known_noise()
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger](...)")
        logger.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
