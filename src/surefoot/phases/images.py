"""pull-images and build."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

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


# Announced by build once the database services' images are built (database-start waits on it).
DATABASE_IMAGES = "database-images"


def build(ctx: PhaseContext) -> PhaseResult:
    """Build every service with a build section.

    The database services' images build in their own `compose build`, beside the
    others', so that database-start can begin while the application still builds.
    """
    services = ctx.facts.build_services()
    databases = [s for s in services if s in ctx.facts.database_services()]
    others = [s for s in services if s not in databases]
    if not databases:
        ctx.reached(DATABASE_IMAGES)
    if not services:
        return skipped("no service has a build section")
    codes: dict[str, int] = {}

    def build_group(group: list[str], milestone: str | None) -> None:
        codes[group[0]] = code = ctx.compose.stream(ctx.compose.argv("build", *group), ctx.out)
        if code == 0 and milestone:
            ctx.facts.images_changed()
            ctx.reached(milestone)

    if databases and others:
        # Each thread waits for its own child (see proc.ProcessRunner: children die with their thread).
        with ThreadPoolExecutor(1, thread_name_prefix="build-databases") as side:
            databases_built = side.submit(build_group, databases, DATABASE_IMAGES)
            build_group(others, None)
            databases_built.result()  # its Interrupted or error, raised here
    else:
        build_group(services, DATABASE_IMAGES if databases else None)
    ctx.facts.images_changed()
    ctx.cancel.check()
    failed = {group: code for group, code in codes.items() if code != 0}
    if failed:
        code = next(iter(failed.values()))
        raise PhaseFailed(f"docker compose build failed (exit {code})", exit_code=code)
    return done(", ".join(services))
