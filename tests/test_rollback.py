"""Releases, automatic and manual rollback, image retention: on the real engine."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from datetime import datetime

import pytest

from conftest import Project, Projects

pytestmark = pytest.mark.docker

# A built service whose answer comes from its build context, so that every
# release is a new image under the same name (the common case: PROJECT-web:latest).
WEB_DOCKERFILE = """
FROM {image}
COPY health.json /www/health
COPY release /www/release
CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]
"""

COMPOSE = """
services:
  web:
    build: ./web
    stop_signal: SIGKILL
    restart: unless-stopped
    ports: ["127.0.0.1:{port}:8000"]
"""

CONFIG = """
[project]
name = "{name}"

[phases.pull-images]
enabled = false

[phases.health-wait]
url = "http://127.0.0.1:{port}/health"
expect_json = {{ status = "healthy" }}
consecutive = 2
interval = "0.3s"
timeout = "{timeout}"
"""


class Releases(Project):
    def release(self, number: int, *, healthy: bool = True, crash: bool = False) -> None:
        """Change the build context: the next deploy builds a new image."""
        status = "healthy" if healthy else "degraded"
        self.write("web/health.json", json.dumps({"status": status, "release": number}))
        self.write("web/release", str(number))
        compose = COMPOSE.format(port=self.port)
        if crash:
            compose += '    command: ["sh", "-c", "echo fatal: cannot open /etc/web.conf >&2; exit 3"]\n'
        self.write("compose.yaml", compose)

    def answer(self) -> dict[str, object]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as response:
            return dict(json.loads(response.read()))

    def history(self) -> dict[str, object]:
        result = self.run("history", "--json")
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))


@pytest.fixture
def app(projects: Projects) -> Releases:
    project = projects.new({"web/Dockerfile": WEB_DOCKERFILE, "surefoot.toml": CONFIG}, cls=Releases, timeout="20s")
    assert isinstance(project, Releases)
    return project


def deploy(project: Releases, expect: int = 0) -> subprocess.CompletedProcess[str]:
    result = project.run("deploy")
    assert result.returncode == expect, result.stdout[-3000:] + result.stderr
    return result


def test_an_unhealthy_release_is_rolled_back(app: Releases) -> None:
    app.release(1)
    deploy(app)
    assert app.answer() == {"status": "healthy", "release": 1}

    app.release(2, healthy=False)
    result = deploy(app, expect=4)
    assert "release 2 was rolled back: release 1 is running again" in result.stderr
    assert "database changes made since release 1 are not undone" in result.stderr
    assert app.answer() == {"status": "healthy", "release": 1}  # the old image, though web was rebuilt
    status = app.status()
    assert status["state"] == "rolled-back"
    assert status["resume_at"] is None
    assert status["current_release"] == 1

    history = app.history()
    releases = {r["id"]: r["outcome"] for r in history["releases"]}  # type: ignore[union-attr, index]
    assert releases == {1: "healthy", 2: "rolled-back"}
    (rollback,) = history["rollbacks"]  # type: ignore[misc]
    assert (rollback["trigger"], rollback["from_release"], rollback["to_release"], rollback["outcome"]) == (
        "automatic", 2, 1, "restored"
    )
    assert "build" in history["releases"][0]["phases"]  # type: ignore[index]

    # Fixed, the next deploy is a new release that goes through.
    app.release(3)
    deploy(app)
    assert app.answer() == {"status": "healthy", "release": 3}


def test_without_a_previous_release_a_failure_stays_resumable(app: Releases) -> None:
    app.release(1, healthy=False)
    app.write("surefoot.toml", CONFIG.format(name=app.name, port=app.port, timeout="3s"))
    result = deploy(app, expect=1)
    assert "resume with:" in result.stderr
    assert app.status()["resume_at"] == "health-wait"
    # The stack taken down by hand meanwhile, the cause fixed: the resume finds services-start's
    # containers gone and starts them again, rather than gating nothing.
    app.run("compose", "down")
    fixed = CONFIG.format(name=app.name, port=app.port, timeout="30s").replace('status = "healthy"', 'status = "degraded"')
    app.write("surefoot.toml", fixed)  # only health-wait's own settings change: services-start's inputs do not
    resumed = deploy(app)
    assert "services-start: started (attempt 2; its containers are gone or stopped (web))" in resumed.stdout
    assert app.answer()["release"] == 1


def test_automatic_rollback_can_be_switched_off(app: Releases) -> None:
    app.release(1)
    deploy(app)
    app.release(2, healthy=False)
    config = CONFIG.format(name=app.name, port=app.port, timeout="3s") + "\n[rollback]\nautomatic = false\n"
    app.write("surefoot.toml", config)
    deploy(app, expect=1)
    assert app.status()["state"] == "failed"


def test_a_crashing_release_fails_the_gate_early_with_its_logs(app: Releases) -> None:
    app.release(1)
    deploy(app)
    app.write("surefoot.toml", CONFIG.format(name=app.name, port=app.port, timeout="120s"))
    app.release(2, crash=True)
    result = deploy(app, expect=4)
    assert "fatal: cannot open /etc/web.conf" in result.stderr  # the container's last log lines
    # The watch ended the gate, not the 120 s timeout.
    assert re.search(r"the health gate failed: web (exited with code 3|is restarting|restarted)", result.stderr)
    phase = next(p for p in app.history()["releases"] if p["id"] == 2)  # type: ignore[union-attr]
    assert phase["outcome"] == "rolled-back"
    health = app.run("status", "--json")
    runs = {p["name"]: p for p in json.loads(health.stdout)["phases"]}
    took = (datetime.fromisoformat(runs["health-wait"]["finished_at"].rstrip("Z"))
            - datetime.fromisoformat(runs["health-wait"]["started_at"].rstrip("Z"))).total_seconds()
    assert took < 30, f"the gate took {took}s of its 120s timeout"
    assert app.answer()["release"] == 1


def test_manual_rollback_to_the_previous_and_to_a_named_release(app: Releases) -> None:
    for number in (1, 2, 3):
        app.release(number)
        deploy(app)
    assert app.answer()["release"] == 3

    previous = app.run("rollback", "--yes")
    assert previous.returncode == 0, previous.stdout + previous.stderr
    assert "release 2 restored and healthy (rolled back from release 3)" in previous.stdout
    assert "deployment #3" not in previous.stdout + previous.stderr  # no deployment was restored
    assert app.answer()["release"] == 2
    status = app.status()
    assert status["current_release"] == 2 and status["state"] == "rolled-back"
    assert status["rollback"]["release"] == 2 and status["rollback"]["from_release"] == 3
    assert status["rollback"]["trigger"] == "manual" and status["resume_at"] is None
    text = app.run("status").stdout
    assert text.startswith(f"{app.name}: rolled-back (deployment #3") and "rolled back by hand to release 2 " \
        "from release 3 at " in text

    named = app.run("rollback", "1", "--yes")
    assert named.returncode == 0, named.stdout + named.stderr
    assert app.answer()["release"] == 1

    missing = app.run("rollback", "9", "--yes")
    assert missing.returncode == 2
    assert "there is no release 9" in missing.stderr
    unconfirmed = app.run("rollback")
    assert unconfirmed.returncode == 2
    assert "--yes" in unconfirmed.stderr
    triggers = [r["trigger"] for r in app.history()["rollbacks"]]  # type: ignore[union-attr, index]
    assert triggers == ["manual", "manual"]


def test_cleanup_keeps_the_images_of_the_last_five_releases(app: Releases) -> None:
    ids = {}
    for number in range(1, 7):
        app.release(number)
        deploy(app)
        ids[number] = app.docker("image", "inspect", "--format", "{{.Id}}", f"{app.name}-web").strip()
    assert len(set(ids.values())) == 6
    listed = app.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", f"surefoot.local/{app.name}/web")
    assert sorted(listed.split()) == [f"surefoot.local/{app.name}/web:r{n}" for n in range(2, 7)]
    gone = subprocess.run(["docker", "image", "inspect", ids[1]], capture_output=True)
    assert gone.returncode != 0, "release 1's image should have been removed"
    for number in range(2, 7):
        assert subprocess.run(["docker", "image", "inspect", ids[number]], capture_output=True).returncode == 0
    # Release files go with their images; the env-less copies of the rest stay private.
    folders = sorted(p.name for p in (app.path / ".surefoot" / "releases").iterdir())
    assert folders == ["2", "3", "4", "5", "6"]
    assert oct((app.path / ".surefoot" / "releases" / "6").stat().st_mode & 0o777) == "0o700"


def test_release_files_and_env_copies_are_private(app: Releases) -> None:
    app.write(".env", "API_TOKEN=abcdef123456\n")
    config = CONFIG.format(name=app.name, port=app.port, timeout="20s").replace(
        f'name = "{app.name}"', f'name = "{app.name}"\nenv_file = ".env"'
    )
    app.write("surefoot.toml", config)
    app.release(1)
    deploy(app)
    folder = app.path / ".surefoot" / "releases" / "1"
    for file in folder.iterdir():
        assert file.stat().st_mode & 0o777 == 0o600, file
    assert (folder / "env").read_text() == "API_TOKEN=abcdef123456\n"
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{app.port}/missing", timeout=5)
