"""Zero-downtime for the services that publish ports (issue 27): surefoot's edge (HAProxy, here
Debian's package in an image: no registry answers) holds the ports and forwards each to the
service's current containers, on the real engine. The services: the plain app (HTTP, says which
container answered) and a line-echo server (plain TCP), both publishing a port and listed in
zero_downtime; and the bundled example's nginx."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from zdt_stack import (
    APP,
    ECHO,
    EDGE_COMPOSE,
    EDGE_CONFIG,
    Traffic,
    ensure_haproxy_image,
    ensure_python_image,
)

from conftest import REPO, Project, Projects, free_port, kill_and_wait

pytestmark = pytest.mark.docker


@pytest.fixture(scope="session")
def images(docker: None) -> tuple[str, str]:
    return ensure_python_image(), ensure_haproxy_image()


class EdgeProject(Project):
    echo_port: int

    def teardown(self) -> None:
        subprocess.run(["docker", "rm", "-f", f"{self.name}-edge"], capture_output=True)
        super().teardown()


def edge_stack(projects: Projects, images: tuple[str, str], drain: str = "3s") -> EdgeProject:
    python, haproxy = images
    echo_port = free_port()
    project = projects.new({"compose.yaml": EDGE_COMPOSE, ".env": "VERSION=1\n"}, cls=EdgeProject, python=python,
                           echo_port=str(echo_port))
    assert isinstance(project, EdgeProject)
    project.echo_port = echo_port
    project.write("app.py", APP)
    project.write("echo.py", ECHO)
    project.write("surefoot.toml", EDGE_CONFIG.format(name=project.name, port=project.port, drain=drain,
                                                      haproxy=haproxy))
    first = project.run("deploy")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    return project


def published(project: Project) -> list[str]:
    """The ports the project's service containers publish (the edge holds them: none)."""
    found = []
    for cid in project.containers():
        bound = json.loads(project.docker("inspect", "--format", "{{json .NetworkSettings.Ports}}", cid) or "{}")
        found += [port for port, hosts in (bound or {}).items() if hosts]
    return found


def edge_container(project: Project) -> str:
    return project.docker("inspect", "--format", "{{.Id}}", f"{project.name}-edge").strip()


def run_watching(project: Project, marker: str, then: object, *args: str) -> tuple[int, str]:
    """Run ``deploy`` (or ``args``), calling ``then()`` once its output says ``marker``."""
    running = project.start(*(args or ("deploy",)))
    assert running.stdout is not None
    lines: list[str] = []
    called = False
    for line in running.stdout:
        lines.append(line)
        if not called and marker in line:
            called = True
            then()  # type: ignore[operator]
    code = running.wait(timeout=300)
    assert called, f"the deployment never said {marker!r}: {''.join(lines[-30:])}"
    return code, "".join(lines)


class EchoLoop:
    """Connect, send a line, read the answer, close: about 50 a second, at most 2,000."""

    def __init__(self, port: int):
        self.port, self.ok, self.failed, self.errors = port, 0, 0, []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and self.ok + self.failed < 2000:
            began = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
                    conn.sendall(b"hello\n")
                    answer = conn.makefile().readline()
                if not answer.endswith("hello\n"):
                    raise OSError(f"answer {answer!r}")
                self.ok += 1
            except OSError as exc:
                self.failed += 1
                self.errors.append(str(exc))
            self._stop.wait(max(0.0, 0.02 - (time.monotonic() - began)))

    def __enter__(self) -> EchoLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_http_and_tcp_services_that_publish_ports_update_with_no_failed_request(
    projects: Projects, images: tuple[str, str]
) -> None:
    project = edge_stack(projects, images)
    assert published(project) == []  # the edge holds the ports, the services publish nothing
    status = project.status()
    edge = status["edge"]
    assert edge["image"] == images[1]
    assert sorted(edge["ports"]) == sorted([f"127.0.0.1:{project.port}->api:8000",
                                            f"127.0.0.1:{project.echo_port}->echo:7000"])
    assert set(edge["backends"]) == {"api", "echo"} and all(len(ids) == 1 for ids in edge["backends"].values())
    edge_id = edge_container(project)
    held = socket.create_connection(("127.0.0.1", project.echo_port), timeout=5)
    held_file = held.makefile()
    answers_after_reload: list[str] = []

    def on_reload() -> None:  # the edge now sends new connections to the new echo
        held.sendall(b"still here\n")
        answers_after_reload.append(held_file.readline())

    project.write(".env", "VERSION=2\n")
    traffic = Traffic(project.port).start()
    try:
        with EchoLoop(project.echo_port) as echo:
            code, output = run_watching(project, "echo: the edge sends new connections to", on_reload)
            time.sleep(1)
    finally:
        traffic.stop()
        held.close()
    assert code == 0, output[-3000:]
    assert not traffic.exhausted and traffic.ok > 50
    assert traffic.failed == 0, (traffic.failed, traffic.errors[:3], output[-2000:])
    assert echo.failed == 0 and echo.ok > 50, (echo.failed, echo.errors[:3])
    assert traffic.bodies[-1].startswith("version 2 from "), traffic.bodies
    # the connection held across the switch kept working (the old echo answered it) until the drain
    assert answers_after_reload == ["1 still here\n"], answers_after_reload
    after = project.status()["edge"]
    assert after["backends"]["api"] != edge["backends"]["api"]
    assert edge_container(project) == edge_id  # reloaded, never recreated
    with socket.create_connection(("127.0.0.1", project.echo_port), timeout=5) as conn:
        conn.sendall(b"x\n")
        assert conn.makefile().readline() == "2 x\n"


def test_a_front_that_never_turns_healthy_gets_no_request(projects: Projects, images: tuple[str, str]) -> None:
    project = edge_stack(projects, images)
    project.write(".env", "VERSION=bad\n")
    traffic = Traffic(project.port).start()
    try:
        result = project.run("deploy")
        time.sleep(1)
    finally:
        traffic.stop()
    assert result.returncode not in (0, 2), result.stdout[-3000:]
    assert "the new version failed its gate" in result.stdout + result.stderr
    assert traffic.failed == 0 and traffic.ok > 50, (traffic.failed, traffic.errors[:3])
    assert not [body for body in traffic.bodies if body.startswith("version bad")], traffic.bodies


def test_a_long_request_in_flight_when_the_drain_starts_completes(projects: Projects,
                                                                  images: tuple[str, str]) -> None:
    project = edge_stack(projects, images, drain="5s")
    answers: list[str] = []

    def slow() -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{project.port}/slow?s=3", timeout=30) as response:
            answers.append(response.read().decode().strip())

    worker = threading.Thread(target=slow)

    def start_slow() -> None:  # just before the edge's reload: the old worker keeps it to the end
        worker.start()
        time.sleep(0.3)

    project.write(".env", "VERSION=2\n")
    code, output = run_watching(project, "gated, now reached as api", start_slow)
    worker.join(timeout=30)
    assert code == 0, output[-3000:]
    assert answers and answers[0].startswith("version 1 from "), answers


def test_kill_9_in_the_middle_of_a_switch_then_deploy_the_edge_serves_throughout(
    projects: Projects, images: tuple[str, str]
) -> None:
    project = edge_stack(projects, images)
    project.write(".env", "VERSION=2\n")
    traffic = Traffic(project.port).start()
    try:
        running = project.start("deploy")
        assert running.stdout is not None
        for line in running.stdout:
            if "api: the edge sends new connections to" in line:
                break
        kill_and_wait(running, signal.SIGKILL)
        time.sleep(1)
        resumed = project.run("deploy")
        time.sleep(1)
    finally:
        traffic.stop()
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr
    assert traffic.failed == 0 and traffic.ok > 50, (traffic.failed, traffic.errors[:3])
    assert traffic.bodies[-1].startswith("version 2 from ")
    assert len(project.containers("label=com.docker.compose.service=api")) == 1


@pytest.fixture
def shop(tmp_path: Path, images: tuple[str, str]) -> Iterator[Project]:
    """The bundled example, its nginx (which publishes the port) listed in zero_downtime."""
    name = f"sft-eshop-{uuid.uuid4().hex[:8]}"
    project = Project(tmp_path / "shop", name, free_port())
    shutil.copytree(REPO / "examples" / "shop", project.path, ignore=shutil.ignore_patterns(".surefoot"))
    config = (project.path / "surefoot.toml").read_text()
    config = config.replace('name = "shop"', f'name = "{name}"').replace("127.0.0.1:8080", f"127.0.0.1:{project.port}")
    project.write("surefoot.toml", config + '\n[phases.services-start]\nzero_downtime = ["proxy"]\ndrain = "2s"\n'
                  f'\n[edge]\nimage = "{images[1]}"\n')
    env = (project.path / ".env.production").read_text().replace("HTTP_PORT=8080", f"HTTP_PORT={project.port}")
    project.write(".env.production", env)
    try:
        yield project
    finally:
        subprocess.run(["docker", "rm", "-f", f"{name}-edge"], capture_output=True)
        project.teardown()
        local = subprocess.run(["docker", "image", "ls", "-q", "--filter", f"reference={name}-*"],
                               capture_output=True, text=True).stdout.split()
        if local:
            subprocess.run(["docker", "image", "rm", "-f", *local], capture_output=True)


@pytest.mark.example
def test_the_example_s_nginx_updates_through_the_edge_with_no_failed_request(shop: Project) -> None:
    first = shop.run("deploy", "--non-interactive", timeout=1200)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    conf = shop.path / "proxy" / "nginx.conf"
    conf.write_text(conf.read_text().replace("        location / {",
                                             "        location = /proxy-version { return 200 \"two\\n\"; }\n"
                                             "        location / {", 1))
    traffic = Traffic(shop.port, path="/health").start()
    try:
        result = shop.run("deploy", "--non-interactive", timeout=1200)
        time.sleep(1)
    finally:
        traffic.stop()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "proxy: the edge sends new connections to" in result.stdout
    assert traffic.failed == 0 and traffic.ok > 50, (traffic.failed, traffic.errors[:3])
    with urllib.request.urlopen(f"http://127.0.0.1:{shop.port}/proxy-version", timeout=5) as response:
        assert response.read().decode().strip() == "two"


def test_a_port_added_reloads_the_edge_and_a_rollback_switches_through_it(
    projects: Projects, images: tuple[str, str]
) -> None:
    project = edge_stack(projects, images, drain="2s")
    edge_id = edge_container(project)
    held = socket.create_connection(("127.0.0.1", project.echo_port), timeout=5)
    held_file = held.makefile()
    second = free_port()
    compose = (project.path / "compose.yaml").read_text()
    project.write("compose.yaml", compose.replace(f'ports: ["127.0.0.1:{project.port}:8000"]',
                                                  f'ports: ["127.0.0.1:{project.port}:8000", "127.0.0.1:{second}:8000"]'))
    added = project.run("deploy")
    assert added.returncode == 0, added.stdout[-3000:] + added.stderr
    assert edge_container(project) == edge_id
    assert f"127.0.0.1:{second}->api:8000" in project.status()["edge"]["ports"]
    with urllib.request.urlopen(f"http://127.0.0.1:{second}/", timeout=5) as response:
        assert response.read().decode().startswith("version 1 from ")
    held.sendall(b"after the reload\n")  # established before the reload: still served
    assert held_file.readline() == "1 after the reload\n"
    held.close()
    project.write(".env", "VERSION=2\n")
    updated = project.run("deploy")
    assert updated.returncode == 0, updated.stdout[-3000:] + updated.stderr
    traffic = Traffic(project.port).start()
    try:
        rolled = project.run("rollback", "--yes")
        time.sleep(1)
    finally:
        traffic.stop()
    assert rolled.returncode == 0, rolled.stdout[-3000:] + rolled.stderr
    assert "api: the edge sends new connections to" in rolled.stdout  # switched, not recreated in place
    assert traffic.failed == 0 and traffic.ok > 50, (traffic.failed, traffic.errors[:3])
    assert traffic.bodies[-1].startswith("version 1 from "), traffic.bodies
    assert edge_container(project) == edge_id
