"""Expected refusals: what the suite will not do, said in one line, with exit status 2.

A :class:`Refusal` is not a bug: the user asked for something that would replace a file they own, write an
output inside an input, reuse a run dir that holds a run, or use a config value that cannot work. Entry points
wrapped in :func:`refusals_exit` print ``error: <message>`` on stderr and exit with status 2, without a
traceback (``HYDRA_FULL_ERROR=1`` shows one). In a Hydra multirun a refusal is raised on, so that the sweeper
records it for that job (``error.txt``, ``sweep_summary.json``) and the other jobs still run.

Refusals subclass the built-in exception a caller would catch anyway (``FileExistsError``, ``ValueError``).
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, Optional


class Refusal(Exception):
    """An expected refusal; the message names the file or config key and what to do instead."""

    exit_code = 2


class OutputExistsError(Refusal, FileExistsError):
    """An output (file, folder, run dir) exists already and ``overwrite`` was not asked for."""


class ConfigValueError(Refusal, ValueError):
    """A config value that cannot work; the message names the key."""


def _in_multirun() -> bool:
    """True inside a job of a Hydra multirun. Reads Hydra's state only when Hydra is already running (this leaf
    module does not import Hydra: the networks and metrics that raise refusals stay free of it)."""
    hydra_config = sys.modules.get("hydra.core.hydra_config")
    if hydra_config is None or not hydra_config.HydraConfig.initialized():
        return False
    return str(getattr(hydra_config.HydraConfig.get(), "mode", "")).endswith("MULTIRUN")


def refusals_exit(task: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a Hydra task function (under ``@hydra.main``): a :class:`Refusal` becomes one ``error:`` line on
    stderr and exit status 2 (raised on in a multirun, or with ``HYDRA_FULL_ERROR=1``)."""

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except Exception as exc:
            refusal = _refusal(exc)
            if refusal is None or os.environ.get("HYDRA_FULL_ERROR") == "1" or _in_multirun():
                raise
            print(f"error: {refusal}", file=sys.stderr, flush=True)
            sys.exit(refusal.exit_code)

    return wrapper


def _refusal(exc: BaseException) -> Optional[Refusal]:
    """``exc`` when it is a Refusal, or the Refusal that ``hydra.utils.instantiate`` wrapped (a config value refused
    by a constructor arrives as Hydra's InstantiationException raised from it); else None."""
    for _ in range(4):
        if isinstance(exc, Refusal):
            return exc
        if exc is None or type(exc).__name__ != "InstantiationException":
            return None
        exc = exc.__cause__
    return None
