"""``key=value`` command-line options, Hydra-style, for the make_clean commands (no Hydra run directory)."""

from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence


class UsageError(ValueError):
    """A bad command line: the message names the option and what is wrong."""


def parse_options(
    args: Sequence[str],
    options: dict[str, Callable[[str], object]],
    defaults: Optional[dict[str, object]] = None,
    required: Sequence[str] = (),
) -> dict[str, object]:
    """Parse ``key=value`` words. ``options`` maps each known key to a converter (int, str, ...);
    a converter's ValueError becomes a UsageError naming the key."""
    values = dict(defaults or {})
    for word in args:
        key, sep, raw = word.partition("=")
        key = key.lstrip("+")
        if not sep or not key:
            raise UsageError(f"{word!r}: expected key=value (keys: {', '.join(options)})")
        if key not in options:
            raise UsageError(f"unknown option {key!r} (known: {', '.join(options)})")
        try:
            values[key] = options[key](raw)
        except ValueError as exc:
            raise UsageError(f"{key}={raw}: {exc}") from None
    missing = [k for k in required if values.get(k) in (None, "")]
    if missing:
        raise UsageError(f"missing {', '.join(f'{k}=...' for k in missing)}")
    return values


def integer(minimum: int) -> Callable[[str], int]:
    def convert(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("expected an integer") from None
        if value < minimum:
            raise ValueError(f"must be >= {minimum}")
        return value

    return convert


def boolean(raw: str) -> bool:
    value = {"true": True, "false": False}.get(raw.strip().lower())
    if value is None:
        raise ValueError("expected true or false")
    return value


def choice(*allowed: str) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(f"choose one of {', '.join(allowed)}")
        return raw

    return convert


def run_main(main: Callable[[Sequence[str]], int], usage: str, argv: Optional[Sequence[str]] = None) -> int:
    """Run ``main(args)``; print usage for -h/--help; turn expected errors into one ``error:`` line, exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(usage)
        return 0
    try:
        return main(args)
    except UsageError as exc:
        print(f"error: {exc}\n\n{usage}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
