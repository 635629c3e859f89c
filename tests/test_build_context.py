"""A build context at the project's root (`COPY . .`): the state folder never reaches
an image, and the build fingerprint counts only what the build receives (.dockerignore)."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import Project, Projects

pytestmark = pytest.mark.docker

ROOT_CONTEXT_COMPOSE = """
services:
  web:
    build:
      context: .
    stop_signal: SIGKILL
    command:
      - sh
      - -c
      - 'mkdir -p /www && echo "{{\\"status\\":\\"healthy\\"}}" > /www/health && exec httpd -f -p 8000 -h /www'
    ports: ["127.0.0.1:{port}:8000"]
"""

DOCKERFILE = "FROM {image}\nCOPY . /app/\n"

CONFIG = """
[project]
name = "{name}"

[phases.pull-images]
enabled = false

[phases.database-migrate]
service = "web"
command = {command}
timeout = "1m"

[phases.health-wait]
url = "http://127.0.0.1:{port}/health"
consecutive = 1
interval = "0.3s"
timeout = "30s"
"""


def root_context_app(projects: Projects, command: list[str], **extra: str) -> Project:
    files = {"compose.yaml": ROOT_CONTEXT_COMPOSE, "Dockerfile": DOCKERFILE, "app.txt": "v1\n", **extra}
    app = projects.new(files)
    app.write("surefoot.toml", CONFIG.format(name=app.name, port=app.port, command=json.dumps(command)))
    return app


def files_in_image(app: Project) -> list[str]:
    out = subprocess.run(["docker", "run", "--rm", f"{app.name}-web", "find", "/app"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def test_the_state_folder_never_enters_an_image(projects: Projects) -> None:
    app = root_context_app(projects, ["true"])
    first = app.run("deploy")
    # Without a .dockerignore entry preflight refuses it (exit 2), before anything is built or pulled.
    assert first.returncode == 2, first.stdout + first.stderr
    assert "surefoot: the state folder" in first.stderr
    assert f"add the line `/.surefoot` to {app.path / '.dockerignore'}" in first.stderr
    assert subprocess.run(["docker", "image", "inspect", f"{app.name}-web"],
                          capture_output=True).returncode != 0
    assert [p["name"] for p in app.status()["phases"] if p["status"] != "pending"] == ["preflight"]

    app.write(".dockerignore", "# the deployment tool's state\n/.surefoot\n")
    resumed = app.run("deploy")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    found = files_in_image(app)
    assert "/app/app.txt" in found and "/app/Dockerfile" in found
    assert not [f for f in found if ".surefoot" in f], found
    assert (app.path / ".surefoot" / "state.db").is_file()


def test_a_state_folder_given_elsewhere_needs_no_ignore_entry(projects: Projects, tmp_path_factory:
                                                               pytest.TempPathFactory) -> None:
    app = root_context_app(projects, ["true"])
    app.env["SUREFOOT_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    result = app.run("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [f for f in files_in_image(app) if ".surefoot" in f]


def test_the_build_fingerprint_honours_dockerignore(projects: Projects) -> None:
    app = root_context_app(projects, ["sh", "-c", "exit 3"],
                           **{".dockerignore": "/.surefoot\nsurefoot.toml\n*.md\n"})
    failed = app.run("deploy")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "phase database-migrate failed" in failed.stderr

    # A file the build receives changed: build runs again.
    app.write("app.txt", "v2\n")
    rebuilt = app.run("deploy")
    assert rebuilt.returncode == 1, rebuilt.stdout + rebuilt.stderr
    assert "build: started (attempt 2; inputs changed since it completed: build-context)" in rebuilt.stdout

    # Only ignored files changed (the configuration, a note): build is not run again.
    app.write("NOTES.md", "nothing the image needs\n")
    app.write("surefoot.toml", CONFIG.format(name=app.name, port=app.port, command='["true"]'))
    resumed = app.run("deploy")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "build: skipped (done before, inputs unchanged)" in resumed.stdout
    assert "database-migrate: started" in resumed.stdout
