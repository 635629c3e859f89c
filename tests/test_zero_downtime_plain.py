"""Zero-downtime behind a proxy that resolves the service on every request and never retries
(issue 26), on the real engine: no traffic to a new container before its gate, none lost when
the old one goes. The proxy and the app are a few lines of Python (tests/zdt_stack.py); the app
says which container answered."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from zdt_stack import APP, PLAIN_COMPOSE, PROXY, ZDT_CONFIG, ZERO_DOWNTIME, Traffic, ensure_python_image

from conftest import Project, Projects, kill_and_wait

pytestmark = pytest.mark.docker


@pytest.fixture(scope="session")
def python_image(docker: None) -> str:
    return ensure_python_image()


def plain_stack(projects: Projects, python: str, zero_downtime: bool = True) -> Project:
    project = projects.new({"compose.yaml": PLAIN_COMPOSE, ".env": "VERSION=1\n"}, python=python)
    project.write("app.py", APP)
    project.write("proxy.py", PROXY)
    project.write("surefoot.toml", ZDT_CONFIG.format(name=project.name, port=project.port)
                  + (ZERO_DOWNTIME if zero_downtime else ""))
    first = project.run("deploy")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    return project


def during_traffic(project: Project, *command: str, version: str | None = None) -> tuple[int, str, Traffic]:
    if version is not None:
        project.write(".env", f"VERSION={version}\n")
    traffic = Traffic(project.port).start()
    try:
        result = project.run(*command)
        time.sleep(1)  # the answers just after count too
    finally:
        traffic.stop()
    assert not traffic.exhausted, "the client loop ended before the command: the test proves nothing"
    assert traffic.ok > 50, f"too few answers to judge ({traffic.ok})"
    return result.returncode, result.stdout + result.stderr, traffic


def api_containers(project: Project) -> list[dict[str, object]]:
    ids = project.containers("label=com.docker.compose.service=api")
    return list(json.loads(project.docker("inspect", *ids))) if ids else []


def in_rotation(container: dict[str, object]) -> bool:
    networks = container["NetworkSettings"]["Networks"]  # type: ignore[index]
    return any("api" in (spec.get("Aliases") or []) for spec in networks.values())


def steering_rules(project: Project) -> list[str]:
    listed = subprocess.run(["iptables", "-w", "5", "-t", "nat", "-S", "PREROUTING"], capture_output=True, text=True)
    return [line for line in listed.stdout.splitlines() if f"surefoot {project.name} " in line]


@pytest.mark.parametrize("zero_downtime", [True, False], ids=["zero-downtime", "in-place"])
def test_an_update_behind_a_proxy_without_retries_loses_no_request(projects: Projects, python_image: str,
                                                                   zero_downtime: bool) -> None:
    project = plain_stack(projects, python_image, zero_downtime)
    code, output, traffic = during_traffic(project, "deploy", version="2")
    assert code == 0, output[-3000:]
    assert traffic.bodies[-1].startswith("version 2 from "), traffic.bodies
    if zero_downtime:
        assert traffic.failed == 0, (traffic.failed, traffic.errors, output[-3000:])
        assert "gated, now reached as api" in output and "new connections to" in output
        assert len(api_containers(project)) == 1 and steering_rules(project) == []
    else:  # the control: compose recreates in place, and a proxy without retries sees it
        assert traffic.failed > 0, "the in-place update lost nothing: this test could not tell"


def test_a_release_that_never_turns_healthy_gets_no_request(projects: Projects, python_image: str) -> None:
    project = plain_stack(projects, python_image)
    code, output, traffic = during_traffic(project, "deploy", version="bad")
    assert code not in (0, 2), output[-3000:]
    assert "the new version failed its gate" in output
    assert traffic.failed == 0, (traffic.failed, traffic.errors)
    assert not [body for body in traffic.bodies if body.startswith("version bad")], traffic.bodies
    (running,) = api_containers(project)
    assert running["Config"]["Env"] and "VERSION=1" in running["Config"]["Env"]  # type: ignore[index,operator]


def test_a_rollback_of_a_zero_downtime_service_loses_no_request(projects: Projects, python_image: str) -> None:
    project = plain_stack(projects, python_image)
    project.write(".env", "VERSION=2\n")
    second = project.run("deploy")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr
    code, output, traffic = during_traffic(project, "rollback", "--yes")
    assert code == 0, output[-3000:]
    assert "gated, now reached as api" in output  # switched, not recreated in place
    assert traffic.failed == 0, (traffic.failed, traffic.errors, output[-3000:])
    assert traffic.bodies[-1].startswith("version 1 from "), traffic.bodies


@pytest.mark.parametrize("marker", ["out of rotation", "gated, now reached as api", "new connections to"],
                         ids=["during-the-gate", "both-in-rotation", "while-steered"])
def test_kill_9_in_a_switch_then_deploy_leaves_one_generation_in_rotation(
    projects: Projects, python_image: str, marker: str
) -> None:
    project = plain_stack(projects, python_image)
    project.write(".env", "VERSION=2\n")
    running = project.start("deploy")
    assert running.stdout is not None
    deadline = time.monotonic() + 120
    seen: list[str] = []
    for line in running.stdout:
        seen.append(line)
        if marker in line:
            break
        assert time.monotonic() < deadline, "".join(seen[-20:])
    else:
        raise AssertionError(f"the switch never said {marker!r}: {''.join(seen[-20:])}")
    kill_and_wait(running, signal.SIGKILL)
    resumed = project.run("deploy")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr
    containers = api_containers(project)
    assert len(containers) == 1, [c["Name"] for c in containers]
    (api,) = containers
    assert in_rotation(api) and "VERSION=2" in api["Config"]["Env"]  # type: ignore[index,operator]
    assert steering_rules(project) == []
    assert project.run("status", "--json").returncode == 0 and project.status()["state"] == "completed"

