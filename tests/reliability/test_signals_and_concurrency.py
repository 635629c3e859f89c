"""SIGINT and SIGTERM in every phase; ten deploys at once."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from conftest import Project, kill_and_wait, migrate_command

pytestmark = [pytest.mark.docker, pytest.mark.reliability]

PHASES = ["preflight", "prerequisites", "configuration", "pull-images", "build", "database-start",
          "database-migrate", "services-start", "health-wait", "cleanup"]


def marked_processes(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout.splitlines()
    return [line for line in found if "pgrep" not in line]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", PHASES)
def test_a_signal_in_any_phase(stack: Project, phase: str, sig: int) -> None:
    marker = f"surefoot-hold-{stack.name}"
    stack.configure(migrate_command("true"),
                    f'\n[hooks.{phase}]\nbefore = [["sh", "-c", "sleep 120; : {marker}"]]\n')
    if phase == "pull-images":  # the stack's config switches it off; it must run to be signalled
        stack.write("surefoot.toml", (stack.path / "surefoot.toml").read_text().replace(
            "[phases.pull-images]\nenabled = false", "[phases.pull-images]\nenabled = true"))
    deploy = stack.start("deploy")
    stack.wait_for_phase(phase)
    deadline = time.monotonic() + 30
    while not marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marked_processes(marker), "the hook never started"
    code = kill_and_wait(deploy, sig)
    output = deploy.stdout.read() if deploy.stdout else ""
    assert code == 130, output
    status = stack.status()
    assert status["state"] == "interrupted"
    assert status["lock"] is None
    assert status["resume_at"] == phase
    assert stack.phase(phase)["status"] == "interrupted"
    time.sleep(0.2)
    assert marked_processes(marker) == []  # the whole process group was stopped
    assert stack.containers("label=io.surefoot.oneoff") == []


def test_ten_deploys_at_once(stack: Project) -> None:
    stack.configure(migrate_command("sleep 3"))
    deploys = [stack.start("deploy") for _ in range(10)]
    results = [(process.pid, process.wait(timeout=300), process.stdout.read() if process.stdout else "")
               for process in deploys]
    winners = [pid for pid, code, _ in results if code == 0]
    assert len(winners) == 1, [(pid, code) for pid, code, _ in results]
    losers = [(code, output) for pid, code, output in results if pid not in winners]
    assert all(code == 3 for code, _ in losers), losers
    assert all(f"another deployment of this project is running: pid {winners[0]}" in output
               for _, output in losers), losers
    status = stack.status()
    assert status["state"] == "completed" and status["deployment"]["id"] == 1


def test_status_answers_while_a_deployment_holds_the_lock(stack: Project) -> None:
    stack.configure(migrate_command("sleep 8"))
    deploy = stack.start("deploy")
    try:
        stack.wait_for_phase("database-migrate")
        for _ in range(5):
            result = stack.run("status", "--json", timeout=30)
            assert result.returncode == 0
            assert json.loads(result.stdout)["lock"]["pid"] == deploy.pid
            assert deploy.poll() is None  # status returned while the deployment still ran
    finally:
        assert deploy.wait(timeout=120) == 0
