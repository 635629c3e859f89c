"""kill -9 while compose recreates a container in services-start: the resume finishes
compose's half-done recreate and ends with one properly named container per replica."""

from __future__ import annotations

import re
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import Project, Projects, kill_and_wait

pytestmark = pytest.mark.docker

# httpd runs as PID 1 and ignores SIGTERM: compose's stop of the old container waits out
# the grace period, a window in which compose's temporary container exists beside it.
SLOW_STOP_COMPOSE = """
services:
  web:
    image: {image}
    stop_grace_period: 4s
    environment:
      GREETING: ${{GREETING:?set GREETING}}
    command:
      - sh
      - -c
      - 'mkdir -p /www && echo "{{\\"status\\":\\"healthy\\",\\"greeting\\":\\"$$GREETING\\"}}" > /www/health && exec httpd -f -p 8000 -h /www'
    ports: ["127.0.0.1:{port}:8000"]
  worker:
    image: {image}
    stop_signal: SIGKILL
    environment:
      GREETING: ${{GREETING}}
    command: ["sleep", "3600"]
"""

CONFIG = """
[project]
name = "{name}"
env_file = ".env"

[phases.pull-images]
enabled = false

[phases.health-wait]
url = "http://127.0.0.1:{port}/health"
expect_body = '"greeting":"{greeting}"'
consecutive = 2
interval = "0.3s"
timeout = "30s"

[rollback]
automatic = true
"""

TEMPORARY = re.compile(r"^[0-9a-f]{12}_")


def names(project: Project) -> list[str]:
    out = project.docker("ps", "-a", "--format", "{{.Names}}",
                         "--filter", f"label=com.docker.compose.project={project.name}")
    return sorted(out.split())


def configure(app: Project, greeting: str) -> None:
    app.write(".env", f"GREETING={greeting}\n")
    app.write("surefoot.toml", CONFIG.format(name=app.name, port=app.port, greeting=greeting))


def kill_at_recreate(app: Project) -> list[str]:
    """Start a deploy, kill -9 it once compose has made its temporary container; the names then."""
    deploy = app.start("deploy")
    assert deploy.stdout is not None
    try:
        for line in deploy.stdout:
            if line.split(" ", 1)[-1].startswith("services-start |") and " Recreate" in line:
                break
        else:
            raise AssertionError("compose never printed Recreate")
        deadline = time.monotonic() + 30
        while not any(TEMPORARY.match(n) for n in names(app)):
            assert time.monotonic() < deadline, names(app)
            time.sleep(0.05)
    finally:
        kill_and_wait(deploy, signal.SIGKILL)
    return names(app)


def test_kill_9_during_recreate_then_resume(projects: Projects) -> None:
    app = projects.new({"compose.yaml": SLOW_STOP_COMPOSE})
    configure(app, "one")
    first = app.run("deploy")
    assert first.returncode == 0, first.stdout + first.stderr

    configure(app, "two")
    left = kill_at_recreate(app)
    assert any(TEMPORARY.match(n) for n in left), left  # compose's recreate was cut in half

    resumed = app.run("deploy")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert names(app) == [f"{app.name}-web-1", f"{app.name}-worker-1"]
    running = app.docker("ps", "--format", "{{.Names}}",
                         "--filter", f"label=com.docker.compose.project={app.name}").split()
    assert sorted(running) == [f"{app.name}-web-1", f"{app.name}-worker-1"]
    with urllib.request.urlopen(f"http://127.0.0.1:{app.port}/health", timeout=10) as response:
        assert '"greeting":"two"' in response.read().decode()
    assert app.status()["state"] == "completed"


def test_a_lone_temporary_container_gets_its_name_back(projects: Projects) -> None:
    """Killed after compose removed the old container and before it renamed the new one:
    only the temporary name is left."""
    app = projects.new({"compose.yaml": SLOW_STOP_COMPOSE})
    configure(app, "one")
    first = app.run("deploy")
    assert first.returncode == 0, first.stdout + first.stderr
    container = app.docker("ps", "-q", "--no-trunc", "--filter", f"name=^{app.name}-web-1$").strip()
    subprocess.run(["docker", "rename", container, f"{container[:12]}_{app.name}-web-1"], check=True)

    again = app.run("deploy")
    assert again.returncode == 0, again.stdout + again.stderr
    assert names(app) == [f"{app.name}-web-1", f"{app.name}-worker-1"]


def test_a_container_named_like_a_temporary_one_is_left_alone(projects: Projects) -> None:
    compose = SLOW_STOP_COMPOSE + """
  keep:
    image: {image}
    container_name: 0123456789ab_{name}-keep
    stop_signal: SIGKILL
    environment:
      GREETING: ${{GREETING}}
    command: ["sleep", "3600"]
"""
    app = projects.new({"compose.yaml": compose})
    for greeting in ("one", "two", "two"):  # the second deploy recreates it (compose labels it)
        configure(app, greeting)
        result = app.run("deploy")
        assert result.returncode == 0, result.stdout + result.stderr
    assert names(app) == [f"0123456789ab_{app.name}-keep", f"{app.name}-web-1", f"{app.name}-worker-1"]
