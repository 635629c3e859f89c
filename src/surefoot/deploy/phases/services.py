"""services-start."""

from __future__ import annotations

import time

from surefoot.base.errors import CommandTimeout, PhaseFailed
from surefoot.base.units import format_duration
from surefoot.deploy.api import Facts, PhaseContext, PhaseResult, done, up_here
from surefoot.deploy.phases.edging import edge_name
from surefoot.deploy.phases.rollout import roll_out, settle_edge
from surefoot.deploy.phases.verify import one_shot_services
from surefoot.engines.compose.edge import edge_services, read_state
from surefoot.engines.compose.model import compose_reason, replicas


def start(ctx: PhaseContext) -> PhaseResult:
    ctx.engine.finish_interrupted_recreates(ctx.out)
    released = roll_out(ctx)  # the zero_downtime services first, start-first; compose up then leaves them be
    timeout = ctx.settings.phases.services_start.timeout
    lines: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        ctx.out(line)

    try:
        code = up_here(ctx, on_line, remove_orphans=True, timeout=timeout)
    except CommandTimeout:
        last = next((line.strip() for line in reversed(lines) if line.strip()), None)
        raise PhaseFailed(f"docker compose up did not finish within {format_duration(timeout)} "
                          "(phases.services-start.timeout)" + (f"; it was at: {last}" if last else "")) from None
    if code != 0:
        reason = compose_reason(lines[1:])  # the first line is the command itself
        raise PhaseFailed(f"docker compose up failed (exit {code})" + (f": {reason}" if reason else ""),
                          exit_code=code)
    settle_edge(ctx)
    if released is not None:
        ctx.out(f"the ports the edge held are back on their services; unbound for at most "
                f"{format_duration(time.monotonic() - released)} (until compose up had started them)")
    return done()


def services_stand(facts: Facts) -> str | None:
    """On resume: every service it started has its containers, running (or, a one-shot job,
    exited 0), as after ``compose up``; a stack taken down since must be started again."""
    model = facts.model()
    wanted = [name for name, spec in model.services.items() if replicas(spec) > 0 and facts.runs(name)]
    once = one_shot_services(model)
    containers = facts.engine.ps(wanted)
    gone = [name for name in wanted
            if not any(c.service == name and (c.state == "running" or (name in once and c.state == "exited"
                                                                     and c.exit_code == 0)) for c in containers)]
    if gone:
        return f"its containers are gone or stopped ({', '.join(gone)})"
    return edge_stands(facts, {c.id for c in containers if c.state == "running" and c.id})


def edge_stands(facts: Facts, running: set[str]) -> str | None:
    """The edge, when listed services publish ports: it runs and forwards each of them to
    containers that run (a run cut before it was told of them, or an edge removed since)."""
    listed = facts.settings.phases.services_start.zero_downtime
    if not listed or facts.state_dir is None:
        return None
    held = edge_services(facts.engine.user_model(), listed)
    if not held:
        return None
    state = read_state(facts.state_dir) or {}
    backends = state.get("backends") or {}
    edge = facts.engine.inspect([edge_name(facts.settings.project_name)])
    if not edge or str((edge[0].get("State") or {}).get("Status")) != "running":
        return "the edge is not running"
    def runs(backend: str) -> bool:  # ids whole or short
        return any(backend.startswith(one) or one.startswith(backend) for one in running)

    stale = [service for service in held if not backends.get(service) or not all(map(runs, backends[service]))]
    return f"the edge does not forward to the running containers of {', '.join(stale)}" if stale else None
