"""Zero-downtime updates (phases.services-start.zero_downtime) on the real engine: an API
slow to stop and to start, behind the example's nginx, with a client loop through the proxy."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from zdt_stack import ZDT_COMPOSE, ZDT_CONFIG, ZERO_DOWNTIME, Traffic, ensure_nginx_image, nginx_conf

from conftest import Project, Projects, kill_and_wait
from surefoot.base.errors import ConfigError
from surefoot.config.settings import Settings, load_settings
from surefoot.deploy.phases.rollout import check_zero_downtime
from surefoot.engines.compose.model import ComposeModel


@pytest.fixture(scope="session")
def nginx_image(docker: None) -> str:
    return ensure_nginx_image()


def new_stack(projects: Projects, nginx: str, zero_downtime: bool = True, compose: str = ZDT_COMPOSE) -> Project:
    project = projects.new({"compose.yaml": compose, ".env": "VERSION=1\n"}, nginx=nginx)
    project.write("nginx.conf", nginx_conf())
    project.write("surefoot.toml", ZDT_CONFIG.format(name=project.name, port=project.port)
                  + (ZERO_DOWNTIME if zero_downtime else ""))
    return project


def api_containers(project: Project) -> list[dict[str, object]]:
    ids = project.containers("label=com.docker.compose.service=api")
    return list(json.loads(project.docker("inspect", *ids))) if ids else []


def deploy_during_traffic(project: Project, version: str) -> tuple[int, str, Traffic]:
    project.write(".env", f"VERSION={version}\n")
    traffic = Traffic(project.port).start()
    try:
        result = project.run("deploy")
        time.sleep(1)  # the answers just after the deployment count too
    finally:
        traffic.stop()
    assert not traffic.exhausted, "the client loop ended before the deployment: the test proves nothing"
    return result.returncode, result.stdout + result.stderr, traffic


@pytest.mark.docker
@pytest.mark.parametrize("zero_downtime", [True, False], ids=["zero-downtime", "in-place"])
def test_an_update_through_the_proxy_loses_no_request(projects: Projects, nginx_image: str,
                                                      zero_downtime: bool) -> None:
    project = new_stack(projects, nginx_image, zero_downtime)
    first = project.run("deploy")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    code, output, traffic = deploy_during_traffic(project, "2")
    assert code == 0, output[-3000:]
    assert traffic.bodies[-1] == "version 2", traffic.bodies
    containers = api_containers(project)
    assert len(containers) == 1  # one generation left
    if zero_downtime:
        assert "api: switched to" in output
        assert traffic.failed == 0, (traffic.failed, traffic.errors)
        assert traffic.ok > 0
    else:  # the same update replaced in place: the test can fail
        assert traffic.failed > 0, (traffic.ok, traffic.bodies)


@pytest.mark.docker
def test_a_new_container_that_never_turns_healthy_leaves_the_old_one_serving(
    projects: Projects, nginx_image: str
) -> None:
    project = new_stack(projects, nginx_image)
    first = project.run("deploy")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    before = [c["Id"] for c in api_containers(project)]
    code, output, traffic = deploy_during_traffic(project, "bad")
    assert code == 1, output[-3000:]  # nothing changed: nothing to roll back
    assert "the new version failed its gate, the old one keeps serving" in output
    assert traffic.failed == 0, (traffic.failed, traffic.errors)
    assert traffic.bodies == ["version 1"]
    assert [c["Id"] for c in api_containers(project)] == before  # the new one was removed
    history = json.loads(project.run("history", "--json").stdout)
    assert history["releases"][0]["outcome"] == "failed"


@pytest.mark.docker
def test_a_zero_downtime_service_that_is_not_one_is_refused_before_any_change(
    projects: Projects, nginx_image: str
) -> None:
    project = new_stack(projects, nginx_image)
    project.write("surefoot.toml", ZDT_CONFIG.format(name=project.name, port=project.port)
                  + 'zero_downtime = ["nope"]\n')
    unknown = project.run("deploy", "--fresh")
    assert unknown.returncode == 2, unknown.stdout[-3000:] + unknown.stderr
    assert "phases.services-start.zero_downtime: no service 'nope'" in unknown.stdout + unknown.stderr
    assert project.containers() == []


@pytest.mark.docker
def test_kill_9_in_the_middle_of_a_switch_then_deploy_leaves_one_healthy_generation(
    projects: Projects, nginx_image: str
) -> None:
    project = new_stack(projects, nginx_image)
    first = project.run("deploy")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    project.write(".env", "VERSION=2\n")
    process = project.start("deploy")
    deadline = time.monotonic() + 120
    while len(project.containers("label=com.docker.compose.service=api")) < 2:  # both generations
        assert process.poll() is None and time.monotonic() < deadline, "the switch was never seen"
        time.sleep(0.05)
    kill_and_wait(process)
    assert len(project.containers("label=com.docker.compose.service=api")) == 2
    result = project.run("deploy")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "from an interrupted switch" in result.stdout  # the new generation was found, and gated
    containers = api_containers(project)
    assert len(containers) == 1
    state = containers[0]["State"]
    assert isinstance(state, dict) and state["Health"]["Status"] == "healthy"
    hashes = project.compose("--project-directory", str(project.path), "--env-file",
                             str(project.path / ".env"), "config", "--hash", "api").split()
    labels = containers[0]["Config"]["Labels"]  # type: ignore[index]
    assert labels["com.docker.compose.config-hash"] == hashes[1]
    # Unchanged, a zero-downtime service is not touched.
    again = project.run("deploy", "--fresh")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert "api: up to date" in again.stdout
    assert [c["Id"] for c in api_containers(project)] == [containers[0]["Id"]]


@pytest.mark.docker
def test_several_services_switch_one_after_another_each_gated(projects: Projects, nginx_image: str) -> None:
    web = ZDT_COMPOSE.split("  proxy:")[0].split("services:\n")[1].replace("  api:", "  web:", 1)
    project = new_stack(projects, nginx_image, compose=ZDT_COMPOSE + web)
    project.write("surefoot.toml", ZDT_CONFIG.format(name=project.name, port=project.port)
                  + 'zero_downtime = ["web", "api"]\ndrain = "1s"\n')
    first = project.run("deploy")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    code, output, traffic = deploy_during_traffic(project, "2")
    assert code == 0, output[-3000:]
    assert traffic.failed == 0, (traffic.failed, traffic.errors)
    steps = [output.index(line) for line in ("web: starting the new version", "web: switched to",
                                             "api: starting the new version", "api: switched to")]
    assert steps == sorted(steps)
    assert len(project.containers("label=com.docker.compose.service=web")) == 1


# -- the configuration, without the engine ----------------------------------------------

def _model(services: dict[str, object]) -> ComposeModel:
    return ComposeModel.from_json("p", json.dumps({"services": services}))


def _settings(tmp_path: Path, listed: str) -> Settings:
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    (tmp_path / "surefoot.toml").write_text(f"[phases.services-start]\nzero_downtime = {listed}\n")
    return load_settings(tmp_path)


@pytest.mark.parametrize(("spec", "expected"), [
    ({"container_name": "api"}, "api has container_name 'api'"),
    ({"network_mode": "host"}, "api has network_mode 'host'"),
    ({"ports": [{"target": 53, "published": "5353", "protocol": "udp"}]}, r"api: 5353/udp \(the edge forwards TCP\)"),
    ({"ports": [{"target": 80, "published": "8080-8081"}]}, "api: the port range 8080-8081"),
])
def test_preflight_refuses_what_two_containers_cannot_share(tmp_path: Path, spec: dict[str, object],
                                                             expected: str) -> None:
    settings = _settings(tmp_path, '["api"]')
    model = _model({"api": {"image": "x", **spec}})
    with pytest.raises(ConfigError, match=expected):
        check_zero_downtime(settings, model, model)
    # a published TCP port is the edge's to hold (issue 27)
    ports = _model({"api": {"image": "x", "ports": [{"target": 80, "published": "8080"}]}})
    check_zero_downtime(settings, ports, ports)


def test_an_unknown_zero_downtime_service_names_the_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path, '["nope"]')
    with pytest.raises(ConfigError, match=r"phases\.services-start\.zero_downtime: no service 'nope'"):
        check_zero_downtime(settings, _model({"api": {"image": "x"}}))
