"""The rows the state store hands out: named tuples, one per table (``dataclasses`` would load
``inspect``, a few milliseconds of every ``surefoot status``)."""

from __future__ import annotations

from typing import NamedTuple


class Deployment(NamedTuple):
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


class PhaseRun(NamedTuple):
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


class Release(NamedTuple):
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


class Rollback(NamedTuple):
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
