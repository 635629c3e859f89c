"""The SQLite state store: deployments, phase runs, releases, rollbacks and events.

The runner is the only writer. Every write is one short transaction, so a kill -9
at any instant leaves either the old or the new row, never half of one. The schema
carries a version (``PRAGMA user_version``) and is brought forward by the
migrations in ``_schema.py``; a store from a newer surefoot is refused, not
guessed at. The rows it hands out are in ``_rows.py`` (both re-exported here).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from surefoot.base.errors import StateError
from surefoot.store._rows import Deployment as Deployment
from surefoot.store._rows import PhaseRun as PhaseRun
from surefoot.store._rows import Release as Release
from surefoot.store._rows import Rollback as Rollback
from surefoot.store._schema import SCHEMA_VERSION as SCHEMA_VERSION
from surefoot.store._schema import statements

UNFINISHED = ("running", "failed", "interrupted")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def private_folder(path: Path) -> Path:
    """``path`` made (with its missing parents) and kept for this user alone (0700): the state
    folder holds the env file's release copies, the logs and the backups."""
    missing = []
    folder = path
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        made.mkdir(mode=0o700, exist_ok=True)
    _owner_only(path, 0o700)
    return path


def _owner_only(path: Path, mode: int = 0o600) -> None:
    """Tighten ``path`` to ``mode`` where it is ours (a folder shared on purpose is left alone)."""
    with contextlib.suppress(OSError):
        if path.stat().st_uid == os.getuid():
            os.chmod(path, mode)


class StateStore:
    """A handle on ``state.db``. Open with :meth:`open`; use as a context manager."""

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self._conn = conn
        # Phases running side by side record from their own threads: one statement at a time.
        self._lock = threading.RLock()

    # -- opening --------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> StateStore:
        if not create and not path.exists():
            raise FileNotFoundError(path)
        try:
            if create:
                private_folder(path.parent)
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
                _owner_only(path)
            conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"{path}: cannot open the state store: {_reason(exc)}") from None
        store = cls(path, conn)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            for companion in ("-wal", "-shm"):
                _owner_only(path.with_name(path.name + companion))
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            store._migrate()
        except sqlite3.Error as exc:
            conn.close()
            raise StateError(
                f"{path}: the state store is damaged or unreadable ({_reason(exc)}); "
                "move it aside to start a new history"
            ) from None
        return store

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path}: written by a newer surefoot (schema {version}, "
                f"this one knows {SCHEMA_VERSION}); upgrade surefoot"
            )
        if version == SCHEMA_VERSION:
            return
        with self._transaction():
            # Re-read inside the write lock: another process may have migrated meanwhile.
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in statements(target):
                    self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {target}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StateError(f"{self.path}: cannot write the state store: {_reason(exc)}") from None

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        try:
            with self._lock:
                cursor = self._conn.execute(sql, params)
                cursor.row_factory = sqlite3.Row
                return cursor.fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: cannot read the state store: {_reason(exc)}") from None

    # -- deployments ------------------------------------------------------------
    def create_deployment(self, project: str, kind: str, pid: int, host: str, user: str) -> int:
        with self._transaction():
            cursor = self._conn.execute(
                "INSERT INTO deployments (project, kind, state, started_at, pid, host, user)"
                " VALUES (?, ?, 'running', ?, ?, ?, ?)",
                (project, kind, now_iso(), pid, host, user),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def set_deployment_state(self, deployment_id: int, state: str, error: str | None = None) -> None:
        finished = None if state == "running" else now_iso()
        with self._transaction():
            self._conn.execute(
                "UPDATE deployments SET state = ?, finished_at = ?, error = ? WHERE id = ?",
                (state, finished, error, deployment_id),
            )

    def claim_deployment(self, deployment_id: int, pid: int, host: str) -> None:
        """A resumed deployment is running again, now under this process."""
        with self._transaction():
            self._conn.execute(
                "UPDATE deployments SET state = 'running', finished_at = NULL, error = NULL,"
                " pid = ?, host = ? WHERE id = ?",
                (pid, host, deployment_id),
            )

    def latest_deployment(self, project: str) -> Deployment | None:
        rows = self._query(
            "SELECT * FROM deployments WHERE project = ? ORDER BY id DESC LIMIT 1", (project,)
        )
        return Deployment(**dict(rows[0])) if rows else None

    def deployments(self, project: str) -> list[Deployment]:
        rows = self._query("SELECT * FROM deployments WHERE project = ? ORDER BY id DESC", (project,))
        return [Deployment(**dict(row)) for row in rows]

    def mark_abandoned(self, deployment: Deployment) -> None:
        """A holder died (kill -9, power loss): its running phase and deployment were interrupted."""
        with self._transaction():
            self._conn.execute(
                "UPDATE phase_runs SET status = 'interrupted', finished_at = ?,"
                " error = 'the deploying process died' WHERE deployment_id = ? AND status = 'running'",
                (now_iso(), deployment.id),
            )
            self._conn.execute(
                "UPDATE deployments SET state = 'interrupted', finished_at = ? WHERE id = ?",
                (now_iso(), deployment.id),
            )

    # -- phase runs -------------------------------------------------------------
    def start_phase(
        self, deployment_id: int, phase: str, log_path: str | None, reason: str
    ) -> PhaseRun:
        with self._transaction():
            attempt = self._conn.execute(
                "SELECT COUNT(*) FROM phase_runs WHERE deployment_id = ? AND phase = ?",
                (deployment_id, phase),
            ).fetchone()[0] + 1
            started = now_iso()
            cursor = self._conn.execute(
                "INSERT INTO phase_runs (deployment_id, phase, attempt, status, started_at,"
                " log_path, reason) VALUES (?, ?, ?, 'running', ?, ?, ?)",
                (deployment_id, phase, attempt, started, log_path, reason),
            )
            assert cursor.lastrowid is not None
        return PhaseRun(
            cursor.lastrowid, deployment_id, phase, attempt, "running", started,
            None, None, log_path, None, reason, None,
        )

    def finish_phase(
        self,
        run_id: int,
        status: str,
        *,
        fingerprint: dict[str, str] | None = None,
        exit_code: int | None = None,
        error: str | None = None,
    ) -> None:
        with self._transaction():
            self._conn.execute(
                "UPDATE phase_runs SET status = ?, finished_at = ?, fingerprint = ?,"
                " exit_code = ?, error = ? WHERE id = ?",
                (
                    status,
                    now_iso(),
                    json.dumps(fingerprint, sort_keys=True) if fingerprint is not None else None,
                    exit_code,
                    error,
                    run_id,
                ),
            )

    def phase_runs(self, deployment_id: int) -> list[PhaseRun]:
        rows = self._query(
            "SELECT * FROM phase_runs WHERE deployment_id = ? ORDER BY id", (deployment_id,)
        )
        runs = []
        for row in rows:
            data = dict(row)
            data["fingerprint"] = json.loads(data["fingerprint"]) if data["fingerprint"] else None
            runs.append(PhaseRun(**data))
        return runs

    def latest_runs(self, deployment_id: int) -> dict[str, PhaseRun]:
        """The newest run of each phase of a deployment."""
        return {run.phase: run for run in self.phase_runs(deployment_id)}

    # -- releases and rollbacks -------------------------------------------------
    def save_release(self, release: Release) -> None:
        """Record (or, on a resumed deployment, re-record) a release as pending."""
        with self._transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO releases (id, project, created_at, outcome, healthy_at, images,"
                " tags, compose_digest, env_digest, git_commit, files_dir, backup_path, not_kept)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (release.id, release.project, release.created_at, release.outcome, release.healthy_at,
                 json.dumps(release.images, sort_keys=True), json.dumps(release.tags, sort_keys=True),
                 release.compose_digest, release.env_digest, release.git_commit, release.files_dir,
                 release.backup_path, json.dumps(list(release.not_kept))),
            )

    def set_release_outcome(self, release_id: int, outcome: str) -> None:
        with self._transaction():
            self._conn.execute(
                "UPDATE releases SET outcome = ?, healthy_at = CASE WHEN ? = 'healthy' THEN ?"
                " ELSE healthy_at END WHERE id = ?",
                (outcome, outcome, now_iso(), release_id),
            )

    def releases(self, project: str) -> list[Release]:
        """Every release of a project, newest first."""
        rows = self._query("SELECT * FROM releases WHERE project = ? ORDER BY id DESC", (project,))
        result = []
        for row in rows:
            data = dict(row)
            data["images"] = json.loads(data["images"])
            data["tags"] = json.loads(data["tags"])
            data["not_kept"] = tuple(json.loads(data["not_kept"] or "[]"))
            result.append(Release(**data))
        return result

    def release(self, project: str, release_id: int) -> Release | None:
        return next((r for r in self.releases(project) if r.id == release_id), None)

    def start_rollback(
        self, project: str, trigger: str, from_release: int | None, to_release: int,
        user: str, host: str, log_path: str | None,
    ) -> int:
        with self._transaction():
            cursor = self._conn.execute(
                "INSERT INTO rollbacks (project, started_at, trigger, from_release, to_release, outcome,"
                " user, host, log_path) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (project, now_iso(), trigger, from_release, to_release, user, host, log_path),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def finish_rollback(self, rollback_id: int, outcome: str, message: str) -> None:
        with self._transaction():
            self._conn.execute(
                "UPDATE rollbacks SET outcome = ?, message = ?, finished_at = ? WHERE id = ?",
                (outcome, message, now_iso(), rollback_id),
            )

    def rollbacks(self, project: str) -> list[Rollback]:
        rows = self._query("SELECT * FROM rollbacks WHERE project = ? ORDER BY id DESC", (project,))
        return [Rollback(**dict(row)) for row in rows]

    def current_release(self, project: str) -> int | None:
        """The release running now: the latest to turn healthy or to be restored by a rollback."""
        rows = self._query(
            "SELECT id, healthy_at AS at FROM releases WHERE project = ? AND healthy_at IS NOT NULL"
            " UNION ALL SELECT to_release, finished_at FROM rollbacks WHERE project = ?"
            " AND outcome = 'restored' ORDER BY at DESC LIMIT 1",
            (project, project),
        )
        return int(rows[0]["id"]) if rows else None

    # -- events -----------------------------------------------------------------
    def add_event(
        self, deployment_id: int | None, kind: str, message: str, phase: str | None = None
    ) -> None:
        with self._transaction():
            self._conn.execute(
                "INSERT INTO events (deployment_id, at, kind, phase, message) VALUES (?, ?, ?, ?, ?)",
                (deployment_id, now_iso(), kind, phase, message),
            )

    def event_messages(self, deployment_id: int, kind: str) -> list[str]:
        """The messages of one kind of event of a deployment, oldest first, each once."""
        rows = self._query(
            "SELECT message FROM events WHERE deployment_id = ? AND kind = ? ORDER BY id", (deployment_id, kind)
        )
        return list(dict.fromkeys(str(row["message"]) for row in rows))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
