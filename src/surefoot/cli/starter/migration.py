"""The migration command ``surefoot init`` proposes for an application service, from what
its build context holds: a framework's marker (``manage.py``, ``alembic.ini``, ...) or a
migrate script its Dockerfile copies into the image (and where it lands there).

``context_files`` and ``build_contexts`` read the build contexts from disk; the rest are
pure functions of file names and the Dockerfile's text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Markers of a framework's migration command in a build context: the file, the command
# (run from the image's WORKDIR), and the framework.
MIGRATION_MARKERS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("manage.py", ("python", "manage.py", "migrate", "--noinput"), "Django"),
    ("alembic.ini", ("alembic", "upgrade", "head"), "Alembic"),
    ("bin/rails", ("bin/rails", "db:migrate"), "Rails"),
    ("artisan", ("php", "artisan", "migrate", "--force"), "Laravel"),
    ("prisma/schema.prisma", ("npx", "prisma", "migrate", "deploy"), "Prisma"),
)
MIGRATION_SCRIPTS = ("migrate.py", "migrate.sh", "migrate.js")
_INSTRUCTION = re.compile(r"^\s*(COPY|ADD|WORKDIR|ENTRYPOINT|CMD)\s+(.*)$", re.IGNORECASE)


def _dockerfile_lines(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the lines this module reads, continuations joined."""
    joined = re.sub(r"\\\s*\n", " ", text)
    found = []
    for line in joined.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            found.append((match.group(1).upper(), match.group(2).strip()))
    return found


def _words(arguments: str) -> list[str]:
    if arguments.startswith("["):
        try:
            value = json.loads(arguments)
        except ValueError:
            return []
        return [str(word) for word in value] if isinstance(value, list) else []
    return [word for word in arguments.split() if not word.startswith("--")]


def image_path(dockerfile: str, relative: str) -> str | None:
    """Where a file of the build context lands in the image (simple COPY/ADD forms), or None."""
    workdir = "/"
    found = None
    for instruction, arguments in _dockerfile_lines(dockerfile):
        if instruction == "WORKDIR":
            target = arguments.strip("\"'")
            workdir = target if target.startswith("/") else workdir.rstrip("/") + "/" + target
            continue
        if instruction not in ("COPY", "ADD") or "--from" in arguments:
            continue
        words = _words(arguments)
        if len(words) < 2:
            continue
        *sources, dest = words
        if not dest.startswith("/"):
            dest = workdir.rstrip("/") + "/" + ("" if dest in (".", "./") else dest.removeprefix("./"))
        for source in sources:
            source = source.removeprefix("./").rstrip("/")
            if source in ("", "."):
                found = dest.rstrip("/") + "/" + relative
            elif relative == source:
                found = dest + relative.rsplit("/", 1)[-1] if dest.endswith("/") or len(sources) > 1 else dest
            elif relative.startswith(source + "/"):
                found = dest.rstrip("/") + "/" + relative[len(source) + 1:]
    return found


@dataclass(frozen=True)
class MigrationProposal:
    service: str
    command: tuple[str, ...]
    why: str


def propose_migration(service: str, context_files: Iterable[str], dockerfile: str) -> MigrationProposal | None:
    """A migration command for an application service, from what its build context holds:
    a framework's marker (manage.py, alembic.ini, ...) or a migrate script the Dockerfile
    copies into the image. None when unsure, or when the image has an ENTRYPOINT (the
    command would become its arguments)."""
    lines = _dockerfile_lines(dockerfile)
    if any(instruction == "ENTRYPOINT" for instruction, _ in lines):
        return None
    files = set(context_files)
    for marker, command, framework in MIGRATION_MARKERS:
        if marker in files:
            return MigrationProposal(service, command, f"{framework}: {marker} in {service}'s build context")
    cmd = next((_words(arguments) for instruction, arguments in reversed(lines) if instruction == "CMD"), [])
    python = next((word for word in cmd if re.fullmatch(r"(/\S*/)?python[0-9.]*", word)), "python3")
    for relative in sorted(files, key=lambda f: (f.count("/"), f)):
        name = relative.rsplit("/", 1)[-1]
        if name not in MIGRATION_SCRIPTS:
            continue
        inside = image_path(dockerfile, relative)
        if inside is None:
            continue
        runner = {"migrate.py": python, "migrate.sh": "sh", "migrate.js": "node"}[name]
        return MigrationProposal(service, (runner, inside), f"{relative} in {service}'s build context, "
                                                            f"copied to {inside}")
    return None


def context_files(folder: Path, depth: int = 3, limit: int = 5000) -> list[str]:
    """The files of a build context (relative, '/'-separated), a few levels deep, skipping
    hidden folders and dependency folders."""
    found: list[str] = []
    skip = {"node_modules", "vendor", "__pycache__", "venv"}

    def walk(path: Path, prefix: str, level: int) -> None:
        try:
            entries = sorted(path.iterdir())
        except OSError:
            return
        for entry in entries:
            if len(found) >= limit:
                return
            name = prefix + entry.name
            if entry.is_dir() and not entry.is_symlink():
                if level < depth and not entry.name.startswith(".") and entry.name not in skip:
                    walk(entry, name + "/", level + 1)
            elif entry.is_file():
                found.append(name)

    walk(folder, "", 1)
    return found


def build_contexts(services: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[list[str], str]]:
    """For each service built from a local folder: its files and its Dockerfile's text."""
    result = {}
    for name, service in services.items():
        build = service.get("build")
        if not isinstance(build, Mapping) or not build.get("context"):
            continue
        folder = Path(str(build["context"]))
        dockerfile = folder / str(build.get("dockerfile") or "Dockerfile")
        if not folder.is_dir():
            continue
        try:
            text = dockerfile.read_text() if not build.get("dockerfile_inline") else str(build["dockerfile_inline"])
        except (OSError, UnicodeDecodeError):
            continue
        result[name] = (context_files(folder), text)
    return result
