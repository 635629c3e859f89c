"""prerequisites: install and start what the host lacks (Docker, compose v2, the daemon, the
docker group, UFW, fail2ban). The plan is data (:mod:`surefoot.hosts.prereqs`); every observation
and change goes through ``ctx.host``."""

from __future__ import annotations

import shlex

from surefoot.base.errors import CommandNotFound, PhaseFailed
from surefoot.deploy.api import DockerReport, PhaseContext, PhaseResult, done
from surefoot.deploy.phases.preflight import inspect_docker, require_docker
from surefoot.hosts import checks, prereqs

DPKG_LOCK = "/var/lib/dpkg/lock-frontend"
DOCKERD_LOG = "/var/log/dockerd.log"
DOCKERD_PID_FILES = ("/var/run/docker.pid", "/var/run/docker/containerd/containerd.pid")


def observe(ctx: PhaseContext, docker: DockerReport) -> prereqs.Machine:
    settings = ctx.settings.phases.prerequisites
    host = ctx.host
    user = prereqs.operator(host)
    ufw_active = False
    if settings.firewall and host.which("ufw"):
        status = host.run(["ufw", "status"], timeout=30)
        ufw_active = "Status: active" in status.stdout
    return prereqs.Machine(
        os_id=checks.os_release(host)[0],
        is_root=host.is_root(),
        user=user,
        has_dockerd=docker.server_version is not None or host.which("dockerd"),
        daemon_running=docker.server_version is not None,
        compose_v2=docker.compose_version is not None,
        user_in_docker_group=prereqs.in_docker_group(host, user),
        has_systemd=host.exists("/run/systemd/system") and host.which("systemctl"),
        ufw_active=ufw_active,
        fail2ban_configured=host.exists(str(prereqs.JAIL_LOCAL)),
    )


def prerequisites(ctx: PhaseContext) -> PhaseResult:
    """Install and start what is missing: each step checks first, so a re-run changes nothing."""
    settings = ctx.settings.phases.prerequisites
    machine = observe(ctx, inspect_docker(ctx))
    steps = prereqs.plan_steps(machine, settings)
    todo = [step for step in steps if not step.done]
    for step in steps:
        ctx.out(f"{step.name}: {'in place' if step.done else 'missing'}: {step.description}")
    if ctx.dry_run:
        for step in todo:
            for line in prereqs.describe_changes(step):
                ctx.out(f"would run ({step.name}): {line}")
        return done(f"dry run: {len(todo)} step(s) would change this machine" if todo else "nothing to change")
    if not todo:
        return done("nothing to change")
    commands = [line for step in todo for line in prereqs.describe_changes(step)]
    if not settings.install:
        raise PhaseFailed(f"missing: {', '.join(s.name for s in todo)} (phases.prerequisites.install is false); "
                          "as root: " + "; ".join(commands))
    if not machine.is_root:
        raise PhaseFailed("installing " + ", ".join(s.name for s in todo) + " needs root: run "
                          + "; ".join("sudo " + c if not c.startswith("write ") else c for c in commands)
                          + " (or run surefoot with sudo)")
    for step in todo:
        _apply(ctx, step)
        for note in step.notes:
            ctx.warn(note)
    report = require_docker(ctx)
    return done(f"{len(todo)} step(s) applied; docker {report.server_version}, compose {report.compose_version}")


def _apply(ctx: PhaseContext, step: prereqs.Step) -> None:
    ctx.out(f"{step.name}: installing")
    if step.apt:
        _wait_for_dpkg_lock(ctx)
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    for command in step.commands:
        if step.start_daemon:
            _start_dockerd(ctx)
            continue
        ctx.out("$ " + shlex.join(command))
        code = ctx.host.stream(command, ctx.out, timeout=900, env=env)
        if code != 0:
            raise PhaseFailed(f"{step.name}: {shlex.join(command)} exited with code {code}", exit_code=code)
    if step.write_file:
        path, content = step.write_file
        ctx.host.write_text(path, content)
        ctx.out(f"wrote {path}")
    for command in step.after:
        ctx.host.stream(command, ctx.out, timeout=120, env=env)


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


def _start_dockerd(ctx: PhaseContext, wait: float = 60.0) -> None:
    """Start dockerd detached (it must outlive surefoot), then wait until it answers."""
    host = ctx.host
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
