"""Parsers for the small value types of the configuration: durations, for now."""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Return seconds for ``"500ms"``, ``"2s"``, ``"1m30s"``, ``"2h"`` or a plain number of seconds.

    Raises ValueError with a message fit for the user.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as \"2s\", \"500ms\" or \"1m30s\"")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            pos, seconds = 0, 0.0
            for match in _DURATION_PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(
                    f"{value!r} is not a duration; expected e.g. \"2s\", \"500ms\", \"1m30s\" or \"2h\""
                )
    else:
        raise ValueError("expected a duration such as \"2s\", \"500ms\" or \"1m30s\"")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{value!r} is not a usable duration")
    return seconds


def format_duration(seconds: float) -> str:
    """Short human form: ``0.4s``, ``12s``, ``3m05s``, ``1h02m``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_SIZE_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(value: object) -> int:
    """Bytes for ``"2GiB"``, ``"2G"``, ``"512MB"``, ``"10gb"`` or a plain number of bytes.

    Both decimal and binary suffixes mean powers of 1024, as free(1) and df(1) count.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError('expected a size such as "2GiB", "512MB" or a number of bytes')
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is not a usable size")
        return int(value)
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f'{value!r} is not a size; expected e.g. "2GiB", "512MB" or "10G"')
    return int(float(match.group(1)) * 1024 ** _SIZE_POWER[match.group(2).lower()])


def format_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    raise AssertionError


def short_commit(commit: str) -> str:
    """A git commit as people read it: 10 characters, and ``-dirty`` when the work tree had changes."""
    return commit[:10] + ("-dirty" if commit.endswith("-dirty") else "")
