"""What ``status`` and ``history`` need to know of a project, without validating its
configuration: kept free of pydantic so that the read-only commands start fast."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from surefoot.errors import ConfigError

CONFIG_NAME = "surefoot.toml"


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
    """The project name from surefoot.toml, or the folder's."""
    path = config_path or project_dir / CONFIG_NAME
    if path.is_file():
        project = read_toml(path).get("project", {})
        name = project.get("name") if isinstance(project, dict) else None
        if isinstance(name, str) and name:
            return name
    return default_project_name(project_dir)
