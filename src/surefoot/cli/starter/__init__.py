"""``surefoot init``: a commented ``surefoot.toml`` inferred from a project's compose files.

``detect.py`` reads the compose model (compose files, env file, databases, health
probe) and ``migration.py`` the build contexts (the migration command) into an
:class:`Inference` (pure functions, unit-tested without Docker); ``write.py``
renders it, and the ignore-file lines. The CLI (``surefoot init``) reads the files,
asks the operator and writes the result; it imports this module, which re-exports the
three. Import-light (no pydantic, no rich).
"""

from __future__ import annotations

from dataclasses import replace

from surefoot.cli.starter.detect import (
    DATABASE_WORDS,
    DEFAULT_HEALTH_PATH,
    ENV_FILES,
    HTTP_PORTS,
    HTTPS_PORTS,
    PRODUCTION_OVERRIDES,
    HealthProposal,
    Inference,
    Published,
    choose_compose_files,
    choose_env_file,
    database_kind,
    healthcheck_url,
    infer,
    interpolate,
    propose_health,
    published_ports,
)
from surefoot.cli.starter.migration import (
    MIGRATION_MARKERS,
    MIGRATION_SCRIPTS,
    MigrationProposal,
    build_contexts,
    context_files,
    image_path,
    propose_migration,
)
from surefoot.cli.starter.write import dockerignores_with_state, gitignore_with_state, render

__all__ = [
    "DATABASE_WORDS", "DEFAULT_HEALTH_PATH", "ENV_FILES", "HTTPS_PORTS", "HTTP_PORTS", "MIGRATION_MARKERS",
    "MIGRATION_SCRIPTS", "PRODUCTION_OVERRIDES", "HealthProposal", "Inference", "MigrationProposal",
    "Published", "build_contexts", "choose_compose_files", "choose_env_file", "context_files",
    "database_kind", "dockerignores_with_state", "gitignore_with_state", "healthcheck_url", "image_path",
    "infer", "interpolate", "propose_health", "propose_migration", "published_ports", "render", "replace",
]
