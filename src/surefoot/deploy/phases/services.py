"""services-start."""

from __future__ import annotations

from surefoot.base.errors import CommandTimeout, PhaseFailed
from surefoot.base.units import format_duration
from surefoot.deploy.api import Facts, PhaseContext, PhaseResult, done, up_here
from surefoot.deploy.phases.rollout import roll_out
from surefoot.deploy.phases.verify import one_shot_services
from surefoot.engines.compose.model import compose_reason, replicas


def start(ctx: PhaseContext) -> PhaseResult:
    ctx.engine.finish_interrupted_recreates(ctx.out)
    roll_out(ctx)  # the zero_downtime services first, start-first; compose up then leaves them be
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
    return f"its containers are gone or stopped ({', '.join(gone)})" if gone else None
