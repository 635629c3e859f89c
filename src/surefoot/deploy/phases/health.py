"""health-wait: every configured probe passes N times in a row, with no fixed sleep first."""

from __future__ import annotations

from surefoot.base.units import format_duration
from surefoot.deploy.api import PhaseContext, PhaseResult, done, skipped
from surefoot.deploy.gates import build_probe, probes_here, run_probes
from surefoot.deploy.gates.watch import ContainerWatch, DockerEvents


def wait(ctx: PhaseContext) -> PhaseResult:
    settings = ctx.settings.phases.health_wait
    configured = settings.all_probes()
    if not configured:
        return skipped("no health probe configured (phases.health-wait.url or probes)")
    configured = probes_here(ctx, configured)
    if not configured:
        return skipped("no health probe of a service that runs on this target")
    for p in configured:
        ctx.out(f"probe {p.label} ({p.type}): {p.consecutive} passes in a row, every "
                f"{format_duration(p.interval)}, within {format_duration(p.timeout)}")
    if not settings.fail_fast:
        watch = ContainerWatch(ctx.engine)
        result = run_probes(ctx, [build_probe(p, ctx, watch) for p in configured], watch=None,
                            what="the health gate failed")
    else:  # a container that dies mid-gate is seen the moment the engine reports it
        with DockerEvents(ctx.engine).following() as events:
            watch = ContainerWatch(ctx.engine, events=events)
            result = run_probes(ctx, [build_probe(p, ctx, watch) for p in configured], watch=watch,
                                what="the health gate failed", events=events)
    return done(f"{len(configured)} probe(s) passed in {format_duration(result.elapsed)}")
