"""The rows the state store hands out: frozen dataclasses, one per table.

Each class has a docstring: without one, ``dataclass`` builds ``__doc__`` from the
signature (``inspect.signature``), which costs ``surefoot status`` a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Deployment:
    """A row of ``deployments``: one ``surefoot deploy``, resumed or not."""

    id: int
    project: str
    kind: str
    state: str
    started_at: str
    finished_at: str | None
    pid: int
    host: str
    user: str
    error: str | None


@dataclass(frozen=True)
class PhaseRun:
    """A row of ``phase_runs``: one attempt at one phase (``fingerprint``: its inputs' hashes)."""

    id: int
    deployment_id: int
    phase: str
    attempt: int
    status: str
    started_at: str
    finished_at: str | None
    exit_code: int | None
    log_path: str | None
    error: str | None
    reason: str | None
    fingerprint: dict[str, str] | None


@dataclass(frozen=True)
class Release:
    """A row of ``releases``: release N is deployment #N; its images, tags and kept files."""

    id: int
    project: str
    created_at: str
    outcome: str
    healthy_at: str | None
    images: dict[str, str | None]
    tags: dict[str, str]
    compose_digest: str
    env_digest: str
    git_commit: str | None
    files_dir: str
    backup_path: str | None
    not_kept: tuple[str, ...] = ()  # files compose reads that the release could not keep, and why


@dataclass(frozen=True)
class Rollback:
    """A row of ``rollbacks``: one restore of an earlier release, automatic or manual."""

    id: int
    project: str
    started_at: str
    finished_at: str | None
    trigger: str
    from_release: int | None
    to_release: int
    outcome: str
    message: str | None
    user: str
    host: str
    log_path: str | None
