"""Restoring a release (a rollback, automatic or by hand): its files put back, its pinned images
started (never built, never pulled), gated as health-wait would. Not a phase of the pipeline: a
unit of its own (``names.RESTORE``), handed the release to restore."""

from __future__ import annotations

from surefoot.base.errors import PhaseFailed
from surefoot.config.probes import ProbeSettings
from surefoot.deploy.api import PhaseContext, PhaseResult, done, up_here
from surefoot.deploy.gates import build_probe, run_probes
from surefoot.deploy.gates.watch import ContainerWatch
from surefoot.deploy.phases.rollout import roll_out, settle_edge
from surefoot.deploy.releases import ReleaseKeeper
from surefoot.store import Release


def restore(ctx: PhaseContext, release: Release, keeper: ReleaseKeeper, notes: tuple[str, ...]) -> PhaseResult:
    missing = keeper.missing_images(release)
    if missing:
        raise PhaseFailed(f"release {release.id} cannot be restored: its images are gone "
                          f"({', '.join(missing)})")
    restored = keeper.restore(release, ctx.out)
    engine = ctx.engine.with_files(restored.project)
    roll_out(ctx, engine=engine, model=engine.model())  # the zero_downtime services switch, as in a deploy
    code = up_here(ctx, ctx.out, engine=engine, no_build=True, pull_never=True, remove_orphans=True)
    force = [service for service in restored.force if ctx.facts.runs(service)]
    if code == 0 and force:  # their secret or config files differ: compose cannot tell
        code = engine.up(force, on_line=ctx.out, no_build=True, pull_never=True, no_deps=True, force_recreate=True)
    if code != 0:
        raise PhaseFailed(f"docker compose up of release {release.id} failed (exit {code})")
    settle_edge(ctx, engine)
    gate_release(ctx, release)
    for note in notes:
        ctx.warn(note)
    return done(f"release {release.id} restored and healthy")


def gate_release(ctx: PhaseContext, release: Release) -> None:
    """health-wait's probes on the restored release; without any, every service of it must come
    up and stay up."""
    watch = ContainerWatch(ctx.engine)
    configured = ctx.settings.phases.health_wait.all_probes()
    if not configured:
        configured = [ProbeSettings(service=s, consecutive=3, interval=1.0, timeout=60.0)
                      for s in release.tags if ctx.facts.runs(s)]
    probes = [build_probe(p, ctx, watch) for p in configured]
    run_probes(ctx, probes, watch=watch, what=f"release {release.id} failed its health gate")
