"""Deploying to a server over SSH (issue 14), on real test servers: sshd and dockerd in
containers on the local engine (tests/servers.py), reached over real SSH.

The application's port is published on the server's loopback only: this machine cannot
reach it, so a passing health gate proves the probe went through the connection.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Project, free_port
from servers import Server, ServerPool, loopback_registry

pytestmark = pytest.mark.docker

COMPOSE = """
services:
  db:
    build: ./db
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
      - ./site/index.html:/www/index.html:ro
    command:
      - sh
      - -c
      - 'mkdir -p /srv && cp /www/index.html /srv/ && echo "{{\\"status\\":\\"healthy\\",\\"greeting\\":\\"$$GREETING\\"}}" > /srv/health && exec httpd -f -p 8000 -h /srv'
    ports: ["127.0.0.1:{port}:8000"]
"""

CONFIG = """
[project]
name = "{name}"
env_file = ".env"

[targets.web1]
host = "{alias}"
ssh_config = "{ssh_config}"

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
timeout = "60s"
"""


@pytest.fixture(scope="module")
def server(test_servers: ServerPool, busybox_image: str) -> Server:
    found = test_servers.server(0)
    found.load_image(busybox_image)
    return found


class RemoteProject(Project):
    server: Server

    def on_server(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.server.ssh(*command, check=check, timeout=120)

    def fetch(self, path: str) -> str:
        """GET a path of the app from inside the server (its port is on the server's loopback)."""
        script = f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{self.port}{path}',timeout=5).read().decode())"
        return self.on_server("python3", "-c", script).stdout.strip()

    def remote_teardown(self) -> None:
        folder = f"/var/lib/surefoot/{self.name}"
        self.server.ssh("sh", "-c", f"cd {folder} 2>/dev/null && docker compose -p {self.name} down -v "
                        f"--remove-orphans --rmi local -t 1; docker ps -aq --filter label=com.docker.compose.project="
                        f"{self.name} | xargs -r docker rm -f; rm -rf {folder}", check=False, timeout=120)


def make_project(server: Server, folder: Path, build_seconds: int = 0, greeting: str = "hello") -> RemoteProject:
    name = f"sft-r-{uuid.uuid4().hex[:8]}"
    port = free_port()
    project = RemoteProject(folder / name, name, port)
    project.server = server
    project.path.mkdir(parents=True)
    project.write("compose.yaml", COMPOSE.format(port=port))
    project.write("surefoot.toml", CONFIG.format(name=name, alias=server.alias, ssh_config=server.ssh_config,
                                                 port=port))
    project.write(".env", f"GREETING={greeting}\n")
    project.write("site/index.html", "<h1>one</h1>\n")
    slow = f"RUN sleep {build_seconds}\n" if build_seconds else ""
    for service in ("db", "web"):
        project.write(f"{service}/Dockerfile", f"FROM surefoot-test/busybox:1\nRUN echo {name} > /built\n{slow}")
    return project


@pytest.fixture
def remote(server: Server, tmp_path: Path) -> Iterator[RemoteProject]:
    project = make_project(server, tmp_path)
    try:
        yield project
    finally:
        project.remote_teardown()


def local_port_open(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_deploys_to_a_server_and_gates_its_health_through_the_connection(remote: RemoteProject) -> None:
    result = remote.run("deploy", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert not local_port_open(remote.port)  # the app's port is the server's, not ours
    assert json.loads(remote.fetch("/health"))["greeting"] == "hello"
    status = remote.status()
    assert status["state"] == "completed"
    assert status["target"]["name"] == "web1" and status["target"]["host"].startswith("ssh://")
    assert status["current_release"] == 1 and status["lock"] is None
    assert status["target"]["release"]["release"] == 1  # the record the server keeps
    # The files went to the project's folder there; the env file is private.
    folder = f"/var/lib/surefoot/{remote.name}"
    mode = remote.on_server("stat", "-c", "%a", f"{folder}/.env").stdout.strip()
    assert mode == "600"
    # The state store stays here, keyed by target.
    assert (remote.path / ".surefoot" / "targets" / "web1" / "state.db").is_file()
    assert not (remote.path / ".surefoot" / "state.db").exists()

    # An update: a changed bind-mounted file and env value reach the server; only they are sent.
    remote.write("site/index.html", "<h1>two</h1>\n")
    remote.write(".env", "GREETING=again\n")
    result = remote.run("deploy", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert remote.fetch("/index.html") == "<h1>two</h1>"
    assert json.loads(remote.fetch("/health"))["greeting"] == "again"
    history = json.loads(remote.run("history", "--json").stdout)
    assert [r["id"] for r in history["releases"]][:2] == [2, 1]

    # rollback restores release 1 on the server, from the release's own files.
    result = remote.run("rollback", "--yes", timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert json.loads(remote.fetch("/health"))["greeting"] == "hello"
    assert remote.status()["current_release"] == 1


def test_a_server_given_by_url_is_named_and_an_unreachable_one_is_said(remote: RemoteProject) -> None:
    """``--target ssh://...`` needs no declaration; ``status`` still answers from the local
    state when the server cannot be asked (here ssh knows no key for it), and says why."""
    url = f"ssh://root@127.0.0.1:{remote.server.port}"
    result = remote.run("--target", url, "status", "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["target"]["host"] == url and data["target"]["name"] == f"127.0.0.1-{remote.server.port}"
    assert any("cannot ask the server" in w for w in data["warnings"]), data["warnings"]


def test_an_unknown_host_key_is_refused_saying_what_to_do(remote: RemoteProject, tmp_path: Path) -> None:
    strict = tmp_path / "ssh_config"
    text = remote.server.ssh_config.read_text()
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    strict.write_text(text.replace(str(remote.server.ssh_config.parent / "known_hosts"), str(empty)))
    config = (remote.path / "surefoot.toml").read_text().replace(str(remote.server.ssh_config), str(strict))
    remote.write("surefoot.toml", config)
    result = remote.run("deploy", timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    message = result.stderr
    assert "host key" in message and "web1" in message
    assert "ssh-keyscan" in message or "known_hosts" in message  # what to do


def wait_for(predicate: Any, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def build_running_on_server(project: RemoteProject) -> bool:
    found = project.on_server("sh", "-c", "ps -eo args | grep -c '[s]leep 40' || true", check=False)
    return found.stdout.strip() not in ("", "0")


def test_kill_9_during_the_build_on_the_server_then_deploy_resumes(server: Server, tmp_path: Path) -> None:
    project = make_project(server, tmp_path, build_seconds=40)
    try:
        running = project.start("deploy", "--progress", "plain")
        wait_for(lambda: build_running_on_server(project), what="the build on the server")
        running.send_signal(signal.SIGKILL)
        running.wait(timeout=30)
        # The lock on the server is free at once: its holder ended with our connection.
        wait_for(lambda: project.status()["lock"] is None, timeout=10, what="the lock to be free")
        # and no build goes on there: it stopped with the connection.
        wait_for(lambda: not build_running_on_server(project), timeout=15, what="the build on the server to stop")
        status = project.status()
        assert status["state"] == "interrupted", status
        assert status["resume_at"] == "build"
        for service in ("db", "web"):  # make the resumed build quick
            project.write(f"{service}/Dockerfile", f"FROM surefoot-test/busybox:1\nRUN echo {project.name} > /built\n")
        result = project.run("deploy", timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        resumed = project.status()
        assert resumed["deployment"]["id"] == status["deployment"]["id"]  # the same deployment, resumed
        build = next(p for p in resumed["phases"] if p["name"] == "build")
        preflight = next(p for p in resumed["phases"] if p["name"] == "preflight")
        assert build["attempts"] == 2 and preflight["attempts"] == 1  # done phases were not run again
        assert json.loads(project.fetch("/health"))["status"] == "healthy"
    finally:
        project.remote_teardown()


def test_two_control_machines_one_server_exactly_one_deploys(server: Server, tmp_path: Path) -> None:
    project = make_project(server, tmp_path, build_seconds=40)
    # A second control machine: its own copy of the project and its own state.
    other = RemoteProject(tmp_path / "laptop2" / project.name, project.name, project.port)
    other.server = server
    subprocess.run(["cp", "-a", str(project.path), str(other.path.parent)], check=False)
    other.path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(project.path) + "/.", str(other.path)], check=True)
    try:
        first = project.start("deploy", "--progress", "plain")
        wait_for(lambda: build_running_on_server(project), what="the first deployment's build")
        second = other.run("deploy", timeout=120)
        assert second.returncode == 3, second.stdout + second.stderr
        assert "web1" in second.stderr and "pid" in second.stderr
        seen = other.status()
        assert seen["lock"] is not None and seen["lock"]["pid"] == first.pid
        out, _ = first.communicate(timeout=600)
        assert first.returncode == 0, out[-3000:]
        after = other.status()
        assert after["lock"] is None
        assert after["current_release"] == 1  # the release the server runs, told by the server
        # Its rollback knows no release of its own, and says what runs there and from where.
        refused = other.run("rollback", "--yes", timeout=120)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "web1 runs release 1" in refused.stderr and os.uname().nodename in refused.stderr
    finally:
        project.remote_teardown()


def second_control_machine(project: RemoteProject, tmp_path: Path) -> RemoteProject:
    """Another control machine: its own copy of the project and its own state."""
    other = RemoteProject(tmp_path / "laptop2" / project.name, project.name, project.port, dict(project.env))
    other.server = project.server
    other.path.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(project.path) + "/.", str(other.path)], check=True)
    shutil.rmtree(other.path / ".surefoot", ignore_errors=True)
    return other


def test_a_deployment_frozen_past_its_lock_changes_nothing_more_and_says_so(server: Server, tmp_path: Path) -> None:
    """A laptop that sleeps mid-deploy (here: SIGSTOP) past the lock's grace: the holder on the
    server lets go, the command it had running there is stopped, another control machine deploys;
    woken, the first changes nothing, exits 3 saying why, and resumes later."""
    project = make_project(server, tmp_path, build_seconds=40)
    project.env["SUREFOOT_LOCK_GRACE"] = "6"  # the holder gives up after 6 s without a heartbeat
    other = second_control_machine(project, tmp_path)
    other.write(".env", "GREETING=second\n")
    for service in ("db", "web"):  # its build is quick
        other.write(f"{service}/Dockerfile", f"FROM surefoot-test/busybox:1\nRUN echo {project.name} > /built\n")
    try:
        first = project.start("deploy", "--progress", "plain")
        wait_for(lambda: build_running_on_server(project), what="the first deployment's build")
        os.kill(first.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: other.status()["lock"] is None, timeout=30, what="the frozen deployment's lock to go")
            wait_for(lambda: not build_running_on_server(project), timeout=20,
                     what="the frozen deployment's build on the server to be stopped")
            second = other.run("deploy", timeout=600)
            assert second.returncode == 0, second.stdout[-3000:] + second.stderr
            web = project.on_server("docker", "ps", "-q", "--filter", f"name={project.name}-web").stdout.strip()
            assert web and json.loads(project.fetch("/health"))["greeting"] == "second"
        finally:
            os.kill(first.pid, signal.SIGCONT)
        out, _ = first.communicate(timeout=120)
        assert first.returncode == 3, out[-3000:]
        assert "lost the deployment lock on web1 after" in out and "`surefoot status`" in out, out[-2000:]
        assert "Traceback" not in out
        # it changed nothing there: the second's container still serves, untouched
        assert project.on_server("docker", "ps", "-q", "--filter", f"name={project.name}-web").stdout.strip() == web
        assert json.loads(project.fetch("/health"))["greeting"] == "second"
        status = project.status()
        assert status["state"] == "interrupted" and status["resume_at"] == "build", status
        for service in ("db", "web"):  # its checkpoints let a later deploy resume (quickly, now)
            project.write(f"{service}/Dockerfile", f"FROM surefoot-test/busybox:1\nRUN echo {project.name} > /built\n")
        resumed = project.run("deploy", timeout=600)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr
        assert json.loads(project.fetch("/health"))["greeting"] == "hello"
    finally:
        project.remote_teardown()


def test_a_dropped_connection_fails_clearly_and_deploy_resumes(server: Server, tmp_path: Path) -> None:
    project = make_project(server, tmp_path, build_seconds=40)
    try:
        running = project.start("deploy", "--progress", "plain")
        wait_for(lambda: build_running_on_server(project), what="the build on the server")
        # The network goes: every SSH session of the server ends (sshd itself, PID 1, stays).
        server.exec("pkill", "-f", "sshd: root", check=False)
        out, _ = running.communicate(timeout=120)
        assert running.returncode not in (0, None)
        assert "Traceback" not in out
        assert "connection" in out.lower() and "web1" in out, out[-2000:]
        for service in ("db", "web"):
            project.write(f"{service}/Dockerfile", f"FROM surefoot-test/busybox:1\nRUN echo {project.name} > /built\n")
        result = project.run("deploy", timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        assert json.loads(project.fetch("/health"))["status"] == "healthy"
    finally:
        project.remote_teardown()


def test_ctrl_c_stops_the_work_on_the_server(server: Server, tmp_path: Path) -> None:
    project = make_project(server, tmp_path, build_seconds=40)
    try:
        running = project.start("deploy", "--progress", "plain")
        wait_for(lambda: build_running_on_server(project), what="the build on the server")
        running.send_signal(signal.SIGINT)
        running.communicate(timeout=60)
        assert running.returncode == 130
        wait_for(lambda: not build_running_on_server(project), timeout=15, what="the build to stop")
        left = project.on_server("sh", "-c", "ps -eo args | grep -c '[d]ocker compose' || true", check=False)
        assert left.stdout.strip() == "0"
    finally:
        project.remote_teardown()


def test_secrets_from_the_server_s_env_file_are_masked_and_the_env_files_there_are_private(
        server: Server, tmp_path: Path) -> None:
    """A second control machine takes the env file from the server (another one configured it): a
    migration that prints the password shows it masked, in the output, the store and the logs. On
    the server, the env files are 0600, even in a folder made 0755 before."""
    project = make_project(server, tmp_path)
    password = "pw_" + uuid.uuid4().hex
    compose = (project.path / "compose.yaml").read_text().replace(
        "      GREETING: ${GREETING:?set GREETING}\n",
        "      GREETING: ${GREETING:?set GREETING}\n      DB_PASSWORD: ${DB_PASSWORD}\n"
        "    env_file: [web.env]\n    secrets: [s]\n") + "secrets:\n  s:\n    file: ./secret.txt\n"
    project.write("compose.yaml", compose)
    project.write(".env", f"GREETING=hello\nDB_PASSWORD={password}\n")
    project.write("web.env", "WEB_TOKEN=wt_" + uuid.uuid4().hex + "\n")
    project.write("secret.txt", "s3cret_" + uuid.uuid4().hex + "\n")
    for name in (".env", "web.env", "secret.txt"):
        (project.path / name).chmod(0o644)
    folder = f"/var/lib/surefoot/{project.name}"
    project.on_server("mkdir", "-m", "0755", "-p", folder)
    try:
        first = project.run("deploy", timeout=600)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr
        modes = project.on_server("stat", "-c", "%n %a", f"{folder}/.env", f"{folder}/web.env", f"{folder}/secret.txt")
        # env files 0600 (compose reads them); a secrets: file keeps its mode (a container's user
        # reads it through the bind mount, as it does on this machine)
        assert [line.split()[1] for line in modes.stdout.splitlines()] == ["600", "600", "644"], modes.stdout
        # what the server says is shown without its escape sequences
        record = json.loads(project.on_server("cat", f"{folder}/.surefoot/release.json").stdout)
        record["by"] = "eve\x1b]0;pwned\x07\x1b[2J"
        project.on_server("sh", "-c", 'printf %s "$2" > "$1"', "sh", f"{folder}/.surefoot/release.json",
                          json.dumps(record))
        shown = project.run("status", "--json")
        assert shown.returncode == 0 and json.loads(shown.stdout)["target"]["release"]["by"] == "eve"
        other = second_control_machine(project, tmp_path)
        (other.path / ".env").unlink()  # its operator never had it: the server's is used
        other.write("surefoot.toml", (other.path / "surefoot.toml").read_text()
                    + '\n[phases.database-migrate]\nservice = "web"\n'
                    + 'command = ["sh", "-c", "echo connecting with $DB_PASSWORD; exit 3"]\n')
        failed = other.run("deploy", timeout=600)
        assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr
        assert "connecting with ********" in failed.stdout + failed.stderr
        assert password not in failed.stdout + failed.stderr
        state = other.path / ".surefoot"
        leaked = [path for path in state.rglob("*") if path.is_file() and password.encode() in path.read_bytes()
                  and "releases" not in path.parts]
        assert leaked == [] and (state / "targets" / "web1" / "state.db").is_file()
    finally:
        project.remote_teardown()


TWENTY = "services:\n" + "".join(
    f"""  s{i}:
    image: surefoot-test/busybox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
""" for i in range(20))


def test_twenty_services_deploy_over_ssh(server: Server, tmp_path: Path) -> None:
    name = f"sft-r-{uuid.uuid4().hex[:8]}"
    project = RemoteProject(tmp_path / name, name, free_port())
    project.server = server
    project.path.mkdir()
    project.write("compose.yaml", TWENTY)
    project.write("surefoot.toml", f'[project]\nname = "{name}"\n\n[targets.web1]\nhost = "{server.alias}"\n'
                                   f'ssh_config = "{server.ssh_config}"\n\n[phases.pull-images]\nenabled = false\n')
    try:
        result = project.run("deploy", "--non-interactive", timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        running = project.on_server("docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={name}",
                                    "--filter", "status=running").stdout.split()
        assert len(running) == 20
    finally:
        project.remote_teardown()


def test_hooks_run_on_the_control_machine_unless_told_otherwise(remote: RemoteProject, tmp_path: Path) -> None:
    here = tmp_path / "hook-ran-here"
    config = (remote.path / "surefoot.toml").read_text()
    config += (f'\n[hooks.build]\nafter = [["sh", "-c", "hostname > {here}"]]\n'
               f'\n[hooks.services-start]\non = "target"\nafter = [["sh", "-c", "hostname > /tmp/{remote.name}-hook"]]\n')
    remote.write("surefoot.toml", config)
    result = remote.run("deploy", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert here.read_text().strip() == os.uname().nodename
    there = remote.on_server("cat", f"/tmp/{remote.name}-hook").stdout.strip()
    assert there and there != os.uname().nodename


def test_status_help_paths_need_no_connection_when_local(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    result = subprocess.run([sys.executable, "-m", "surefoot", "-C", str(tmp_path), "status", "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["target"] == {"name": "local", "host": "local"}


@pytest.fixture
def remote_shop(server: Server, tmp_path: Path) -> Iterator[RemoteProject]:
    """The bundled example, as a user points it at a server: its images built here and shipped
    (``build = "control"``: the server needs no registry and no network)."""
    import shutil

    from conftest import REPO

    name = f"sft-rshop-{uuid.uuid4().hex[:8]}"
    project = RemoteProject(tmp_path / "shop", name, free_port())
    project.server = server
    shutil.copytree(REPO / "examples" / "shop", project.path, ignore=shutil.ignore_patterns(".surefoot"))
    config = (project.path / "surefoot.toml").read_text()
    config = config.replace('name = "shop"', f'name = "{name}"').replace("127.0.0.1:8080", f"127.0.0.1:{project.port}")
    config += f'\n[targets.web1]\nhost = "{server.alias}"\nssh_config = "{server.ssh_config}"\nbuild = "control"\n'
    project.write("surefoot.toml", config)
    env = (project.path / ".env.production").read_text().replace("HTTP_PORT=8080", f"HTTP_PORT={project.port}")
    project.write(".env.production", env)
    try:
        yield project
    finally:
        project.remote_teardown()
        local = subprocess.run(["docker", "image", "ls", "-q", "--filter", f"reference={name}-*"],
                               capture_output=True, text=True).stdout.split()
        if local:  # the images built here for the server
            subprocess.run(["docker", "image", "rm", "-f", *local], capture_output=True)


@pytest.mark.example
def test_the_example_deploys_to_a_server_with_its_gate_through_the_connection(remote_shop: RemoteProject) -> None:
    result = remote_shop.run("deploy", "--non-interactive", timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert "shipping" in result.stdout  # built here, shipped there (no registry)
    assert not local_port_open(remote_shop.port)  # the gate and verify went through the connection
    health = json.loads(remote_shop.fetch("/health"))
    assert health == {"status": "healthy", "database": "ok", "cache": "ok"}
    status = remote_shop.status()
    assert status["state"] == "completed" and status["current_release"] == 1
    assert {p["name"]: p["status"] for p in status["phases"]}["verify"] == "completed"
    # The migration's backup came back to this machine (the state store stays here).
    backups = list((remote_shop.path / ".surefoot" / "targets" / "web1").rglob("*backup*"))
    assert backups, "no database backup kept here"
    verified = remote_shop.run("verify", timeout=300)  # on demand, against the server's stack
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr
    listed = remote_shop.run("prerequisites", "--dry-run", timeout=300)  # measured on the server
    assert listed.returncode == 0, listed.stdout[-2000:] + listed.stderr
    # An update that changes nothing ships nothing: the server has every image id already.
    again = remote_shop.run("deploy", "--non-interactive", timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    # Secrets never reach the logs surefoot wrote here.
    for log in (remote_shop.path / ".surefoot").rglob("*.log"):
        assert "example-db-password-change-me" not in log.read_text()


@pytest.fixture
def registry(server: Server, tmp_path: Path) -> Iterator[str]:
    """A registry this machine and the server reach at the same loopback address
    (servers.loopback_registry)."""
    with loopback_registry([server], tmp_path, free_port()) as address:
        yield f"{address}/sft"


def test_images_go_through_a_registry_the_user_names(remote: RemoteProject, registry: str) -> None:
    config = (remote.path / "surefoot.toml").read_text().replace(
        f'ssh_config = "{remote.server.ssh_config}"\n',
        f'ssh_config = "{remote.server.ssh_config}"\nbuild = "registry"\nregistry = "{registry}"\n', 1)
    remote.write("surefoot.toml", config)
    result = remote.run("deploy", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "docker push" in result.stdout and "docker pull" in result.stdout
    host = registry.split("/")[0]
    import urllib.request

    with urllib.request.urlopen(f"http://{host}/v2/_catalog", timeout=10) as answer:
        catalog = json.loads(answer.read())["repositories"]
    assert f"sft/{remote.name}-web" in catalog
    assert json.loads(remote.fetch("/health"))["greeting"] == "hello"
    again = remote.run("deploy", timeout=600)  # nothing rebuilt: nothing pushed or pulled
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert "docker push" not in again.stdout and "already on" in again.stdout
    subprocess.run(["sh", "-c", f"docker images -q '{host}/sft/{remote.name}-*' | xargs -r docker rmi -f"],
                   capture_output=True)


# A bounded client loop run inside the server (the proxy's port is on the server's loopback):
# about 50 requests a second, at most 2,000, until the stop file appears; prints "ok failed"
# and each version that answered, in order.
CLIENT_LOOP = """import os, sys, time, urllib.request
url, stop = sys.argv[1], sys.argv[2]
ok = failed = 0
seen = []
end = time.monotonic() + 60
while ok + failed < 2000 and time.monotonic() < end and not os.path.exists(stop):
    began = time.monotonic()
    try:
        body = urllib.request.urlopen(url, timeout=10).read().decode().strip()
        ok += 1
        version = body.split(" from ")[0]
        if version not in seen:
            seen.append(version)
    except Exception:
        failed += 1
    time.sleep(max(0.0, 0.02 - (time.monotonic() - began)))
print(ok, failed, "|".join(seen), "stopped" if os.path.exists(stop) else "ran out", sep="\\t")
"""


def update_under_load(project: RemoteProject, server: Server, stop: str) -> subprocess.CompletedProcess[str]:
    """VERSION 2 deployed while CLIENT_LOOP, inside the server, requests the published port: the
    deployment succeeds, no request fails and version 2 answers last."""
    project.write(".env", "VERSION=2\n")
    loop = subprocess.Popen(server.ssh_argv("python3", "-c", CLIENT_LOOP, f"http://127.0.0.1:{project.port}/",
                                            stop), stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        update = project.run("deploy", timeout=600)
        time.sleep(1)
    finally:
        server.ssh("touch", stop, check=False)
        counted, _ = loop.communicate(timeout=120)
    assert update.returncode == 0, update.stdout[-3000:] + update.stderr
    ok, failed, versions, how = counted.strip().split("\t")
    assert how == "stopped", "the client loop ended before the deployment: the test proves nothing"
    assert int(failed) == 0 and int(ok) > 50, counted
    assert versions.split("|")[-1] == "version 2", counted
    return update


def test_a_zero_downtime_update_on_a_server_loses_no_request(server: Server, tmp_path: Path) -> None:
    """Issue 26 on a server over SSH: the switch (and its steering) runs there; a proxy without
    retries that resolves the service on every request sees no failure."""
    from zdt_stack import APP, PLAIN_COMPOSE, PROXY, ZDT_CONFIG, ZERO_DOWNTIME, ensure_python_image

    server.load_image(ensure_python_image())
    name = f"sft-rz-{uuid.uuid4().hex[:8]}"
    project = RemoteProject(tmp_path / name, name, free_port())
    project.server = server
    project.path.mkdir(parents=True)
    project.write("compose.yaml", PLAIN_COMPOSE.format(python="surefoot-test/python:1", port=project.port))
    project.write(".env", "VERSION=1\n")
    project.write("app.py", APP)
    project.write("proxy.py", PROXY)
    project.write("surefoot.toml", ZDT_CONFIG.format(name=name, port=project.port) + ZERO_DOWNTIME
                  + f'\n[targets.web1]\nhost = "{server.alias}"\nssh_config = "{server.ssh_config}"\n')
    stop = f"/tmp/{name}.stop"
    try:
        first = project.run("deploy", timeout=600)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr
        update = update_under_load(project, server, stop)
        assert "new connections to" in update.stdout  # steered there, on the server
    finally:
        server.ssh("rm", "-f", stop, check=False)
        project.remote_teardown()


def test_the_edge_holds_the_ports_on_a_server_and_an_update_loses_no_request(server: Server, tmp_path: Path) -> None:
    """Issue 27 on a server over SSH: the edge runs there, holds the published ports, and an
    update of the services behind it loses nothing (the client loop runs inside the server)."""
    from zdt_stack import APP, ECHO, EDGE_COMPOSE, EDGE_CONFIG, ensure_haproxy_image, ensure_python_image

    server.load_image(ensure_python_image())
    server.load_image(ensure_haproxy_image())
    name = f"sft-re-{uuid.uuid4().hex[:8]}"
    project = RemoteProject(tmp_path / name, name, free_port())
    project.server = server
    project.path.mkdir(parents=True)
    project.write("compose.yaml", EDGE_COMPOSE.format(python="surefoot-test/python:1", port=project.port,
                                                      echo_port=free_port()))
    project.write(".env", "VERSION=1\n")
    project.write("app.py", APP)
    project.write("echo.py", ECHO)
    project.write("surefoot.toml", EDGE_CONFIG.format(name=name, port=project.port, drain="2s",
                                                      haproxy="surefoot-test/haproxy:1")
                  + f'\n[targets.web1]\nhost = "{server.alias}"\nssh_config = "{server.ssh_config}"\n')
    stop = f"/tmp/{name}.stop"
    try:
        first = project.run("deploy", timeout=600)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr
        assert project.status()["edge"]["ports"][0].endswith("->api:8000")
        assert project.on_server("docker", "ps", "--filter", f"name={name}-edge", "-q").stdout.strip()
        update = update_under_load(project, server, stop)
        assert "api: the edge sends new connections to" in update.stdout
    finally:
        server.ssh("rm", "-f", stop, check=False)
        server.ssh("docker", "rm", "-f", f"{name}-edge", check=False)
        project.remote_teardown()
