"""What ``status`` and ``history`` need to know of a project, without validating its
configuration: kept free of pydantic so that the read-only commands start fast."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from surefoot.base.errors import ConfigError

CONFIG_NAME = "surefoot.toml"
# The names docker compose itself looks for, in its order of preference.
COMPOSE_CANDIDATES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_CANDIDATES = (
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
)


def default_project_name(project_dir: Path) -> str:
    """Compose's own rule: lower case, only [a-z0-9_-], starting with a letter or digit."""
    name = re.sub(r"[^a-z0-9_-]", "", project_dir.resolve().name.lower())
    return name.lstrip("_-") or "default"


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def read_project_name(project_dir: Path, config_path: Path | None) -> str:
    """The project name from surefoot.toml, or the folder's. A configuration named with
    ``-c`` must exist (as for ``deploy``)."""
    path = config_path or project_dir / CONFIG_NAME
    if config_path is not None and not path.is_file():
        raise ConfigError(f"{path.absolute()}: configuration file not found (given with -c)")
    if path.is_file():
        project = read_toml(path).get("project", {})
        name = project.get("name") if isinstance(project, dict) else None
        if isinstance(name, str) and name:
            return name
    return default_project_name(project_dir)


def read_targets(project_dir: Path, config_path: Path | None) -> dict[str, Any]:
    """The ``[targets.NAME]`` tables as written (unvalidated: for the fast commands)."""
    path = config_path or project_dir / CONFIG_NAME
    targets = read_toml(path).get("targets", {}) if path.is_file() else {}
    return {str(k): v for k, v in targets.items() if isinstance(v, dict)} if isinstance(targets, dict) else {}


def configured_optional_phases(project_dir: Path, config_path: Path | None) -> tuple[str, ...]:
    """The phases after cleanup that this configuration runs (as the pipeline decides it:
    verify when it lists urls, post-deploy when it has urls, credentials or commands),
    read without validating; a file that cannot be read names none."""
    path = config_path or project_dir / CONFIG_NAME
    try:
        phases = read_toml(path).get("phases", {}) if path.is_file() else {}
    except ConfigError:
        return ()
    if not isinstance(phases, dict):
        return ()
    found = []
    verify = phases.get("verify")
    if isinstance(verify, dict) and verify.get("urls"):
        found.append("verify")
    post = phases.get("post-deploy")
    if isinstance(post, dict) and any(post.get(key) for key in ("urls", "credentials", "commands")):
        found.append("post-deploy")
    return tuple(found)


def discover_compose_files(project_dir: Path) -> list[Path]:
    for candidate in COMPOSE_CANDIDATES:
        if (project_dir / candidate).is_file():
            files = [project_dir / candidate]
            for override in OVERRIDE_CANDIDATES:
                if (project_dir / override).is_file():
                    files.append(project_dir / override)
                    break
            return files
    return []


def guess_compose_project(
    project_dir: Path, config_path: Path | None
) -> tuple[str, tuple[Path, ...], Path | None] | None:
    """The project name, compose files and env file that the validated settings will most
    likely give, read quickly without validating anything; None when unsure. Only for
    asking Docker ahead (see :mod:`surefoot.engines.compose.ahead`), which checks the guess before use."""
    try:
        project_dir = project_dir.resolve()
        path = config_path or project_dir / CONFIG_NAME
        project = read_toml(path).get("project", {}) if path.is_file() else {}
    except (ConfigError, OSError):
        return None
    if not isinstance(project, dict):
        return None
    name, files, env = project.get("name"), project.get("compose_files"), project.get("env_file")
    if not isinstance(name, str | None) or not isinstance(env, str | None):
        return None
    if files is None:
        compose_files = discover_compose_files(project_dir)
    elif isinstance(files, list) and all(isinstance(f, str) for f in files):
        compose_files = [project_dir / f for f in files]
    else:
        return None
    return (name or default_project_name(project_dir), tuple(f.resolve() for f in compose_files),
            (project_dir / env).resolve() if env else None)
