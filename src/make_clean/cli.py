"""What the three make_clean commands share on the command line: Hydra entry points, each with its own config.

``python -m src.make_clean`` reads ``conf/make_clean.yaml``, ``python -m src.make_clean.review``
``conf/make_clean_review.yaml`` and ``python -m src.make_clean.assemble`` ``conf/make_clean_assemble.yaml``
(``--help`` prints the usage and the options with their defaults; ``--cfg job`` the composed config). Hydra
parses ``key=value`` and rejects unknown keys and malformed words itself (exit status 1); :func:`read_options`
then checks each value's type and range, and :func:`run_main` turns a bad value or a bad input (a missing clip, an
existing output, ...) into one ``error:`` line naming the option or the file, exit status 2. The tools write no
Hydra run directory and no log file (``conf/hydra/tool.yaml``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

#: Hydra's ``config_path`` for the entry points of this package: the repository's conf/ (an absolute path, so that
#: the entry points also run when imported, not only as ``python -m``).
CONFIG_PATH = str(Path(__file__).resolve().parents[2] / "conf")


class UsageError(ValueError):
    """A bad option value: the message names the option and what is wrong."""


def read_options(
    cfg: DictConfig | Mapping[str, Any],
    options: Mapping[str, Callable[[Any], object]],
    required: Sequence[str] = (),
    nullable: Sequence[str] = (),
) -> dict[str, object]:
    """The composed config's values, each passed through its converter in ``options``. ``required`` keys must be
    set, only ``nullable`` ones may stay null (None). A key the command does not know (added with ``+key=...``),
    a missing value or a converter's ValueError becomes a UsageError naming the key."""
    values = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    values.pop("hydra", None)
    unknown = [k for k in values if k not in options]
    if unknown:
        raise UsageError(f"unknown option {unknown[0]!r} (known: {', '.join(options)})")
    missing = [k for k in required if values.get(k) in (None, "")]
    if missing:
        raise UsageError(f"missing {', '.join(f'{k}=...' for k in missing)}")
    out: dict[str, object] = {}
    for key, convert in options.items():
        raw = values.get(key)
        if raw is None:
            if key not in nullable:
                raise UsageError(f"{key}=null: expected a value")
            out[key] = None
            continue
        try:
            out[key] = convert(raw)
        except ValueError as exc:
            raise UsageError(f"{key}={_word(raw)}: {exc}") from None
    return out


def _word(value: Any) -> str:
    """A value as the user typed it (true/false for booleans)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def text(value: Any) -> str:
    """A path or a name: Hydra may have read ``output=2024`` as an int; the command wants the text."""
    if isinstance(value, (list, dict)):
        raise ValueError("expected one value (quote it if it holds a comma or brackets)")
    return _word(value)


def integer(minimum: int) -> Callable[[Any], int]:
    def convert(raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise ValueError("expected an integer")
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("expected an integer") from None
        if value < minimum:
            raise ValueError(f"must be >= {minimum}")
        return value

    return convert


def number(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a number")
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ValueError("expected a number") from None


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() in ("true", "1", "yes"):
        return True
    if str(raw).lower() in ("false", "0", "no"):
        return False
    raise ValueError("expected true or false")


def choice(*allowed: str) -> Callable[[Any], str]:
    def convert(raw: Any) -> str:
        if raw not in allowed:
            raise ValueError(f"choose one of {', '.join(allowed)}")
        return raw

    return convert


def run_main(main: Callable[[DictConfig], int], cfg: DictConfig) -> int:
    """Run ``main(cfg)``; turn expected errors into one ``error:`` line on stderr and exit status 2."""
    try:
        return main(cfg)
    except UsageError as exc:
        print(f"error: {exc} (see --help)", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
