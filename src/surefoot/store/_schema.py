"""The state store's schema: a version (``PRAGMA user_version``) and the migrations that
bring a store forward to it, one version at a time. Plain SQL text: ``state.py`` applies it.

To change the schema, add migration ``SCHEMA_VERSION + 1`` and raise ``SCHEMA_VERSION``;
never edit a migration that has shipped (stores out there already ran it).
"""

from __future__ import annotations

SCHEMA_VERSION = 3

# Migration N brings a store from version N-1 to version N.
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE deployments (
        id           INTEGER PRIMARY KEY,
        project      TEXT NOT NULL,
        kind         TEXT NOT NULL,          -- fresh | update
        state        TEXT NOT NULL,          -- running | completed | failed | interrupted
        started_at   TEXT NOT NULL,
        finished_at  TEXT,
        pid          INTEGER NOT NULL,
        host         TEXT NOT NULL,
        user         TEXT NOT NULL,
        error        TEXT
    );
    CREATE INDEX deployments_project ON deployments (project, id);
    CREATE TABLE phase_runs (
        id            INTEGER PRIMARY KEY,
        deployment_id INTEGER NOT NULL REFERENCES deployments (id),
        phase         TEXT NOT NULL,
        attempt       INTEGER NOT NULL,
        status        TEXT NOT NULL,         -- running | completed | skipped | failed | interrupted
        started_at    TEXT NOT NULL,
        finished_at   TEXT,
        exit_code     INTEGER,
        log_path      TEXT,
        error         TEXT,
        reason        TEXT,                  -- why it ran (first run, inputs changed, ...)
        fingerprint   TEXT                   -- JSON object of input hashes
    );
    CREATE INDEX phase_runs_deployment ON phase_runs (deployment_id, phase, id);
    CREATE TABLE events (
        id            INTEGER PRIMARY KEY,
        deployment_id INTEGER REFERENCES deployments (id),
        at            TEXT NOT NULL,
        kind          TEXT NOT NULL,
        phase         TEXT,
        message       TEXT NOT NULL
    );
    """,
    2: """
    CREATE TABLE releases (
        id             INTEGER PRIMARY KEY,  -- the deployment's id: release N is deployment #N
        project        TEXT NOT NULL,
        created_at     TEXT NOT NULL,
        outcome        TEXT NOT NULL,        -- pending | healthy | failed | rolled-back
        healthy_at     TEXT,
        images         TEXT NOT NULL,        -- JSON {service: image id}
        tags           TEXT NOT NULL,        -- JSON {service: the tag that pins the image}
        compose_digest TEXT NOT NULL,
        env_digest     TEXT NOT NULL,        -- a digest of the env file, never its content
        git_commit     TEXT,
        files_dir      TEXT NOT NULL,        -- copies of the compose files and env file
        backup_path    TEXT
    );
    CREATE TABLE rollbacks (
        id           INTEGER PRIMARY KEY,
        project      TEXT NOT NULL,
        started_at   TEXT NOT NULL,
        finished_at  TEXT,
        trigger      TEXT NOT NULL,          -- automatic | manual
        from_release INTEGER,
        to_release   INTEGER NOT NULL,
        outcome      TEXT NOT NULL,          -- running | restored | failed
        message      TEXT,
        user         TEXT NOT NULL,
        host         TEXT NOT NULL,
        log_path     TEXT
    );
    """,
    3: """
    -- JSON list: the files compose reads that the release could not keep, and why
    ALTER TABLE releases ADD COLUMN not_kept TEXT NOT NULL DEFAULT '[]'
    """,
}


def statements(version: int) -> list[str]:
    """The SQL statements of migration ``version`` (from ``version - 1``), in order."""
    return [statement for statement in MIGRATIONS[version].split(";") if statement.strip()]
