"""Several servers, rolled out in batches (issue 15), on three real test servers.

The stack is the same everywhere; what differs is a file on one server (``/srv/flag/broken``,
bind-mounted): the web service of release "v2" refuses to start where it is present, so a
release can be healthy on web1 and broken on web2, as when a server's env or files differ.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Project, free_port
from servers import Server, ServerPool

pytestmark = pytest.mark.docker

COMPOSE = """
services:
  db:
    image: surefoot-test/busybox:1
    command: ["sh", "-c", "touch /tmp/ready; exec sleep 3600"]
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
  web:
    build: ./web
    stop_signal: SIGKILL
    environment:
      GREETING: ${{GREETING:?set GREETING}}
    volumes:
      - /srv/flag:/flag:ro
    command:
      - sh
      - -c
      - 'if [ "$$GREETING" = v2 ] && [ -f /flag/broken ]; then echo broken here; exit 1; fi; if [ "$$GREETING" = v2 ] && [ -f /flag/slow ]; then sleep 12; fi; mkdir -p /srv && echo "{{\\"status\\":\\"healthy\\",\\"greeting\\":\\"$$GREETING\\"}}" > /srv/health && exec httpd -f -p 8000 -h /srv'
    ports: ["127.0.0.1:{port}:8000"]
"""

CONFIG = """
[project]
name = "{name}"
env_file = ".env"

[rollout]
batch = 1
on_failure = "{on_failure}"

[phases.pull-images]
enabled = false

[phases.database-start]
services = ["db"]
timeout = "60s"

[phases.health-wait]
url = "http://127.0.0.1:{port}/health"
expect_body = '"status":"healthy"'
consecutive = 2
interval = "0.3s"
timeout = "20s"
"""


@pytest.fixture(scope="module")
def servers(test_servers: ServerPool, busybox_image: str) -> list[Server]:
    started = test_servers.start(3)
    for server in started:
        server.load_image(busybox_image)
        server.ssh("mkdir", "-p", "/srv/flag")
    return started


class Fleet(Project):
    servers: list[Server]

    def fetch(self, server: Server) -> dict[str, Any] | None:
        script = (f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{self.port}/health',"
                  "timeout=5).read().decode())")
        done = server.ssh("python3", "-c", script, check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def web_container(self, server: Server) -> str:
        return server.ssh("docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={self.name}",
                          "--filter", "label=com.docker.compose.service=web").stdout.strip()

    def targets(self) -> dict[str, dict[str, Any]]:
        return {t["name"]: t for t in self.status()["targets"]}


@pytest.fixture
def fleet(servers: list[Server], tmp_path: Path) -> Iterator[Fleet]:
    name = f"sft-f-{uuid.uuid4().hex[:8]}"
    project = Fleet(tmp_path / name, name, free_port())
    project.servers = servers
    project.path.mkdir()
    project.write("compose.yaml", COMPOSE.format(port=project.port))
    config = CONFIG.format(name=name, port=project.port, on_failure="rollback")
    for index, server in enumerate(servers):
        config += f'\n[targets.web{index + 1}]\nhost = "{server.alias}"\nssh_config = "{server.ssh_config}"\n'
    project.write("surefoot.toml", config)
    project.write(".env", "GREETING=v1\n")
    project.write("web/Dockerfile", f"FROM surefoot-test/busybox:1\nRUN echo {name} > /built\n")
    try:
        yield project
    finally:
        for server in servers:
            server.ssh("rm", "-f", "/srv/flag/broken", "/srv/flag/slow", "/srv/flag/migrations", check=False)
            folder = f"/var/lib/surefoot/{name}"
            server.ssh("sh", "-c", f"docker ps -aq --filter label=com.docker.compose.project={name} | xargs -r docker rm -f;"
                       f" docker images -q --filter reference='{name}*' | xargs -r docker rmi -f; rm -rf {folder}",
                       check=False, timeout=120)


def test_a_good_release_reaches_every_target_each_behind_its_gate(fleet: Fleet) -> None:
    result = fleet.run("deploy", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "every target (3) is healthy on the new release" in result.stdout
    targets = fleet.targets()
    assert sorted(targets) == ["web1", "web2", "web3"]
    for name, server in zip(["web1", "web2", "web3"], fleet.servers, strict=True):
        assert targets[name]["state"] == "completed" and targets[name]["current_release"] is not None
        assert targets[name]["host"].startswith("ssh://") and targets[name]["lock"] is None
        assert targets[name]["resume_at"] is None
        assert [p["status"] for p in targets[name]["phases"] if p["name"] == "health-wait"] == ["completed"]
        assert fleet.fetch(server) == {"status": "healthy", "greeting": "v1"}
    assert fleet.status()["rollout"]["state"] == "completed"
    # history: one rollout, three healthy targets
    history = json.loads(fleet.run("history", "--json").stdout)["rollouts"]
    assert len(history) == 1 and history[0]["outcome"] == "completed"
    assert {name: t["state"] for name, t in history[0]["targets"].items()} == dict.fromkeys(
        ("web1", "web2", "web3"), "completed")
    assert all(t["release"] for t in history[0]["targets"].values())
    # The table: one line a target.
    table = fleet.run("status").stdout
    assert all(name in table for name in ("web1", "web2", "web3"))


def test_a_release_broken_on_web2_goes_back_everywhere_and_web3_is_never_touched(fleet: Fleet) -> None:
    first = fleet.run("deploy", timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    _, web2, web3 = fleet.servers
    before = {name: t["current_release"] for name, t in fleet.targets().items()}
    web3_container = fleet.web_container(web3)
    web2.ssh("touch", "/srv/flag/broken")
    fleet.write(".env", "GREETING=v2\n")
    result = fleet.run("deploy", timeout=600)
    assert result.returncode == 4, result.stdout[-3000:] + result.stderr
    assert "web2" in result.stderr and "back on its previous release" in result.stderr
    # Every target answers with the previous release.
    for server in fleet.servers:
        assert fleet.fetch(server) == {"status": "healthy", "greeting": "v1"}
    after = fleet.targets()
    assert {name: t["current_release"] for name, t in after.items()} == before
    # web3's running stack was never touched: its web container is the same one.
    assert fleet.web_container(web3) == web3_container


def test_halt_stops_where_it_is_and_deploy_goes_on_from_the_failed_target(fleet: Fleet) -> None:
    first = fleet.run("deploy", timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    config = (fleet.path / "surefoot.toml").read_text().replace('on_failure = "rollback"', 'on_failure = "halt"')
    fleet.write("surefoot.toml", config)
    web1, web2, web3 = fleet.servers
    web2.ssh("touch", "/srv/flag/broken")
    fleet.write(".env", "GREETING=v2\n")
    halted = fleet.run("deploy", timeout=600)
    assert halted.returncode == 1, halted.stdout[-3000:] + halted.stderr
    assert "halted" in halted.stderr
    assert fleet.fetch(web1) == {"status": "healthy", "greeting": "v2"}  # done, left as it is
    assert fleet.fetch(web3) == {"status": "healthy", "greeting": "v1"}  # not reached
    web1_deployment = fleet.targets()["web1"]["deployment"]["id"]
    web2.ssh("rm", "-f", "/srv/flag/broken")  # the fix
    resumed = fleet.run("deploy", timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr
    for server in fleet.servers:
        assert fleet.fetch(server) == {"status": "healthy", "greeting": "v2"}
    assert fleet.targets()["web1"]["deployment"]["id"] == web1_deployment  # not deployed again


def test_a_target_locked_by_another_deployment_stops_the_rollout_before_any_change(fleet: Fleet) -> None:
    from surefoot.config.address import parse_target
    from surefoot.hosts.ssh.connection import SshConnection
    from surefoot.hosts.ssh.lock import RemoteLock

    web3 = fleet.servers[2]
    with SshConnection(parse_target(web3.alias, ssh_config=web3.ssh_config)) as conn, \
            RemoteLock(conn, f"/var/lib/surefoot/{fleet.name}", label="web3", host="other-laptop", pid=4242):
        result = fleet.run("deploy", timeout=300)
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr
    assert "web3" in result.stderr and "other-laptop" in result.stderr and "nothing was changed" in result.stderr
    assert all(t["deployment"] is None for t in fleet.targets().values())  # no target was even prepared


def test_a_target_that_does_not_answer_fails_the_rollout_before_any_change(fleet: Fleet) -> None:
    config = (fleet.path / "surefoot.toml").read_text()
    config += f'\n[targets.gone]\nhost = "ssh://root@127.0.0.1:{free_port()}"\n'
    fleet.write("surefoot.toml", config)
    result = fleet.run("deploy", timeout=300)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "gone" in result.stderr and "nothing was changed" in result.stderr
    assert all(t["deployment"] is None for name, t in fleet.targets().items() if name != "gone")


def test_kill_9_during_the_second_target_then_deploy_goes_on_without_redeploying_the_first(fleet: Fleet) -> None:
    import signal
    import time

    first = fleet.run("deploy", timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    web2 = fleet.servers[1]
    web2.ssh("touch", "/srv/flag/slow")  # its v2 takes 12 s to answer: the kill lands there
    fleet.write(".env", "GREETING=v2\n")
    running = fleet.start("deploy")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        phases = {p["name"]: p["status"] for p in fleet.targets()["web2"]["phases"]}
        if phases.get("health-wait") == "running":
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"web2 never reached health-wait: {fleet.targets()['web2']}")
    web1_deployment = fleet.targets()["web1"]["deployment"]["id"]
    running.send_signal(signal.SIGKILL)
    running.wait(timeout=30)
    assert fleet.fetch(fleet.servers[0]) == {"status": "healthy", "greeting": "v2"}
    resumed = fleet.run("deploy", timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr
    for server in fleet.servers:
        assert fleet.fetch(server) == {"status": "healthy", "greeting": "v2"}
    assert fleet.targets()["web1"]["deployment"]["id"] == web1_deployment  # not redeployed


def test_a_paused_target_stops_the_rollout_before_any_change(fleet: Fleet) -> None:
    import subprocess

    web2 = fleet.servers[1]
    subprocess.run(["docker", "pause", web2.container], check=True, capture_output=True)
    try:
        result = fleet.run("deploy", timeout=300)
    finally:
        subprocess.run(["docker", "unpause", web2.container], check=True, capture_output=True)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "web2" in result.stderr and "nothing was changed" in result.stderr
    assert all(t["deployment"] is None for t in fleet.targets().values())


SPLIT_COMPOSE = """
services:
  db:
    image: surefoot-test/busybox:1
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && touch /tmp/ready && exec httpd -f -p 7000 -h /www"]
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
    ports: ["7000:7000"]
  web:
    image: surefoot-test/busybox:1
    stop_signal: SIGKILL
    depends_on:
      db:
        condition: service_healthy
    environment:
      DB_HOST: ${{DB_HOST:?set DB_HOST}}
    volumes:
      - /srv/flag:/flag
    command:
      - sh
      - -c
      - 'wget -qO- http://$$DB_HOST:7000/ > /tmp/db || exit 1; mkdir -p /srv && echo "{{\\"status\\":\\"healthy\\",\\"database\\":\\"$$(cat /tmp/db)\\"}}" > /srv/health && exec httpd -f -p 8000 -h /srv'
    ports: ["127.0.0.1:{port}:8000"]
"""


def test_the_databases_run_on_their_own_target_and_the_migration_runs_once(fleet: Fleet) -> None:
    import subprocess

    web1, web2, db = fleet.servers
    address = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                              db.container], capture_output=True, text=True, check=True).stdout.strip()
    fleet.write("compose.yaml", SPLIT_COMPOSE.format(port=fleet.port))
    fleet.write(".env", f"DB_HOST={address}\n")  # where the web targets reach the database, as a user writes it
    config = (fleet.path / "surefoot.toml").read_text()
    config = config.replace("[targets.web3]", "[targets.db]").replace(
        f'host = "{db.alias}"\n', f'host = "{db.alias}"\nservices = ["db"]\n')
    config += ('\n[phases.database-migrate]\nservice = "web"\n'
               'command = ["sh", "-c", "wget -qO- http://$DB_HOST:7000/ && date >> /flag/migrations"]\n')
    fleet.write("surefoot.toml", config)
    result = fleet.run("deploy", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr

    def running(server: Server, service: str) -> int:
        return len(server.ssh("docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={fleet.name}",
                              "--filter", f"label=com.docker.compose.service={service}").stdout.split())

    assert [running(s, "db") for s in (web1, web2, db)] == [0, 0, 1]  # the database only there
    assert [running(s, "web") for s in (web1, web2, db)] == [1, 1, 0]
    for server in (web1, web2):  # and the web targets reach it
        assert fleet.fetch(server) == {"status": "healthy", "database": "ok"}
    migrations = sum(len(s.ssh("sh", "-c", "cat /srv/flag/migrations 2>/dev/null || true").stdout.split("\n")) - 1
                     for s in (web1, web2))
    assert migrations == 1  # once for the release, not once a web target
    targets = fleet.targets()
    skipped = {name: {p["name"]: p["status"] for p in t["phases"]} for name, t in targets.items()}
    assert skipped["db"]["health-wait"] == "skipped"  # its probe is the web's, on the web targets


def test_a_target_that_stops_answering_mid_rollout_fails_and_the_others_go_back(fleet: Fleet) -> None:
    import subprocess
    import time

    first = fleet.run("deploy", timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    web1, web2, web3 = fleet.servers
    web2.ssh("touch", "/srv/flag/slow")  # its v2 takes 12 s to answer: it stops answering meanwhile
    fleet.write(".env", "GREETING=v2\n")
    running = fleet.start("deploy")
    deadline = time.monotonic() + 300
    while True:
        phases = {p["name"]: p["status"] for p in fleet.targets()["web2"]["phases"]}
        if phases.get("health-wait") == "running":
            break
        if time.monotonic() > deadline or running.poll() is not None:
            running.kill()
            pytest.fail(f"web2 never reached health-wait: {phases}")
        time.sleep(0.5)
    subprocess.run(["docker", "pause", web2.container], check=True, capture_output=True)
    try:
        out, _ = running.communicate(timeout=400)
    finally:
        subprocess.run(["docker", "unpause", web2.container], check=True, capture_output=True)
    # web2 cannot be brought back while it does not answer: the rollout failed (web1 went back)
    assert running.returncode == 1, out[-3000:]
    assert "Traceback" not in out and "web2" in out
    assert fleet.fetch(web1) == {"status": "healthy", "greeting": "v1"}  # went back
    assert fleet.fetch(web3) == {"status": "healthy", "greeting": "v1"}  # never touched
