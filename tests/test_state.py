"""The state store and the lock, without Docker."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from surefoot.base.errors import StateError
from surefoot.cli.reports.status import collect_status
from surefoot.store import StateStore
from surefoot.store._schema import SCHEMA_VERSION
from surefoot.store.lock import ProjectLock, current_holder


def test_phase_runs_are_recorded_and_counted(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state.db") as store:
        dep = store.create_deployment("shop", "fresh", 1, "host", "me")
        first = store.start_phase(dep, "build", "/log", "first run")
        store.finish_phase(first.id, "failed", exit_code=2, error="boom")
        second = store.start_phase(dep, "build", "/log", "resuming after it was failed")
        store.finish_phase(second.id, "completed", fingerprint={"compose": "abc"})
        assert second.attempt == 2
        latest = store.latest_runs(dep)["build"]
        assert latest.status == "completed"
        assert latest.fingerprint == {"compose": "abc"}
        store.set_deployment_state(dep, "completed")
    # History survives reopening, and --fresh-style new deployments add to it.
    with StateStore.open(tmp_path / "state.db") as store:
        store.create_deployment("shop", "fresh", 1, "host", "me")
        assert [d.id for d in store.deployments("shop")] == [2, 1]


def test_status_of_an_interrupted_run_without_holder(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state.db") as store:
        dep = store.create_deployment("shop", "fresh", 99999, "host", "me")
        run = store.start_phase(dep, "preflight", None, "first run")
        store.finish_phase(run.id, "completed", fingerprint={})
        store.start_phase(dep, "prerequisites", None, "first run")
    status = collect_status(tmp_path, "shop")
    assert status["state"] == "interrupted"
    assert status["resume_at"] == "prerequisites"
    assert [p["status"] for p in status["phases"][:3]] == ["completed", "interrupted", "pending"]


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StateError, match="newer surefoot"):
        StateStore.open(path)


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"SQLite format 3\x00" + b"\xff" * 200])
def test_a_damaged_store_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(content)
    try:
        with StateStore.open(path) as store:
            # An empty file is a valid, empty database: it is simply initialised.
            assert store.latest_deployment("shop") is None
    except StateError as exc:
        assert str(path) in str(exc)


def test_the_lock_names_its_holder_and_status_does_not_take_it(tmp_path: Path) -> None:
    assert current_holder(tmp_path) is None
    with ProjectLock(tmp_path):
        holder = current_holder(tmp_path)
        assert holder is not None
        assert holder.pid is not None
        # A second process cannot take it, and learns who holds it.
        code = (
            "import sys; from pathlib import Path; from surefoot.store.lock import ProjectLock\n"
            "from surefoot.base.errors import LockHeld\n"
            f"try:\n    ProjectLock(Path({str(tmp_path)!r})).acquire()\n"
            "except LockHeld as e:\n    print(e.pid); sys.exit(3)\n"
        )
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert other.returncode == 3
        assert int(other.stdout) == holder.pid
    assert current_holder(tmp_path) is None
