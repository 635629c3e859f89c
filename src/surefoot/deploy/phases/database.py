"""database-start and database-migrate."""

from __future__ import annotations

import os

from surefoot.base.errors import PhaseFailed
from surefoot.base.units import format_duration
from surefoot.config.settings import BackupSettings
from surefoot.deploy.api import Facts, PhaseContext, PhaseResult, done, skipped
from surefoot.deploy.gates import run_probes
from surefoot.deploy.gates.probes import Probe
from surefoot.deploy.gates.watch import ContainerWatch, DockerEvents
from surefoot.engines.compose.model import compose_reason

# The engine's events wake the wait; this poll is only a safety net in case one is missed.
FALLBACK_POLL = 2.0
ONEOFF_LABEL = "io.surefoot.oneoff"


def start(ctx: PhaseContext) -> PhaseResult:
    settings = ctx.settings.phases.database_start
    every = ctx.facts.database_services()
    services = [service for service in every if ctx.facts.runs(service)]
    if every and not services:
        return skipped(f"no database service runs on this target ({', '.join(every)}: on another)")
    if not services:
        if settings.services is not None:
            return skipped("no database services (phases.database-start.services is empty)")
        return skipped("no database gate: no service runs a known database image "
                       "(list yours in phases.database-start.services)")
    if settings.services is None:
        ctx.out(f"database services recognised by their images: {', '.join(services)}")
    # Ready means running and, where a healthcheck is defined, healthy. The engine says when
    # that changes (`docker events`), so the wait is woken by it rather than polling.
    ctx.engine.finish_interrupted_recreates(ctx.out)
    with DockerEvents(ctx.engine).following() as events:
        lines: list[str] = []

        def on_line(line: str) -> None:
            lines.append(line)
            ctx.out(line)

        code = ctx.engine.up(services, on_line=on_line)
        if code != 0:
            reason = compose_reason(lines[1:])  # the first line is the command itself
            raise PhaseFailed(f"docker compose up of {', '.join(services)} failed (exit {code})"
                              + (f": {reason}" if reason else ""), exit_code=code)
        watch = ContainerWatch(ctx.engine, services, events=events)
        probes = [
            Probe(service, watch.probe(service), consecutive=1, interval=FALLBACK_POLL,
                  timeout=settings.timeout, on_events=True)
            for service in services
        ]
        result = run_probes(ctx, probes, watch=watch, what="a database service is not ready", events=events)
        ctx.out(f"{events.seen} engine event(s) followed"
                + (" (the stream ended early; polled instead)" if events.ended else ""))
    return done(f"{', '.join(services)} ready in {format_duration(result.elapsed)}")


def _backup(ctx: PhaseContext, backup: BackupSettings) -> None:
    """The backup command's standard output, kept as this release's backup (0600).

    Taken once per release: when a migration failed halfway and is resumed, the
    database may hold part of it, and the backup from before the first attempt is
    the one worth keeping."""
    folder = ctx.state_dir / "backups"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"release-{ctx.deployment_id}.dump"
    if path.exists():
        ctx.out(f"backup kept: {path}, taken before this release's first migration attempt")
        return
    partial = path.with_suffix(".partial")
    ctx.out(f"backing up with {backup.service}: {' '.join(backup.command)}")
    result = ctx.engine.exec_to_file(backup.service, backup.command, partial, timeout=backup.timeout)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        last = result.stderr.strip().splitlines()
        raise PhaseFailed(f"the backup command failed (exit {result.returncode})"
                          + (f": {last[-1]}" if last else ""), details=result.stderr)
    os.replace(partial, path)
    ctx.out(f"backup written: {path} ({path.stat().st_size} bytes)")


def migrate(ctx: PhaseContext) -> PhaseResult:
    settings = ctx.settings.phases.database_migrate
    if not settings.command or not settings.service:
        return skipped("no migration command configured (phases.database-migrate.command)")
    if not ctx.facts.runs(settings.service) or not ctx.facts.placement.migrates:
        return skipped("the migration runs once a release, on another target")
    if settings.backup is not None:
        _backup(ctx, settings.backup)
    # A one-off container left by a killed earlier attempt would hold locks or ports.
    leftovers = ctx.engine.containers_with_label(ONEOFF_LABEL)
    if leftovers:
        ctx.out(f"removing {len(leftovers)} one-off container(s) left by an earlier attempt")
        ctx.engine.remove_containers(leftovers)
    name = f"{ctx.settings.project_name}-surefoot-migrate"
    # Started detached and followed with `docker logs`, the exit code read with
    # `docker wait`: an attached `compose run` reports exit 0 for a failed command
    # on some engine and compose pairings (seen: engine 20.10 with compose 2.40).
    try:
        ctx.engine.run_oneoff(settings.service, settings.command, name=name, on_line=ctx.out,
                              entrypoint=settings.entrypoint, labels={ONEOFF_LABEL: "migrate"})
        ctx.engine.logs(name, on_line=ctx.out, timeout=settings.timeout)
        code = ctx.engine.wait(name)
    finally:
        ctx.engine.remove_containers([name])
    if code != 0:
        raise PhaseFailed(f"migration command exited with code {code}", exit_code=code)
    return done()


def databases_stand(facts: Facts) -> str | None:
    """On resume: the database containers it started still run."""
    services = [service for service in facts.database_services() if facts.runs(service)]
    running = {c.service for c in facts.engine.ps(services) if c.state == "running"}
    gone = [service for service in services if service not in running]
    return f"its containers are gone or stopped ({', '.join(gone)})" if gone else None
