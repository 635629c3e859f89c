"""Crash anywhere: kill -9 of `surefoot deploy` at 50 pseudo-random instants, spread over
every phase; after each, `deploy` completes, every phase recorded completed had really
done its work, and none of them runs again.

The instants come from fixed seeds: seed N aims at phase N mod 10 and waits a random
0-600 ms into it (each phase first runs a 300 ms hook, so kills land both in hooks and
in the phases' own work). The tally is written to tests/reliability/results/crash.json.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import Project, Projects

pytestmark = [pytest.mark.docker, pytest.mark.reliability]

KILLS = int(os.environ.get("SUREFOOT_CRASH_KILLS", "50"))
PHASES = ["preflight", "prerequisites", "configuration", "pull-images", "build", "database-start",
          "database-migrate", "services-start", "health-wait", "cleanup"]
RESULTS = Path(__file__).parent / "results"

COMPOSE = """
services:
  db:
    image: {image}
    stop_signal: SIGKILL
    command: ["sh", "-c", "sleep 0.5; touch /tmp/ready; exec sleep 3600"]
    volumes: ["data:/data"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 0.5s
  web:
    build: ./web
    stop_signal: SIGKILL
    ports: ["127.0.0.1:{port}:8000"]
volumes:
  data:
"""

WEB = """FROM {image}
RUN mkdir -p /www && echo '{{"status":"healthy"}}' > /www/health
CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]
"""

HOLD = "\n".join(f'[hooks.{phase}]\nbefore = [["sleep", "0.3"]]' for phase in PHASES)

CONFIG = """
[project]
name = "{name}"

[phases.database-start]
services = ["db"]

[phases.database-migrate]
service = "db"
command = ["sh", "-c", "sleep 0.3; echo migrated >> /data/migrations"]

[phases.health-wait]
url = "http://127.0.0.1:{port}/health"
consecutive = 2
interval = "0.3s"
timeout = "30s"

{hold}
"""


@pytest.fixture
def crashable(projects: Projects) -> Project:
    return projects.new({"compose.yaml": COMPOSE, "web/Dockerfile": WEB, "surefoot.toml": CONFIG}, hold=HOLD)


def side_effects_hold(project: Project, phase: str, migrations_before: int) -> str | None:
    """None when the work of a phase recorded completed is really there."""
    if phase == "build":
        project.docker("image", "inspect", f"{project.name}-web")
    elif phase == "database-start":
        state = project.docker("inspect", "--format", "{{.State.Health.Status}}", f"{project.name}-db-1").strip()
        if state != "healthy":
            return f"db is {state}"
    elif phase == "database-migrate":
        lines = project.compose("exec", "-T", "db", "sh", "-c", "cat /data/migrations 2>/dev/null || true")
        if len(lines.splitlines()) <= migrations_before:
            return "no new migration was recorded"
    elif phase == "services-start":
        if project.docker("inspect", "--format", "{{.State.Status}}", f"{project.name}-web-1").strip() != "running":
            return "web is not running"
    elif phase == "health-wait":
        with urllib.request.urlopen(f"http://127.0.0.1:{project.port}/health", timeout=5) as response:
            if response.status != 200:
                return f"web answers {response.status}"
    return None


def migrations(project: Project) -> int:
    if not project.containers("label=com.docker.compose.service=db", "status=running"):
        return 0
    text = project.compose("exec", "-T", "db", "sh", "-c", "cat /data/migrations 2>/dev/null || true")
    return len(text.splitlines())


def reached(project: Project, previous: int, phase: str, timeout: float = 120) -> None:
    """Wait until the new deployment (past ``previous``) has started ``phase``. A short phase may
    be over between two looks (status is a process of its own): started or done both count."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = project.status()
        if (status["deployment"] or {}).get("id", 0) > previous:
            if next(p for p in status["phases"] if p["name"] == phase)["status"] != "pending":
                return
            if status["state"] != "running":
                return  # it ended (failed or completed) before the phase: the kill lands after
        time.sleep(0.1)
    raise AssertionError(f"phase {phase} never started: {project.status()}")


def test_kill_9_anywhere_then_resume(crashable: Project) -> None:
    first = crashable.run("deploy")
    assert first.returncode == 0, first.stdout + first.stderr
    tally: list[dict[str, Any]] = []
    for seed in range(KILLS):
        rng = random.Random(seed)
        target = PHASES[seed % len(PHASES)]
        delay = rng.uniform(0.0, 0.6)
        before = migrations(crashable)
        previous = crashable.status()["deployment"]["id"]
        deploy = crashable.start("deploy")
        reached(crashable, previous, target)
        time.sleep(delay)
        deploy.send_signal(signal.SIGKILL)
        deploy.wait(timeout=60)

        after_kill = crashable.status()
        done = {p["name"]: p for p in after_kill["phases"] if p["status"] == "completed"}
        # Phases run side by side (pull-images beside build...): a kill can cut more than one.
        running_at_kill = [p["name"] for p in after_kill["phases"] if p["status"] == "interrupted"]
        problems = [f"{name}: {problem}" for name in done
                    if (problem := side_effects_hold(crashable, name, before)) is not None]
        resumed = crashable.run("deploy")
        final = crashable.status()
        if resumed.returncode != 0 or final["state"] != "completed":
            problems.append(f"the resume failed: {resumed.stdout[-800:]} {resumed.stderr[-800:]}")
        if after_kill["state"] != "completed":  # else the kill came after the end: deploy was an update
            if final["deployment"]["id"] != after_kill["deployment"]["id"]:
                problems.append("the resume started a new deployment instead of resuming")
            rerun = [p["name"] for p in final["phases"]
                     if p["name"] in done and p["started_at"] != done[p["name"]]["started_at"]]
            if rerun:
                problems.append(f"completed phases ran again: {rerun}")
        tally.append({"seed": seed, "aimed_at": target, "delay_ms": round(delay * 1000),
                      "killed_in": running_at_kill, "completed_before_kill": len(done),
                      "ok": not problems, "problems": problems})
    RESULTS.mkdir(exist_ok=True)
    passed = sum(1 for row in tally if row["ok"])
    (RESULTS / "crash.json").write_text(json.dumps({"passed": passed, "kills": KILLS, "runs": tally}, indent=1))
    killed_in = Counter(name for row in tally for name in row["killed_in"] or ["after the end"])
    several = sum(1 for row in tally if len(row["killed_in"]) > 1)
    print(f"\ncrash anywhere: {passed}/{KILLS} resumed correctly; kills landed in {dict(killed_in.most_common())}; "
          f"{several} cut phases running side by side")
    assert passed == KILLS, [row for row in tally if not row["ok"]]
