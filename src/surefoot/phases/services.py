"""services-start."""

from __future__ import annotations

from surefoot.errors import PhaseFailed
from surefoot.pipeline import PhaseContext, PhaseResult, done


def start(ctx: PhaseContext) -> PhaseResult:
    ctx.compose.finish_interrupted_recreates(ctx.out)
    code = ctx.compose.stream(ctx.compose.argv("up", "--detach", "--remove-orphans"), ctx.out)
    if code != 0:
        raise PhaseFailed(f"docker compose up failed (exit {code})", exit_code=code)
    return done()
