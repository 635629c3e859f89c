"""database-start and database-migrate."""

from __future__ import annotations

from surefoot.compose import ContainerState
from surefoot.errors import PhaseFailed
from surefoot.pipeline import PhaseContext, PhaseResult, done, skipped
from surefoot.units import format_duration

POLL_INTERVAL = 0.5
ONEOFF_LABEL = "io.surefoot.oneoff"


def _states_line(states: dict[str, ContainerState | None]) -> str:
    return ", ".join(
        f"{service}: {state.describe() if state else 'no container'}"
        for service, state in states.items()
    )


def start(ctx: PhaseContext) -> PhaseResult:
    settings = ctx.settings.phases.database_start
    services = list(settings.services)
    if not services:
        return skipped("no database services configured (phases.database-start.services)")
    code = ctx.compose.stream(ctx.compose.argv("up", "--detach", *services), ctx.out)
    if code != 0:
        raise PhaseFailed(f"docker compose up of {', '.join(services)} failed (exit {code})",
                          exit_code=code)
    began = ctx.clock()
    last_line = ""
    while True:
        found = {c.service: c for c in ctx.compose.ps(services)}
        states = {service: found.get(service) for service in services}
        elapsed = ctx.clock() - began
        line = _states_line(states)
        if line != last_line:
            ctx.out(line)
            last_line = line
        ctx.progress(f"{line} ({format_duration(elapsed)} of {format_duration(settings.timeout)})")
        broken = [s for s in states.values() if s is not None and s.broken]
        if broken:
            for state in broken:
                ctx.out(f"--- last log lines of {state.service} ---")
                for log_line in ctx.compose.logs_tail(state.service, 20):
                    ctx.out(log_line)
            first = broken[0]
            raise PhaseFailed(f"database service {first.service} {first.describe()}")
        if all(s is not None and s.ready for s in states.values()):
            return done(line)
        if elapsed > settings.timeout:
            raise PhaseFailed(
                f"database services not ready within {format_duration(settings.timeout)}: {line}"
            )
        ctx.cancel.sleep(POLL_INTERVAL)


def migrate(ctx: PhaseContext) -> PhaseResult:
    settings = ctx.settings.phases.database_migrate
    if not settings.command or not settings.service:
        return skipped("no migration command configured (phases.database-migrate.command)")
    # A one-off container left by a killed earlier attempt would hold locks or ports.
    leftovers = ctx.compose.containers_with_label(ONEOFF_LABEL)
    if leftovers:
        ctx.out(f"removing {len(leftovers)} one-off container(s) left by an earlier attempt")
        ctx.compose.remove_containers(leftovers)
    name = f"{ctx.settings.project_name}-surefoot-migrate"
    # Started detached and followed with `docker logs`, the exit code read with
    # `docker wait`: an attached `compose run` reports exit 0 for a failed command
    # on some engine and compose pairings (seen: engine 20.10 with compose 2.40).
    start = ctx.compose.argv(
        "run", "--detach", "--no-deps", "--name", name,
        "--label", f"{ONEOFF_LABEL}=migrate", settings.service, *settings.command,
    )
    ctx.out("$ " + " ".join(start))
    try:
        ctx.compose.check(start, "starting the migration container")
        ctx.compose.stream(
            ctx.compose.docker_argv("logs", "--follow", name), ctx.out, timeout=settings.timeout,
            echo=False,
        )
        code = ctx.compose.wait(name)
    finally:
        ctx.compose.remove_containers([name])
    if code != 0:
        raise PhaseFailed(f"migration command exited with code {code}", exit_code=code)
    return done()
