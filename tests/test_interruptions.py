"""Kill -9, SIGINT/SIGTERM and concurrent deploys, on the real engine."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from conftest import Project, kill_and_wait, migrate_command

pytestmark = pytest.mark.docker

SLOW_MIGRATION = migrate_command("echo migration started; exec sleep 300")


def wait_for_oneoff(project: Project, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = project.containers("label=io.surefoot.oneoff", "status=running")
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("the migration's one-off container never started")


def processes_mentioning(text: str) -> list[str]:
    result = subprocess.run(["pgrep", "-af", text], capture_output=True, text=True)
    return [line for line in result.stdout.splitlines() if "pgrep" not in line]


def test_kill_9_during_a_phase_then_resume(stack: Project) -> None:
    stack.configure(SLOW_MIGRATION)
    deploy = stack.start("deploy")
    stack.wait_for_phase("database-migrate")
    wait_for_oneoff(stack)
    kill_and_wait(deploy, signal.SIGKILL)

    status = stack.status()
    assert status["state"] == "interrupted"
    assert status["resume_at"] == "database-migrate"
    assert status["lock"] is None  # the kernel dropped the dead holder's lock
    assert stack.phase("database-migrate")["status"] == "interrupted"
    earlier = {p["name"]: p["started_at"] for p in status["phases"][:6]}

    stack.configure(migrate_command("echo quick"))
    resumed = stack.run("deploy")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming after it was interrupted" in resumed.stdout
    after = stack.status()
    assert after["state"] == "completed"
    assert {p["name"]: p["started_at"] for p in after["phases"][:6]} == earlier
    assert stack.containers("label=io.surefoot.oneoff") == []  # the orphan was removed


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_migration_stops_everything(stack: Project, sig: int) -> None:
    stack.configure(SLOW_MIGRATION)
    deploy = stack.start("deploy")
    stack.wait_for_phase("database-migrate")
    wait_for_oneoff(stack)
    code = kill_and_wait(deploy, sig)
    output = deploy.stdout.read() if deploy.stdout else ""
    assert code == 130, output
    assert "interrupted; resume with: " in output

    status = stack.status()
    assert status["state"] == "interrupted"
    assert status["lock"] is None
    migrate = stack.phase("database-migrate")
    assert migrate["status"] == "interrupted"
    assert migrate["error"] == f"interrupted by signal {sig}"
    assert stack.containers("label=io.surefoot.oneoff") == []
    assert processes_mentioning(stack.name) == []


def test_second_deploy_is_refused_and_names_the_holder(stack: Project) -> None:
    stack.configure(SLOW_MIGRATION)
    first = stack.start("deploy")
    try:
        stack.wait_for_phase("database-migrate")
        started = time.monotonic()
        status = stack.status()  # never waits for the lock
        assert time.monotonic() - started < 20
        assert status["state"] == "running"
        assert status["lock"]["pid"] == first.pid
        second = stack.run("deploy")
        assert second.returncode == 3
        assert re.search(rf"another deployment of this project is running: pid {first.pid} on ", second.stderr)
        assert "Traceback" not in second.stderr
    finally:
        kill_and_wait(first, signal.SIGTERM)
    assert first.returncode == 130


def test_status_shows_a_dead_holders_run_as_interrupted(stack: Project) -> None:
    stack.configure(SLOW_MIGRATION)
    deploy = stack.start("deploy")
    stack.wait_for_phase("database-migrate")
    os.kill(deploy.pid, signal.SIGKILL)
    deploy.wait()
    text = stack.run("status").stdout
    assert f"{stack.name}: interrupted" in text
    assert re.search(r"> database-migrate\s+interrupted", text)
    assert "`surefoot deploy` resumes at database-migrate." in text
