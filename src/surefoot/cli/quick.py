"""``surefoot status`` without the CLI library: the command operators run in a loop while a
deployment goes on, answered in a few milliseconds.

:func:`status_request` recognises only the plain form, the group's options and ``status
[--json]`` (``-C DIR``, ``-c FILE``, ``--state-dir DIR``, ``--target NAME``, each also written
``--opt=VALUE``; SUREFOOT_STATE_DIR and SUREFOOT_TARGET as click reads them). Anything else
(``--help``, another option, a misspelling) returns None, and click parses the whole command as
for every other one: so both paths answer the same, and click's own messages stay click's.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from surefoot.cli.options import GlobalOptions

_VALUED = {"-C": "project_dir", "-c": "config", "--state-dir": "state_dir", "--target": "targets"}


def hoisted(args: Sequence[str]) -> list[str]:
    """``--target`` is the group's option, but users write it after the command too
    (``surefoot prerequisites --dry-run --target web1``): moved before the command, as click wants
    it. Not after ``--``, and never out of ``compose``'s own arguments."""
    words = list(args)
    index = 0
    while index < len(words) and words[index].startswith("-"):  # the group's options
        index += 2 if words[index] in _VALUED else 1
    if index >= len(words) or words[index] == "compose":
        return words
    before, command, rest = words[:index], words[index], words[index + 1:]
    moved: list[str] = []
    kept: list[str] = []
    while rest:
        word = rest.pop(0)
        if word == "--":
            kept += [word, *rest]
            break
        if word == "--target" and rest:
            moved += [word, rest.pop(0)]
        elif word.startswith("--target="):
            moved.append(word)
        else:
            kept.append(word)
    return [*before, *moved, command, *kept]


def status_request(args: Sequence[str], environ: Mapping[str, str]) -> tuple[GlobalOptions, bool] | None:
    """``(options, as_json)`` when ``args`` is a plain ``status`` command; else None."""
    given: dict[str, str] = {}
    targets: list[str] = []
    words = list(args)
    while words and words[0] != "status":
        word = words.pop(0)
        name, equals, value = word.partition("=")
        if word.startswith("--") and equals and name in _VALUED:
            pass
        elif word in _VALUED and words:
            name, value = word, words.pop(0)
        else:
            return None
        if not value or (name != "--target" and name in given):
            return None
        if name == "--target":
            targets.append(value)
        else:
            given[name] = value
    if words[1:] not in ([], ["--json"]) or not words:
        return None
    state_dir = given.get("--state-dir") or environ.get("SUREFOOT_STATE_DIR") or None
    if not targets and environ.get("SUREFOOT_TARGET"):
        targets = environ["SUREFOOT_TARGET"].split()
    config = given.get("-c")
    options = GlobalOptions.given(Path(given.get("-C", ".")), Path(config) if config else None,
                                  Path(state_dir) if state_dir else None, tuple(targets), environ)
    return options, words[1:] == ["--json"]


def run_status(options: GlobalOptions, as_json: bool) -> int:
    """Print the status; a user's mistake (a folder or file not found, a broken store) is one
    line on standard error and its exit code, as from click's path."""
    from surefoot.base.errors import SurefootError
    from surefoot.cli.reports.status import show_status

    try:
        print(show_status(options, as_json))
    except SurefootError as exc:
        for line in str(exc).splitlines():
            print(f"surefoot: {line}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        sys.stderr.close()
    return 0
