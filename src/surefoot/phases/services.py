"""services-start."""

from __future__ import annotations

from surefoot.errors import PhaseFailed
from surefoot.phases.rollout import roll_out
from surefoot.pipeline import PhaseContext, PhaseResult, done


def start(ctx: PhaseContext) -> PhaseResult:
    ctx.compose.finish_interrupted_recreates(ctx.out)
    roll_out(ctx)  # the zero_downtime services first, start-first; compose up then leaves them be
    code = ctx.compose.stream(ctx.compose.argv("up", "--detach", "--remove-orphans"), ctx.out)
    if code != 0:
        raise PhaseFailed(f"docker compose up failed (exit {code})", exit_code=code)
    return done()
