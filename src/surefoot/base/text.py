"""Text read from elsewhere made safe to show on a terminal: :func:`printable` drops escape
sequences and control characters, so that a value a server holds (a release record, a lock's
holder, a message of compose or docker there) cannot move the cursor, retitle the terminal or
hide what follows."""

from __future__ import annotations

import re
from typing import Any

# An escape sequence (CSI ... final byte, OSC ... BEL or ST, or a two-character one), then any
# other C0 or C1 control character but the tab.
_UNPRINTABLE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?"
                          r"|[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with escape sequences and control characters (line breaks included) removed."""
    return _UNPRINTABLE.sub("", text)


def printable_data(value: Any) -> Any:
    """A JSON value (a record read from a server) with :func:`printable` strings, keys included."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, list):
        return [printable_data(item) for item in value]
    if isinstance(value, dict):
        return {printable(str(key)): printable_data(item) for key, item in value.items()}
    return value
