"""cleanup: dangling images go; a failure here only warns."""

from __future__ import annotations

from surefoot.pipeline import PhaseContext, PhaseResult, done


def prune(ctx: PhaseContext) -> PhaseResult:
    argv = ctx.compose.docker_argv("image", "prune", "--force", "--filter", "dangling=true")
    code = ctx.compose.stream(argv, ctx.out)
    if code != 0:
        ctx.warn(f"pruning dangling images failed (exit {code}); nothing else depends on it")
        return done("prune failed")
    return done()
