"""pull-images and build."""

from __future__ import annotations

import re

from surefoot.errors import PhaseFailed
from surefoot.pipeline import PhaseContext, PhaseResult, done, skipped

# compose reports a failed pull as " db Error <reason>" and may still exit 0
# (the image is on hand locally), so the output is read, not just the exit code.
_PULL_ERROR = re.compile(r"^\s*(\S+)\s+Error\b")


def pull(ctx: PhaseContext) -> PhaseResult:
    settings = ctx.settings.phases.pull_images
    failed: list[str] = []

    def on_line(line: str) -> None:
        match = _PULL_ERROR.match(line)
        if match:
            failed.append(match.group(1))
        ctx.out(line)

    code = ctx.compose.stream(ctx.compose.argv("pull", "--ignore-buildable"), on_line)
    ctx.facts.images_changed()
    if code == 0 and not failed:
        return done()
    what = f"could not pull {', '.join(failed)}" if failed else f"docker compose pull failed (exit {code})"
    if settings.fail_on_error:
        raise PhaseFailed(what, exit_code=code or None)
    ctx.warn(
        f"{what}; going on with the images on hand "
        "(set phases.pull-images.fail_on_error = true to stop instead)"
    )
    return done("pull failed; local images used")


def build(ctx: PhaseContext) -> PhaseResult:
    services = ctx.facts.build_services()
    if not services:
        return skipped("no service has a build section")
    code = ctx.compose.stream(ctx.compose.argv("build", *services), ctx.out)
    ctx.facts.images_changed()
    if code != 0:
        raise PhaseFailed(f"docker compose build failed (exit {code})", exit_code=code)
    return done(", ".join(services))
