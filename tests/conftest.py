"""Fixtures for tests on the real Docker engine with real compose v2.

Stacks are small busybox images built from the machine's static busybox, each
under a unique compose project name, and removed after the test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from servers import ServerPool

BUSYBOX_IMAGE = "surefoot-test/busybox:1"
REPO = Path(__file__).resolve().parent.parent


def _docker_usable() -> str | None:
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=30)
        compose = subprocess.run(
            ["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if info.returncode != 0:
        return "the Docker daemon is not reachable"
    if compose.returncode != 0 or not compose.stdout.strip().lstrip("v").startswith("2"):
        return "compose v2 is missing"
    return None


@pytest.fixture(scope="session")
def docker() -> None:
    problem = _docker_usable()
    if problem:
        pytest.fail(f"{problem}: run scripts/setup.sh first (the tests need a real engine)")


@pytest.fixture(scope="session")
def busybox_image(docker: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny image from the machine's static busybox: sh, httpd, nc, wget."""
    if subprocess.run(["docker", "image", "inspect", BUSYBOX_IMAGE], capture_output=True).returncode == 0:
        return BUSYBOX_IMAGE
    source = Path("/bin/busybox")
    if not source.exists():
        pytest.fail("/bin/busybox is missing: run scripts/setup.sh (installs busybox-static)")
    context = tmp_path_factory.mktemp("busybox")
    shutil.copy(source, context / "busybox")
    (context / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox","sh","-c","/bin/busybox --install -s /bin && mkdir -p /tmp && chmod 1777 /tmp"]\n'
    )
    subprocess.run(["docker", "build", "-q", "-t", BUSYBOX_IMAGE, str(context)], check=True,
                   capture_output=True)
    return BUSYBOX_IMAGE


@pytest.fixture(scope="session")
def test_servers(docker: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    """Up to three SSH servers with their own dockerd (tests/servers.py), started on first
    use and shared by the session; removed at its end."""
    pool = ServerPool(tmp_path_factory.mktemp("servers"))
    try:
        yield pool
    finally:
        pool.teardown(bare=True)


def wait_gone(pid: int, timeout: float = 60) -> None:
    """Until process ``pid`` has ended (a zombie that nobody reaps has ended too: a daemon
    started detached is reaped by PID 1, which here may never do it); fails the test past
    ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[:1]
        except OSError:
            return
        if state == ["Z"]:
            return
        time.sleep(0.2)
    pytest.fail(f"process {pid} still runs {timeout:g}s after it was stopped")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Project:
    """A compose project in a temporary folder, driven through the surefoot CLI."""

    path: Path
    name: str
    port: int
    env: dict[str, str] = field(default_factory=dict)

    def write(self, relative: str, text: str) -> Path:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return target

    def configure(self, command: str, extra: str = "") -> None:
        """(Re)write surefoot.toml with this migration command and extra TOML."""
        config = STACK_CONFIG.format(name=self.name, port=self.port, command=command)
        self.write("surefoot.toml", config + extra)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "surefoot", "-C", str(self.path), *args]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **self.env}, stdin=subprocess.DEVNULL,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **self.env}, stdin=subprocess.DEVNULL,
        )

    def status(self) -> dict[str, Any]:
        result = self.run("status", "--json", timeout=30)
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    def phase(self, name: str) -> dict[str, Any]:
        return next(p for p in self.status()["phases"] if p["name"] == name)

    def wait_for_phase(self, name: str, status: str = "running", timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.phase(name)["status"] == status:
                return
            time.sleep(0.2)
        raise AssertionError(f"phase {name} never reached {status}: {self.status()}")

    def docker(self, *args: str) -> str:
        return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout

    def compose(self, *args: str) -> str:
        return self.docker("compose", "-p", self.name, *args)

    def containers(self, *filters: str) -> list[str]:
        argv = ["ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={self.name}"]
        for item in filters:
            argv += ["--filter", item]
        return self.docker(*argv).split()

    def teardown(self) -> None:
        subprocess.run(["docker", "compose", "-p", self.name, "down", "-v", "--remove-orphans",
                        "--rmi", "local", "-t", "1"], capture_output=True)
        leftover = self.containers()
        if leftover:
            subprocess.run(["docker", "rm", "-f", *leftover], capture_output=True)
        tags = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                               f"surefoot.local/{self.name}/*"], capture_output=True, text=True).stdout.split()
        if tags:  # the release pins surefoot made
            subprocess.run(["docker", "image", "rm", "-f", *tags], capture_output=True)


# A stack in the shape of the real one: a "database" with a healthcheck, a web
# service that serves /health and the value of GREETING, a migration command.
STACK_COMPOSE = """
services:
  db:
    image: {image}
    command: ["sh", "-c", "touch /tmp/ready; exec sleep 3600"]
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
  web:
    image: {image}
    stop_signal: SIGKILL
    environment:
      GREETING: ${{GREETING:?set GREETING}}
    command:
      - sh
      - -c
      - 'mkdir -p /www && echo "{{\\"status\\":\\"healthy\\",\\"greeting\\":\\"$$GREETING\\"}}" > /www/health && exec httpd -f -p 8000 -h /www'
    ports: ["127.0.0.1:{port}:8000"]
"""

STACK_CONFIG = """
[project]
name = "{name}"
env_file = ".env"

[phases.pull-images]
enabled = false

[phases.database-start]
services = ["db"]
timeout = "60s"

[phases.database-migrate]
service = "db"
command = {command}
timeout = "2m"

[phases.health-wait]
url = "http://127.0.0.1:{port}/health"
expect_body = '"status":"healthy"'
consecutive = 2
interval = "0.3s"
timeout = "30s"
"""


def migrate_command(script: str) -> str:
    return json.dumps(["sh", "-c", script])


class Projects:
    """Makes projects from file templates ({name}, {port} and {image} filled in) and removes
    every stack they started when the test ends."""

    def __init__(self, image: str, folder: Path):
        self.image = image
        self.folder = folder
        self.made: list[Project] = []

    def new(self, files: dict[str, str], cls: type[Project] = Project, env: dict[str, str] | None = None,
            **values: str) -> Project:
        name = f"sft-{uuid.uuid4().hex[:10]}"
        project = cls(self.folder / name, name, free_port(), env=dict(env or {}))
        project.path.mkdir()
        for relative, template in files.items():
            project.write(relative, template.format(name=name, port=project.port, image=self.image, **values))
        self.made.append(project)
        return project

    def teardown(self) -> None:
        for project in self.made:
            project.teardown()


@pytest.fixture
def projects(busybox_image: str, tmp_path: Path) -> Iterator[Projects]:
    made = Projects(busybox_image, tmp_path)
    try:
        yield made
    finally:
        made.teardown()


@pytest.fixture
def stack(projects: Projects) -> Project:
    project = projects.new({"compose.yaml": STACK_COMPOSE, ".env": "GREETING=hello\n"})
    project.configure(migrate_command("echo migrated"))
    return project


def kill_and_wait(process: subprocess.Popen[str], sig: int = signal.SIGKILL, timeout: float = 60) -> int:
    process.send_signal(sig)
    return process.wait(timeout=timeout)
