"""pull-images and build."""

from __future__ import annotations

from surefoot.errors import PhaseFailed
from surefoot.pipeline import PhaseContext, PhaseResult, done, skipped


def pull(ctx: PhaseContext) -> PhaseResult:
    settings = ctx.settings.phases.pull_images
    code = ctx.compose.stream(ctx.compose.argv("pull", "--ignore-buildable"), ctx.out)
    ctx.facts.images_changed()
    if code != 0:
        if settings.fail_on_error:
            raise PhaseFailed(f"docker compose pull failed (exit {code})", exit_code=code)
        ctx.warn(
            f"some images could not be pulled (exit {code}); going on with the images on hand "
            "(set phases.pull-images.fail_on_error = true to stop instead)"
        )
        return done("pull failed, local images used")
    return done()


def build(ctx: PhaseContext) -> PhaseResult:
    services = ctx.facts.build_services()
    if not services:
        return skipped("no service has a build section")
    code = ctx.compose.stream(ctx.compose.argv("build", *services), ctx.out)
    ctx.facts.images_changed()
    if code != 0:
        raise PhaseFailed(f"docker compose build failed (exit {code})", exit_code=code)
    return done(", ".join(services))
