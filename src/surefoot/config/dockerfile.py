"""What a Dockerfile needs from outside before it can build: its ``# syntax=`` frontend and
the images its ``FROM`` lines name. Pure text in, names out (preflight asks the engine and
the registry about them)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")
_HEREDOC = re.compile(r"<<(-?)\s*([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_FROM_FLAG = re.compile(r"--from=(\S+)")
_MOUNT_FROM = re.compile(r"--mount=\S*?\bfrom=([^,\s]+)")


@dataclass
class Needs:
    """``frontend``: the ``# syntax=`` image, if any; ``images``: the images the stages that
    are built start from (stages, ``scratch`` and references that cannot be resolved left out)."""

    frontend: str | None = None
    images: list[str] = field(default_factory=list)


@dataclass
class _Stage:
    base: str | None  # None: unresolved (an ARG without a value)
    name: str | None
    uses: set[str] = field(default_factory=set)  # COPY --from / RUN --mount from= references


def _directives(lines: list[str]) -> dict[str, str]:
    """The parser directives: ``# key=value`` lines at the very top, before anything else."""
    found: dict[str, str] = {}
    for line in lines:
        match = _DIRECTIVE.match(line.strip()) if line.strip() else None
        if not match or match.group(1).lower() in found:
            break
        found[match.group(1).lower()] = match.group(2)
    return found


def _instructions(lines: list[str], escape: str) -> list[str]:
    """Logical instructions: continuation lines joined, comments and heredoc bodies left out."""
    result: list[str] = []
    current = ""
    heredocs: list[str] = []
    for raw in lines:
        if heredocs:
            if raw.strip() == heredocs[0] or raw == heredocs[0]:
                heredocs.pop(0)
            continue
        line = raw.rstrip("\r\n")
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith(escape):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        result.append(current.strip())
        heredocs = [match.group(3) for match in _HEREDOC.finditer(current)]
        current = ""
    if current.strip():
        result.append(current.strip())
    return result


def substitute(text: str, values: Mapping[str, str]) -> str | None:
    """``$VAR``, ``${VAR}``, ``${VAR:-default}`` and ``${VAR:+alt}`` as BuildKit expands them
    in ``FROM``; None when a variable has no value and no default."""
    unknown = False

    def one(match: re.Match[str]) -> str:
        nonlocal unknown
        name = match.group(1) or match.group(4)
        operator, word = match.group(2), match.group(3) or ""
        value = values.get(name)
        if operator in (":-", "-"):
            if value is None or (operator == ":-" and value == ""):
                return word
            return value
        if operator in (":+", "+"):
            return word if value is not None and (operator == "+" or value != "") else ""
        if value is None:
            unknown = True
            return ""
        return value

    result = _VARIABLE.sub(one, text)
    return None if unknown else result


def needs(text: str, build_args: Mapping[str, str] | None = None, target: str | None = None) -> Needs:
    """What building ``text`` (up to ``target``, or the last stage) fetches from outside."""
    args = dict(build_args or {})
    lines = text.splitlines()
    directives = _directives(lines)
    frontend = args.get("BUILDKIT_SYNTAX") or directives.get("syntax") or None
    escape = directives.get("escape", "\\")[:1] or "\\"
    globals_: dict[str, str] = {}
    stages: list[_Stage] = []
    for instruction in _instructions(lines, escape):
        keyword, _, rest = instruction.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            for item in rest.split():
                name, sep, default = item.partition("=")
                value = args.get(name, default.strip("\"'") if sep else None)
                if value is not None:
                    globals_[name] = value
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            if not words:
                continue
            alias = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(_Stage(substitute(words[0], globals_), alias))
        elif stages and keyword in ("COPY", "ADD", "RUN"):
            stages[-1].uses.update(m.group(1) for m in _FROM_FLAG.finditer(rest) if keyword != "RUN")
            stages[-1].uses.update(m.group(1) for m in _MOUNT_FROM.finditer(rest) if keyword == "RUN")
    by_name = {stage.name: index for index, stage in enumerate(stages) if stage.name}

    def stage_index(reference: str, before: int) -> int | None:
        if reference.lower() in by_name and by_name[reference.lower()] < before:
            return by_name[reference.lower()]
        if reference.isdigit() and int(reference) < before:
            return int(reference)
        return None

    final = len(stages) - 1
    if target and target.lower() in by_name:
        final = by_name[target.lower()]
    images: list[str] = []
    todo, seen = [final] if stages else [], set()
    while todo:
        index = todo.pop()
        if index in seen:
            continue
        seen.add(index)
        stage = stages[index]
        for reference in [stage.base, *stage.uses]:
            if reference is None or "$" in reference:
                continue
            earlier = stage_index(reference, index)
            if earlier is not None:
                todo.append(earlier)
            elif reference.lower() != "scratch" and reference not in images:
                images.append(reference)  # FROM, or COPY --from, an image
    return Needs(frontend=frontend, images=images)
