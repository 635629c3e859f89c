"""prerequisites: install and start what the host lacks (Docker, compose v2, the daemon, the
docker group, UFW, fail2ban) with the host's own tools. The plan is data
(:mod:`surefoot.hosts.prereqs`); every observation and change goes through ``ctx.host``, and
what needs root through ``ctx.host.as_root()`` (root itself, or ``sudo -n``)."""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
from pathlib import Path

from surefoot.base.errors import CommandNotFound, ConfigError, PhaseFailed
from surefoot.deploy.api import DockerReport, PhaseContext, PhaseResult, done
from surefoot.deploy.phases.preflight import inspect_docker, require_docker
from surefoot.hosts import checks, prereqs
from surefoot.hosts.access import SUDO
from surefoot.hosts.base import Host

DPKG_LOCK = "/var/lib/dpkg/lock-frontend"
DPKG_UPDATES = "/var/lib/dpkg/updates"
DOCKERD_LOG = "/var/log/dockerd.log"
DOCKERD_PID_FILES = ("/var/run/docker.pid", "/var/run/docker/containerd/containerd.pid")


def observe(ctx: PhaseContext, docker: DockerReport) -> prereqs.Machine:
    settings = ctx.settings.phases.prerequisites
    host = ctx.host
    found = host.access()
    remote = ctx.control is not None and ctx.control is not host
    user = (os.environ.get("SUDO_USER") if not remote else None) or found.user or None
    ufw_active = False
    if settings.firewall and host.which("ufw"):
        root = host.as_root()
        status = root.run(["ufw", "status"], timeout=30) if root is not None else None
        ufw_active = status is not None and "Status: active" in status.stdout
    os_id, os_version = checks.os_release(host)
    return prereqs.Machine(
        os_id=os_id,
        os_version=os_version,
        is_root=found.root,
        user=user,
        has_dockerd=docker.server_version is not None or host.which("dockerd"),
        daemon_running=docker.server_version is not None,
        compose_v2=docker.compose_version is not None or _plugin_without_cli(host),
        user_in_docker_group=_in_docker_group(host, user),
        has_systemd=host.exists("/run/systemd/system") and host.which("systemctl"),
        ufw_active=ufw_active,
        fail2ban_configured=host.exists(str(prereqs.JAIL_LOCAL)),
        has_venv=_succeeds(host, ["python3", "-c", "import ensurepip, venv"]),
        dpkg_interrupted=_dpkg_interrupted(host),
        ssh_port=found.ssh_port,
        published=_published(ctx),
        control_plugin=_control_plugin(found.platform) if remote else None,
    )


def _succeeds(host: Host, argv: list[str]) -> bool:
    try:
        return host.run(argv, timeout=30).returncode == 0
    except CommandNotFound:
        return False


def _dpkg_interrupted(host: Host) -> bool:
    """An apt run was cut while dpkg worked: its journal (``/var/lib/dpkg/updates``) is not
    empty, or ``dpkg --audit`` names packages left unpacked or half-installed."""
    try:
        listed = host.run(["ls", "-A", DPKG_UPDATES], timeout=30)
        if listed.returncode == 0 and listed.stdout.strip():
            return True
        return bool(host.run(["dpkg", "--audit"], timeout=60).stdout.strip())
    except CommandNotFound:
        return False


def _in_docker_group(host: Host, user: str | None) -> bool:
    """Whether ``user`` is in the docker group (``id -nG USER``: the group database, which a
    ``usermod`` changes at once, unlike the groups of a session already open)."""
    if user is None or user == "root":
        return True
    try:
        result = host.run(["id", "-nG", user], timeout=30)
    except CommandNotFound:
        return False
    return result.returncode == 0 and "docker" in result.stdout.split()


def _plugin_without_cli(host: Host) -> bool:
    """A compose v2 plugin in place while the docker CLI is not (removing docker.io removes the
    CLI that runs it): the plugin itself is asked."""
    if host.which("docker"):
        return False
    for folder in prereqs.PLUGIN_FOLDERS:
        path = f"{folder}/docker-compose"
        if not host.exists(path):
            continue
        with contextlib.suppress(CommandNotFound):
            answer = host.run([path, "version", "--short"], timeout=30)
            if answer.returncode == 0 and answer.stdout.strip().lstrip("v")[:1] in "23456789":
                return True
    return False


def _published(ctx: PhaseContext) -> tuple[int, ...]:
    """The ports the project publishes on every address (the firewall lets them in); none when
    the compose files cannot be read yet (configuration writes the env file later)."""
    try:
        ports = ctx.facts.model().published_ports()
    except (PhaseFailed, ConfigError):
        return ()
    return tuple(sorted({port for address, port in ports if address in ("", "0.0.0.0", "::")}))


def _control_plugin(server_platform: str) -> str | None:
    """This machine's compose v2 binary, when the server runs the same OS on the same CPU."""
    here = f"{platform.system()} {platform.machine()}"
    if server_platform != here:
        return None
    folders = [*prereqs.PLUGIN_FOLDERS, str(Path.home() / ".docker" / "cli-plugins")]
    for folder in folders:
        path = Path(folder) / "docker-compose"
        try:
            with path.open("rb") as binary:
                if prereqs.is_elf(binary.read(4)):
                    return str(path.resolve())
        except OSError:
            continue
    return None


def prerequisites(ctx: PhaseContext) -> PhaseResult:
    """Install and start what is missing: each step checks first, so a re-run changes nothing."""
    settings = ctx.settings.phases.prerequisites
    machine = observe(ctx, inspect_docker(ctx))
    steps = prereqs.plan_steps(machine, settings)
    todo = [step for step in steps if not step.done]
    found = ctx.host.access()
    prefix = () if found.root else (found.elevate or SUDO)
    where = ctx.where
    for step in steps:
        ctx.out(f"{step.name}: {'in place' if step.done else 'missing'}: {step.description}")
    if ctx.dry_run:
        for step in todo:
            for line in prereqs.describe_changes(step, prefix):
                ctx.out(f"would run on {where} ({step.name}): {line}")
        if todo and found.elevate is None:
            ctx.warn(found.why_not_root(where))
        return done(f"dry run: {len(todo)} step(s) would change {where}" if todo else "nothing to change")
    if not todo:
        return done("nothing to change")
    commands = [line for step in todo for line in prereqs.describe_changes(step, prefix)]
    if not settings.install:
        raise PhaseFailed(f"missing on {where}: {', '.join(s.name for s in todo)} "
                          "(phases.prerequisites.install is false); as root: " + "; ".join(commands))
    root = ctx.host.as_root()
    if root is None:
        raise PhaseFailed(f"installing {', '.join(s.name for s in todo)} needs root: {found.why_not_root(where)}; "
                          "or run there: " + "; ".join(commands))
    for step in todo:
        _apply(ctx, root, step, prefix)
        for note in step.notes:
            ctx.warn(note)
    ctx.facts.docker_report = None
    report = require_docker(ctx)
    return done(f"{len(todo)} step(s) applied on {where}; docker {report.server_version}, "
                f"compose {report.compose_version}")


def _apply(ctx: PhaseContext, root: Host, step: prereqs.Step, prefix: tuple[str, ...]) -> None:
    ctx.out(f"{step.name}: installing")
    if step.apt:
        _wait_for_dpkg_lock(ctx)
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    if step.start_daemon:
        _start_dockerd(ctx, root)
    else:
        for command in step.commands:
            _run(ctx, root, command, step, prefix, env)
    if step.send_file:
        local, path = step.send_file
        ctx.out(f"sending this machine's compose v2 plugin to {path}")
        try:
            root.send_file(Path(local), path, 0o755)
        except OSError as exc:
            raise PhaseFailed(f"{step.name}: {exc}") from None
    if step.write_file:
        path, content = step.write_file
        root.write_text(path, content)
        ctx.out(f"wrote {path}")
    for command in step.after:
        root.stream(command, ctx.out, timeout=120, env=env)
    if step.check_login:
        failed = ctx.host.login_works()
        if failed is not None:
            for command in step.undo:
                _run(ctx, root, command, step, prefix, env)
            raise PhaseFailed(f"{step.name}: after the change a new SSH login to {ctx.where} failed ({failed}); "
                              "the change was undone. Allow the SSH port in phases.prerequisites.ssh_port or "
                              "allow_ports")
        ctx.out("a new SSH login still works")


def _run(ctx: PhaseContext, root: Host, command: tuple[str, ...], step: prereqs.Step, prefix: tuple[str, ...],
         env: dict[str, str]) -> None:
    ctx.out("$ " + shlex.join([*prefix, *command]))
    code = root.stream(command, ctx.out, timeout=900, env=env)
    if code != 0:
        raise PhaseFailed(f"{step.name}: {shlex.join([*prefix, *command])} exited with code {code} on {ctx.where}",
                          exit_code=code)


def _wait_for_dpkg_lock(ctx: PhaseContext, limit: float = 300.0) -> None:
    """Another apt or unattended-upgrades run holds the dpkg lock: wait for it, with progress.
    Read from the host's ``/proc/locks`` (the lock file's inode), so any host can answer."""
    began = ctx.clock()
    while True:
        holders = _dpkg_lock_holders(ctx)
        if not holders:
            return
        waited = ctx.clock() - began
        if waited > limit:
            raise PhaseFailed(f"the dpkg lock ({DPKG_LOCK}) was held for over {limit:g}s; "
                              f"another package manager is running (pid {', '.join(holders)})")
        ctx.progress(f"waiting for the dpkg lock ({waited:.0f}s of {limit:g}s)")
        if int(waited) % 30 < 5:
            ctx.out(f"another package manager (pid {', '.join(holders)}) holds the dpkg lock; "
                    f"waited {waited:.0f}s")
        ctx.cancel.sleep(5)


def _dpkg_lock_holders(ctx: PhaseContext) -> list[str]:
    """The pids holding the dpkg lock; none when there is no dpkg here or it cannot be told
    (apt then says so itself)."""
    try:
        inode = ctx.host.run(["stat", "-L", "-c", "%i", DPKG_LOCK], timeout=30)
        if inode.returncode != 0 or not inode.stdout.strip().isdigit():
            return []
        return prereqs.lock_holders(ctx.host.read_text("/proc/locks"), int(inode.stdout))
    except (OSError, CommandNotFound):
        return []


def _alive(ctx: PhaseContext, pid: str) -> bool:
    """True when ``pid`` is a live process of the host (a zombie is not)."""
    try:
        stat = ctx.host.read_text(f"/proc/{int(pid or '0')}/stat")
    except (OSError, ValueError):
        return False
    return prereqs.process_alive(stat)


def _start_dockerd(ctx: PhaseContext, host: Host, wait: float = 60.0) -> None:
    """Start dockerd detached (it must outlive surefoot), then wait until it answers."""
    began = ctx.clock()
    # A killed daemon leaves its pid files (its own, its containerd's): a new one refuses to start,
    # or waits on the dead containerd. Wait for dying processes, then remove the files.
    for pid_file in DOCKERD_PID_FILES:
        while host.exists(pid_file):
            try:
                pid = host.read_text(pid_file).strip()
            except OSError:
                pid = ""
            if not _alive(ctx, pid):
                host.remove(pid_file)
                break
            if ctx.clock() - began > wait:
                raise PhaseFailed(f"a process that does not answer still runs (see {pid_file}): stop it first")
            ctx.progress(f"waiting for the process of {pid_file} to finish stopping")
            ctx.cancel.sleep(0.5)
    daemon = str(host.start_detached(["dockerd"], DOCKERD_LOG))
    ctx.out(f"started dockerd, pid {daemon} (log: {DOCKERD_LOG})")
    began = ctx.clock()
    while ctx.clock() - began < wait:
        probe = ctx.engine.daemon_info(timeout=10)
        if probe.returncode == 0:
            ctx.out(f"the Docker daemon answers: {probe.stdout.strip()}")
            return
        if not _alive(ctx, daemon):
            try:
                tail = host.read_text(DOCKERD_LOG).splitlines()[-5:]
            except OSError:
                tail = []
            for line in tail:
                ctx.out(line)
            raise PhaseFailed(f"dockerd exited; see {DOCKERD_LOG}")
        ctx.cancel.sleep(0.5)
    raise PhaseFailed(f"dockerd did not answer within {wait:g}s; see {DOCKERD_LOG}")
