"""What a build context sends to the builder: Docker's ``.dockerignore`` rules.

The build fingerprint (``pipeline.Facts.build_context_digest``) stamps only the files
the build will receive, and the build phase checks that the state folder is not among
them. The rules are Docker's own (moby/patternmatcher and its ``ignorefile`` reader):

- one pattern a line; a line starting with ``#`` is a comment; blank lines are skipped;
  surrounding spaces are trimmed;
- a pattern is cleaned like a path (``./a//b/`` is ``a/b``) and a leading ``/`` is
  dropped: every pattern is relative to the context's root;
- ``*`` matches any run of characters but ``/``, ``?`` one character but ``/``,
  ``[...]`` a character class, ``\\`` escapes the next character, and ``**`` any number
  of folders, none included (``**/x``, ``a/**/b``, ``a/**``);
- a pattern matches the whole path, or one of its parent folders (``build`` excludes
  ``build/x/y``);
- ``!`` makes a pattern an exception, and the last pattern that matches decides.

BuildKit reads ``<Dockerfile>.dockerignore`` (``Dockerfile.dockerignore``, next to the
Dockerfile) instead of the context's ``.dockerignore`` when there is one; so does this.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IGNORE_FILE = ".dockerignore"


@dataclass(frozen=True)
class Pattern:
    text: str  # cleaned, without the leading "!"
    exception: bool
    regex: re.Pattern[str]


def _clean(pattern: str) -> str:
    cleaned = posixpath.normpath(pattern)
    # normpath keeps a leading "//"; Go's filepath.Clean does not.
    cleaned = re.sub(r"^/+", "/", cleaned)
    if len(cleaned) > 1 and cleaned.startswith("/"):
        cleaned = cleaned[1:]
    return cleaned


def _compile(pattern: str) -> re.Pattern[str]:
    """Docker's translation of a pattern to a regular expression (patternmatcher's compile)."""
    out = "^"
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1  # "**/" is "**"
                out += ".*" if i >= n else "(.*/)?"
                continue
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\":
            if i + 1 < n:
                i += 1
                out += re.escape(pattern[i])
            else:
                out += r"\\"
        elif ch in "[]":
            out += ch
        else:
            out += re.escape(ch)
        i += 1
    try:
        return re.compile(out + "$", re.DOTALL)
    except re.error:
        # A class Python reads differently from Go (rare): match the pattern literally.
        return re.compile("^" + re.escape(pattern) + "$")


def parse(text: str) -> list[Pattern]:
    """The patterns of an ignore file's text, in order."""
    patterns = []
    for number, raw in enumerate(text.splitlines()):
        line = raw.removeprefix("\ufeff") if number == 0 else raw
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        exception = line.startswith("!")
        if exception:
            line = line[1:].strip()
            if not line:
                continue  # Docker refuses a lone "!"; it can match nothing here
        cleaned = _clean(line)
        patterns.append(Pattern(cleaned, exception, _compile(cleaned)))
    return patterns


class Matcher:
    """Whether a path of the context (relative, '/'-separated) is left out of the build."""

    def __init__(self, patterns: list[Pattern]):
        self.patterns = patterns
        self.has_exceptions = any(p.exception for p in patterns)

    @classmethod
    def from_text(cls, text: str) -> Matcher:
        return cls(parse(text))

    def excluded(self, path: str) -> bool:
        path = _clean(path)
        parents = path.split("/")[:-1]
        prefixes = ["/".join(parents[: i + 1]) for i in range(len(parents))]
        matched = False
        for pattern in self.patterns:
            if pattern.exception and not matched:
                continue  # an exception can only bring back what is excluded so far
            hit = bool(pattern.regex.fullmatch(path)) or any(pattern.regex.fullmatch(p) for p in prefixes)
            if hit:
                matched = not pattern.exception
        return matched


def ignore_file(context: Path, dockerfile: Path | None = None) -> Path | None:
    """The ignore file the builder reads for this context and Dockerfile, or None."""
    if dockerfile is not None:
        specific = dockerfile.with_name(dockerfile.name + IGNORE_FILE)
        if specific.is_file():
            return specific
    general = context / IGNORE_FILE
    return general if general.is_file() else None


def load(context: Path, dockerfile: Path | None = None) -> tuple[Matcher, Path | None]:
    path = ignore_file(context, dockerfile)
    if path is None:
        return Matcher([]), None
    try:
        return Matcher.from_text(path.read_text(encoding="utf-8", errors="replace")), path
    except OSError:
        return Matcher([]), path


def sent_files(context: Path, matcher: Matcher, leave_out: Path | None = None) -> Iterator[str]:
    """The files (relative paths, sorted walk) the builder receives from ``context``;
    ``leave_out`` (a folder, e.g. the state folder) is never counted."""
    skip = os.path.realpath(leave_out) if leave_out is not None else None
    skip_name = os.path.basename(skip) if skip is not None else None
    root = str(context)
    for folder, dirs, files in os.walk(root):
        rel_folder = os.path.relpath(folder, root)
        kept = []
        for name in sorted(dirs):
            full = os.path.join(folder, name)
            rel = name if rel_folder == "." else f"{rel_folder}/{name}"
            if name == skip_name and os.path.realpath(full) == skip:
                continue
            # An excluded folder is skipped whole unless an exception may bring part of it back.
            if not matcher.has_exceptions and matcher.excluded(rel):
                continue
            kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            rel = name if rel_folder == "." else f"{rel_folder}/{name}"
            if not matcher.excluded(rel):
                yield rel


def state_exposed(context: Path, matcher: Matcher, state_dir: Path) -> bool:
    """True when ``state_dir`` lies in ``context`` and some of it would be sent to the builder."""
    try:
        rel = Path(os.path.realpath(state_dir)).relative_to(os.path.realpath(context))
    except ValueError:
        return False
    if str(rel) == ".":
        return True
    prefix = rel.as_posix()
    if not matcher.excluded(f"{prefix}/state.db"):
        return True
    if not state_dir.is_dir():
        return False
    for folder, _dirs, files in os.walk(state_dir):
        for name in files:
            inner = Path(folder, name).relative_to(state_dir).as_posix()
            if not matcher.excluded(f"{prefix}/{inner}"):
                return True
    return False
