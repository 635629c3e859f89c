"""Docker Swarm as the engine (issue 16), on a real three-node swarm made of the test servers.

Swarm is initialised inside the test servers (never on this machine's engine) and left at the
end of the module. This machine's kernel has no IPVS, so the stacks publish ports in host mode
and use ``endpoint_mode: dnsrr`` ("Test servers" in DESIGN.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, Project
from servers import Server, ServerPool, leave_swarm, loopback_registry, make_swarm

pytestmark = pytest.mark.docker

# web: two tasks, serving GREETING; a release whose GREETING is "broken" exits at once.
# worker: one task, carrying GREETING too, so a release changes both services.
STACK = """
services:
  web:
    build: ./web
    stop_signal: SIGKILL
    environment:
      GREETING: ${{GREETING:?set GREETING}}
      WARMUP: ${{WARMUP:-0}}
    command:
      - sh
      - -c
      - 'if [ "$$GREETING" = broken ]; then echo broken; exit 1; fi; sleep "$${{WARMUP:-0}}"; mkdir -p /srv && echo "{{\\"status\\":\\"healthy\\",\\"greeting\\":\\"$$GREETING\\"}}" > /srv/health && exec httpd -f -p 8000 -h /srv'
    healthcheck:
      test: ["CMD", "test", "-f", "/srv/health"]
      interval: 1s
      start_period: 20s
    ports:
      - target: 8000
        published: {port}
        mode: host
    deploy:
      replicas: 2
      endpoint_mode: dnsrr
      update_config: {{parallelism: 1, monitor: 2s}}
  worker:
    image: surefoot-test/busybox:1
    stop_signal: SIGKILL
    environment:
      GREETING: ${{GREETING}}
    command: ["sleep", "3600"]
    deploy:
      endpoint_mode: dnsrr
{extra}"""

CONFIG = """
[project]
name = "{name}"
env_file = ".env"

[phases.pull-images]
enabled = false

[phases.health-wait]
monitor = "1s"
pending_timeout = "5s"
timeout = "90s"

[targets.cluster]
host = "{manager}"
ssh_config = "{ssh_config}"
engine = "swarm"
nodes = [{nodes}]
"""


@pytest.fixture(scope="module")
def swarm(test_servers: ServerPool, busybox_image: str) -> Iterator[list[Server]]:
    """Three test servers made one swarm: server-0 the manager, the others workers."""
    servers = test_servers.start(3)
    for server in servers:
        server.load_image(busybox_image)
    make_swarm(servers)
    try:
        yield servers
    finally:
        leave_swarm(servers)


class SwarmProject(Project):
    servers: list[Server]

    @property
    def manager(self) -> Server:
        return self.servers[0]

    def services(self) -> dict[str, dict[str, Any]]:
        return {row["name"].removeprefix(f"{self.name}_"): row for row in self.status()["services"]}

    def service_env(self, service: str) -> list[str]:
        found = self.manager.ssh("docker", "service", "inspect", f"{self.name}_{service}", "--format",
                                 "{{json .Spec.TaskTemplate.ContainerSpec.Env}}", check=False)
        return list(json.loads(found.stdout) or []) if found.returncode == 0 else []

    def fetch(self, path: str = "/health") -> dict[str, Any] | None:
        """The answer of the first node that has a task publishing the port (host mode)."""
        script = (f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{self.port}{path}',"
                  "timeout=5).read().decode())")
        for server in self.servers:
            done = server.ssh("python3", "-c", script, check=False)
            if done.returncode == 0:
                return dict(json.loads(done.stdout))
        return None

    def remove(self) -> None:
        self.manager.ssh("docker", "stack", "rm", self.name, check=False, timeout=120)
        for server in self.servers:
            server.ssh("sh", "-c", f"for i in $(seq 50); do docker ps -q --filter label=com.docker.stack.namespace="
                       f"{self.name} | grep -q . || break; sleep 0.2; done; "
                       # by name: an image id would take the tags others share (the busybox image)
                       f"docker images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' --filter "
                       f"reference='surefoot.local/{self.name}/*' --filter reference='{self.name}*' "
                       "| xargs -r docker rmi; "
                       f"docker volume ls -q --filter label=com.docker.stack.namespace={self.name} "
                       "| xargs -r docker volume rm -f; "
                       f"rm -rf /var/lib/surefoot/{self.name}", check=False, timeout=120)


def _project(servers: list[Server], folder: Path, name: str, port: int) -> SwarmProject:
    project = SwarmProject(folder, name, port)
    project.servers = servers
    return project


def _cluster(servers: list[Server]) -> dict[str, str]:
    return {"manager": servers[0].alias, "ssh_config": str(servers[0].ssh_config),
            "nodes": ", ".join(f'"{s.alias}"' for s in servers[1:])}


@pytest.fixture
def stack(swarm: list[Server], tmp_path: Path) -> Iterator[SwarmProject]:
    name = f"sft-sw-{uuid.uuid4().hex[:8]}"
    project = _project(swarm, tmp_path / name, name, 18000 + int(uuid.uuid4().hex[:3], 16) % 1000)
    project.path.mkdir()
    project.write("compose.yaml", STACK.format(port=project.port, extra=""))
    project.write("web/Dockerfile", f"FROM surefoot-test/busybox:1\nRUN echo {name} > /built\n")
    project.write(".env", "GREETING=v1\n")
    project.write("surefoot.toml", CONFIG.format(name=name, **_cluster(swarm)))
    try:
        yield project
    finally:
        project.remove()


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout[-4000:] + result.stderr[-2000:]


# -- the example -----------------------------------------------------------------------
def test_the_example_runs_on_a_swarm_with_two_api_tasks(swarm: list[Server], tmp_path: Path) -> None:
    """The bundled example, adapted as a user would (compose.swarm.yaml: deploy sections,
    host-mode ports), built here and shipped to the nodes."""
    name = f"sft-swshop-{uuid.uuid4().hex[:6]}"
    shop = _project(swarm, tmp_path / "shop", name, 8080)
    shutil.copytree(REPO / "examples" / "shop", shop.path, ignore=shutil.ignore_patterns(".surefoot"))
    shop.write("surefoot.toml", f"""
[project]
name = "{name}"
compose_files = ["compose.yaml", "compose.swarm.yaml"]
env_file = ".env.production"

[phases.database-start]
services = ["db", "cache"]
timeout = "90s"

[phases.database-migrate]
service = "api"
command = ["python3", "/app/migrate.py"]
timeout = "2m"

[phases.health-wait]
url = "http://127.0.0.1:8080/health"
expect_body = '"status":"healthy"'
consecutive = 3
interval = "1s"
timeout = "2m"

[phases.verify]
urls = [{{ url = "http://127.0.0.1:8080/api/items", consecutive = 2, interval = "0.5s" }}]

[targets.cluster]
host = "{swarm[0].alias}"
ssh_config = "{swarm[0].ssh_config}"
engine = "swarm"
nodes = ["{swarm[1].alias}", "{swarm[2].alias}"]
build = "control"
""")
    try:
        result = shop.run("deploy", timeout=1200)
        assert result.returncode == 0, _ok(result)
        assert "applying migration" in result.stdout  # the migration task's log, streamed
        assert "swarm: pass (a manager; 3 node(s) ready" in result.stdout  # preflight
        services = shop.services()
        assert sorted(services) == ["api", "cache", "db", "proxy"]
        api = services["api"]
        for row in services.values():  # status --json's services: the keys, each row
            assert {"name", "image", "desired", "running", "update_state"} <= set(row)
        assert api["name"] == f"{name}_api" and api["update_state"] in (None, "completed")
        assert (api["desired"], api["running"]) == (2, 2)
        assert api["image"].startswith(f"surefoot.local/{name}/api:id-")
        assert len([t for t in api["tasks"] if t["state"] == "running"]) == 2
        assert services["proxy"]["desired"] == services["proxy"]["running"] == 3  # global: one a node
        nodes_of_db = {t["node"] for t in services["db"]["tasks"]}
        assert nodes_of_db == {"server-0"}  # placement: the manager
        assert shop.fetch() == {"status": "healthy", "database": "ok", "cache": "ok"}
        items = shop.fetch("/api/items")
        assert items is not None and [i["name"] for i in items["items"]] == ["tea", "coffee"]
        text = shop.run("status").stdout
        assert "services on the swarm:" in text and f"{name}_api: 2/2 running" in text
        # the release keeps the stack file it deployed: compose config's values, images pinned
        release = shop.status()["current_release"]
        stack_file = shop.path / ".surefoot" / "targets" / "cluster" / "releases" / str(release) / "stack.json"
        deployed = json.loads(stack_file.read_text())
        assert deployed["services"]["api"]["image"] == api["image"]
        assert deployed["services"]["api"]["environment"]["POSTGRES_USER"] == "shop"
        assert deployed["services"]["api"]["deploy"]["update_config"]["failure_action"] == "rollback"
        assert oct(stack_file.stat().st_mode & 0o777) == "0o600"
        # A one-line change of the API: each node receives its layer, not the image (issue 28).
        size = int(subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", f"{name}-api"],
                                  capture_output=True, text=True, check=True).stdout)
        code = shop.path / "api" / "app" / "server.py"
        code.write_text(code.read_text() + "# one more line\n")
        before = {node.alias: _received(node) for node in swarm}
        update = shop.run("deploy", timeout=1200)
        assert update.returncode == 0, _ok(update)
        for node in swarm:
            got = _received(node) - before[node.alias]
            assert got < size / 10, f"{node.alias} received {got / 1e6:.1f} MB of a {size / 1e6:.0f} MB image"
        assert re.search(r"1 of \d+ layer\(s\) to send", update.stdout), update.stdout[-3000:]
    finally:
        shop.remove()


def _received(server: Server) -> int:
    return int(server.exec("cat", "/sys/class/net/eth0/statistics/rx_bytes").stdout)


# -- a broken update ------------------------------------------------------------------------
def test_a_broken_update_brings_every_service_back_and_exits_4(stack: SwarmProject) -> None:
    first = stack.run("deploy", timeout=600)
    assert first.returncode == 0, _ok(first)
    assert stack.fetch() == {"status": "healthy", "greeting": "v1"}
    before = stack.services()
    stack.write(".env", "GREETING=broken\n")
    broken = stack.run("deploy", timeout=600)
    assert broken.returncode == 4, _ok(broken)
    assert "release 1 is running again" in broken.stdout + broken.stderr
    after = stack.services()
    for service in ("web", "worker"):  # both back: the worker's update was fine, it goes back too
        assert after[service]["image"] == before[service]["image"]
        assert "GREETING=v1" in stack.service_env(service), service
        assert after[service]["running"] == after[service]["desired"]
    assert stack.fetch() == {"status": "healthy", "greeting": "v1"}
    history = json.loads(stack.run("history", "--json").stdout)
    outcomes = {r["id"]: r["outcome"] for r in history["releases"]}
    assert outcomes == {1: "healthy", 2: "rolled-back"}

    # The same update with `docker stack deploy` alone: it exits 0, and the swarm rolls back
    # the web service only; the worker is left on the broken release.
    # (The same stack files, on another port: the two stacks' host-mode ports would collide.)
    plain = f"{stack.name}-plain"
    releases = stack.path / ".surefoot" / "targets" / "cluster" / "releases"
    try:
        for release in (1, 2):
            data = json.loads((releases / str(release) / "stack.json").read_text())
            data["services"]["web"]["ports"][0]["published"] = stack.port + 1
            path = f"/tmp/{plain}-{release}.json"
            subprocess.run(stack.manager.ssh_argv("sh", "-c", f"cat > {path}"), input=json.dumps(data),
                           text=True, check=True, timeout=60)
            done = stack.manager.ssh("docker", "stack", "deploy", "--resolve-image", "never", "-c", path, plain,
                                     check=False)
            assert done.returncode == 0, done.stderr
            if release == 1:
                _until(lambda: _replicas(stack.manager, f"{plain}_web") == "2/2", 60)
        _until(lambda: _update_state(stack.manager, f"{plain}_web").startswith("rollback"), 90)
        worker_env = stack.manager.ssh("docker", "service", "inspect", f"{plain}_worker", "--format",
                                       "{{json .Spec.TaskTemplate.ContainerSpec.Env}}").stdout
        assert "GREETING=broken" in worker_env  # half the stack on the broken release
    finally:
        stack.manager.ssh("docker", "stack", "rm", plain, check=False)


def _replicas(server: Server, service: str) -> str:
    return server.ssh("docker", "service", "ls", "--filter", f"name={service}", "--format", "{{.Replicas}}",
                      check=False).stdout.strip()


def _update_state(server: Server, service: str) -> str:
    return server.ssh("docker", "service", "inspect", service, "--format",
                      "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", check=False).stdout.strip()


def _until(condition: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.5)


# -- a task that cannot be placed -------------------------------------------------------------
def test_a_task_that_cannot_be_scheduled_fails_with_the_reason(stack: SwarmProject) -> None:
    stack.write("compose.yaml", STACK.format(port=stack.port, extra="""\
  nowhere:
    image: surefoot-test/busybox:1
    command: ["sleep", "3600"]
    deploy:
      endpoint_mode: dnsrr
      placement:
        constraints: ["node.labels.zone == mars"]
"""))
    result = stack.run("deploy", timeout=300)  # pending_timeout = 5s: it fails well before this
    assert result.returncode == 1, _ok(result)
    assert "nowhere: a task cannot be scheduled after 5s" in result.stdout
    assert "no suitable node" in result.stdout
    assert stack.phase("health-wait")["status"] == "failed"


# -- kill -9 mid-rollout ------------------------------------------------------------------------
def test_a_rollout_killed_with_sigkill_resumes_and_completes(stack: SwarmProject) -> None:
    first = stack.run("deploy", timeout=600)
    assert first.returncode == 0, _ok(first)
    stack.write(".env", "GREETING=v2\nWARMUP=4\n")
    proc = stack.start("deploy")
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "health-wait: started" in line:
            break
    else:
        pytest.fail("health-wait never started: " + "".join(seen[-30:]))
    time.sleep(1.0)  # the rolling update under way
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert stack.status()["state"] == "interrupted"  # running, its holder gone
    again = stack.run("deploy", timeout=600)
    assert again.returncode == 0, _ok(again)
    assert "resum" in again.stdout
    status = stack.status()
    assert status["state"] == "completed"
    web = stack.services()["web"]
    assert (web["running"], web["desired"]) == (2, 2)
    assert stack.fetch() == {"status": "healthy", "greeting": "v2"}
    assert "GREETING=v2" in stack.service_env("worker")

    # Releases past keeping (one kept, and the current one while the next deploys): their image
    # references go from the manager and the nodes.
    old = web["image"]
    stack.write("surefoot.toml", stack.path.joinpath("surefoot.toml").read_text() + "\n[rollback]\nkeep_releases = 1\n")
    for version in ("v3", "v4"):
        stack.write("web/Dockerfile", f"FROM surefoot-test/busybox:1\nRUN echo {stack.name} {version} > /built\n")
        again = stack.run("deploy", timeout=600)
        assert again.returncode == 0, _ok(again)
    assert "old image reference(s) untagged on the swarm" in again.stdout
    new = stack.services()["web"]["image"]
    assert new != old
    for server in stack.servers:
        refs = server.ssh("docker", "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        assert old not in refs and new in refs, (server.alias, refs)

    # `surefoot rollback`: the whole stack back to the release before (v3's image, v2's env)
    v3 = json.loads((stack.path / ".surefoot" / "targets" / "cluster" / "releases" / "3" / "stack.json").read_text())
    back = stack.run("rollback", "--yes", timeout=600)
    assert back.returncode == 0, _ok(back)
    services = stack.services()
    assert services["web"]["image"] == v3["services"]["web"]["image"] != new
    assert (services["web"]["running"], services["web"]["desired"]) == (2, 2)
    assert stack.status()["current_release"] == 3


# -- refused before anything changes ------------------------------------------------------------
def test_start_first_with_a_host_mode_port_is_refused_by_preflight(stack: SwarmProject) -> None:
    stack.write("compose.yaml", STACK.format(port=stack.port, extra="").replace(
        "update_config: {parallelism: 1, monitor: 2s}", "update_config: {parallelism: 1, order: start-first}"))
    result = stack.run("deploy", timeout=300)
    assert result.returncode == 1, _ok(result)
    assert "web: update_config.order start-first with the host-mode port" in result.stdout
    assert stack.phase("preflight")["status"] == "failed"
    listed = stack.manager.ssh("docker", "stack", "ls", "--format", "{{.Name}}").stdout.split()
    assert stack.name not in listed  # nothing deployed


# -- images through a registry -------------------------------------------------------------------
@pytest.fixture
def registry(swarm: list[Server], tmp_path: Path) -> Iterator[str]:
    """A registry every node reaches at the same loopback address (servers.loopback_registry)."""
    with loopback_registry(swarm, tmp_path, 15000 + int(uuid.uuid4().hex[:3], 16) % 1000) as address:
        yield f"{address}/sft"


def test_images_reach_unlisted_nodes_through_a_registry(stack: SwarmProject, registry: str) -> None:
    """build = "registry": built here, pushed, and every node pulls by digest (no node listed)."""
    stack.write("compose.yaml", STACK.format(port=stack.port, extra="").replace(
        "    image: surefoot-test/busybox:1\n", "    build: ./web\n"))  # the worker built too
    config = stack.path.joinpath("surefoot.toml").read_text()
    config = config.replace('nodes = [', f'build = "registry"\nregistry = "{registry}"\nnodes = [')
    stack.write("surefoot.toml", config.replace(f'"{stack.servers[1].alias}", "{stack.servers[2].alias}"', ""))
    result = stack.run("deploy", timeout=600)
    assert result.returncode == 0, _ok(result)
    assert "docker push" in result.stdout and "--with-registry-auth" in result.stdout
    assert "shipping" not in result.stdout  # nothing went through this machine to the nodes
    services = stack.services()
    assert services["web"]["image"].startswith(f"{registry}/{stack.name}-web@sha256:")
    assert (services["web"]["running"], services["web"]["desired"]) == (2, 2)
    nodes = {task["node"] for task in services["web"]["tasks"]} | {t["node"] for t in services["worker"]["tasks"]}
    assert nodes - {"server-0"}, "every task on the manager: the workers never pulled"
    assert stack.fetch() == {"status": "healthy", "greeting": "v1"}


# -- the migration ---------------------------------------------------------------------------------
def test_a_failing_migration_task_stops_the_deployment_with_its_exit_code(stack: SwarmProject) -> None:
    stack.write("surefoot.toml", stack.path.joinpath("surefoot.toml").read_text() + """
[phases.database-migrate]
service = "web"
command = ["sh", "-c", "echo migrating $GREETING; echo boom >&2; exit 3"]
timeout = "2m"
""")
    result = stack.run("deploy", timeout=300)
    assert result.returncode == 1, _ok(result)
    assert "migrating v1" in result.stdout and "boom" in result.stdout  # its log, streamed ($ reached the shell)
    assert "migration command exited with code 3" in result.stdout
    assert stack.phase("database-migrate")["status"] == "failed"
    assert stack.phase("services-start")["status"] == "pending"
    assert "web" not in stack.services()  # no application service was started
    left = stack.manager.ssh("docker", "service", "ls", "--format", "{{.Name}}").stdout.split()
    assert f"{stack.name}_surefoot-migrate" not in left  # the one-off task's service is gone
