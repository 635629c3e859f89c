"""The engine's API over its socket gives the same answers as the docker CLI, and the CLI
answers whenever the socket cannot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Project
from surefoot.deploy.gates.watch import parse_inspect
from surefoot.engines.api import DEFAULT_SOCKET, DockerApi, local_socket
from surefoot.engines.compose.adapter import ComposeEngine
from surefoot.engines.compose.argv import ComposeProject
from surefoot.proc import CancelToken, ProcessRunner


@pytest.mark.parametrize(
    ("docker", "environ", "expected"),
    [
        (("docker",), {}, DEFAULT_SOCKET),
        (("docker",), {"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}, "/run/user/1000/docker.sock"),
        (("docker",), {"DOCKER_HOST": "tcp://10.0.0.5:2376"}, None),
        (("docker",), {"DOCKER_HOST": "ssh://deploy@prod"}, None),
        (("docker",), {"DOCKER_CONTEXT": "prod"}, None),
        (("docker",), {"DOCKER_CONTEXT": "default"}, DEFAULT_SOCKET),
        (("docker", "--context", "prod"), {}, None),
    ],
)
def test_only_the_engine_the_plain_cli_would_reach_is_asked_over_its_socket(
    docker: tuple[str, ...], environ: dict[str, str], expected: str | None, tmp_path: Path
) -> None:
    environ = {"DOCKER_CONFIG": str(tmp_path), **environ}  # no config.json there
    assert local_socket(docker, environ) == expected


@pytest.mark.parametrize(("context", "expected"), [("default", DEFAULT_SOCKET), ("prod", None)])
def test_the_current_context_of_the_cli_config_is_respected(context: str, expected: str | None, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": context}))
    assert local_socket(("docker",), {"DOCKER_CONFIG": str(tmp_path)}) == expected


def test_a_damaged_cli_config_means_the_default_context(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    assert local_socket(("docker",), {"DOCKER_CONFIG": str(tmp_path)}) == DEFAULT_SOCKET


def _both_ways(project: Project) -> tuple[ComposeEngine, ComposeEngine]:
    files = ComposeProject(project.name, project.path, (project.path / "compose.yaml",), project.path / ".env")
    runner = ProcessRunner(CancelToken())
    over_socket, through_cli = ComposeEngine.here(files, runner), ComposeEngine(files, runner)
    assert over_socket.daemon.api is not None and through_cli.daemon.api is None
    return over_socket, through_cli


@pytest.mark.docker
def test_the_socket_and_the_cli_see_the_same_containers_and_images(stack: Project) -> None:
    deployed = stack.run("deploy")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    # A one-off container of the project (as a migration leaves while it runs): left out of ps.
    stack.docker("compose", "-p", stack.name, "--project-directory", str(stack.path), "--env-file",
                 str(stack.path / ".env"), "run", "--detach", "--no-deps", "--label", "io.surefoot.oneoff=test",
                 "db", "sleep", "30")
    socket, cli = _both_ways(stack)

    def comparable(compose: ComposeEngine, **how: bool) -> list[tuple[object, ...]]:
        return [(c.name, c.service, c.state, c.health, c.exit_code, c.published, c.id[:12])
                for c in sorted(compose.ps(**how), key=lambda c: c.name)]

    assert comparable(socket) == comparable(cli)
    assert comparable(socket, all=False) == comparable(cli, all=False)
    assert {c.service for c in socket.ps()} == {"db", "web"}
    assert [c.published for c in socket.ps(["web"])] == [(stack.port,)]
    assert parse_inspect(socket.containers(["db"])) == parse_inspect(cli.containers(["db"]))
    assert parse_inspect(socket.containers())[0].status == "running"
    oneoff = socket.containers_with_label("io.surefoot.oneoff")
    assert len(oneoff) == 1 and [i[:12] for i in oneoff] == [i[:12] for i in cli.containers_with_label("io.surefoot.oneoff")]
    images = ["surefoot-test/busybox:1", "surefoot-test/no-such-image:1"]
    assert socket.image_ids(images) == cli.image_ids(images)
    assert socket.image_ids(images)["surefoot-test/busybox:1"] is not None
    assert socket.engine_clock() and cli.engine_clock()
    assert socket.daemon.socket_version() == stack.docker("version", "--format", "{{.Server.Version}}").strip()

    image = socket.image_ids(["surefoot-test/busybox:1"])["surefoot-test/busybox:1"]
    assert image is not None
    pin = f"surefoot.local/{stack.name}/web:r99"
    socket.tag(image, pin)
    assert cli.image_ids([pin]) == {pin: image}


@pytest.mark.docker
def test_the_cli_answers_when_the_socket_cannot(stack: Project, tmp_path: Path) -> None:
    deployed = stack.run("deploy")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    socket, cli = _both_ways(stack)
    socket.daemon.api = DockerApi(str(tmp_path / "nobody-listens.sock"))
    assert [c.name for c in socket.ps()] == [c.name for c in cli.ps()] != []
    assert socket.image_ids(["surefoot-test/busybox:1"]) == cli.image_ids(["surefoot-test/busybox:1"])
    assert socket.daemon.socket_version() is None  # then preflight asks `docker version`
