"""pull-images and build.

Each works in two groups side by side: the database services' images, and the
rest. As soon as the databases' group is done it announces ``DATABASE_IMAGES``, so
that database-start can begin while the application's images are still pulled
or built.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from surefoot.base.errors import PhaseFailed
from surefoot.deploy.api import Facts, PhaseContext, PhaseResult, done, skipped
from surefoot.deploy.phases.build_checks import exposed_contexts, exposure_message

# compose's words when it would build with Bake and buildx is not installed (then it builds
# without): printed by every build command, a group's included.
BAKE_WARNING = "configured to build using Bake, but buildx isn't installed"
# Announced by pull-images and by build once the database services' images are there.
DATABASE_IMAGES = "database-images"

# compose reports a failed pull as " db Error <reason>" and may still exit 0
# (the image is on hand locally), so the output is read, not just the exit code.
# Once one pull fails, compose stops the others, each reported as " web  Interrupted":
# those images were not pulled either.
_PULL_ERROR = re.compile(r"^\s*(\S+)\s+(?:Error|Interrupted)\b")


def failed_pull(line: str) -> str | None:
    """The service whose pull this line of ``compose pull`` output reports failed or cut short."""
    match = _PULL_ERROR.match(line)
    return match.group(1) if match else None


def _in_two_groups(ctx: PhaseContext, services: list[str], work: Callable[[list[str]], bool]) -> None:
    """``work`` on the database services and on the others side by side (a group may be
    empty); DATABASE_IMAGES is announced once the databases' group succeeded."""
    databases = [s for s in services if s in ctx.facts.database_services()]
    others = [s for s in services if s not in databases]

    def group(members: list[str], databases_group: bool) -> None:
        ok = work(members) if members else True
        if ok and databases_group:
            ctx.facts.images_changed()
            ctx.reached(DATABASE_IMAGES)

    if not databases or not others:
        group(databases, True)
        group(others, False)
        return
    # Each thread waits for its own child (see proc.ProcessRunner: children die with their thread).
    with ThreadPoolExecutor(1, thread_name_prefix="database-images") as side:
        databases_done = side.submit(group, databases, True)
        group(others, False)
        databases_done.result()  # its Interrupted or error, raised here


def _here(ctx: PhaseContext, services: list[str]) -> list[str]:
    """Those of ``services`` that run on this target."""
    here = ctx.facts.here(services)
    return services if here is None else here


def pull(ctx: PhaseContext) -> PhaseResult:
    settings = ctx.settings.phases.pull_images
    failed: list[str] = []
    codes: list[int] = []

    def pull_group(services: list[str]) -> bool:
        failed_before = len(failed)

        def on_line(line: str) -> None:
            service = failed_pull(line)
            if service and service not in failed:
                failed.append(service)
            ctx.out(line)

        code = ctx.engine.pull(services, on_line=on_line, ignore_buildable=True)
        codes.append(code)
        return not settings.fail_on_error or (code == 0 and len(failed) == failed_before)

    # What `pull --ignore-buildable` would pull: the services without a build section.
    model = ctx.facts.model()
    built = set(model.build_services())
    every = [s for s in model.services if s not in built]
    services = _here(ctx, every)
    _in_two_groups(ctx, services, pull_group)
    if not services:
        return skipped("every service is built here: nothing to pull" if not every
                       else "no image to pull for the services of this target")
    ctx.facts.images_changed()
    code = next((c for c in codes if c != 0), 0)
    if code == 0 and not failed:
        return done()
    what = f"could not pull {', '.join(sorted(failed))}" if failed else f"docker compose pull failed (exit {code})"
    if settings.fail_on_error:
        raise PhaseFailed(what, exit_code=code or None)
    ctx.warn(
        f"{what}; going on with the images on hand "
        "(set phases.pull-images.fail_on_error = true to stop instead)"
    )
    return done("pull failed; local images used")


def _guard_state(ctx: PhaseContext, services: list[str]) -> None:
    """Refuse to build when a build context would send the state folder to the builder
    (preflight checked it; the files may have changed since)."""
    exposed = exposed_contexts(ctx.facts.model(), services, ctx.state_dir)
    if exposed:
        raise PhaseFailed(exposure_message(ctx.state_dir, exposed))


def build(ctx: PhaseContext) -> PhaseResult:
    """Build every service with a build section (compose builds a group's services in parallel)."""
    every = ctx.facts.build_services()
    services = _here(ctx, every)
    _guard_state(ctx, services)
    codes: list[int] = []
    said: set[str] = set()

    def out(line: str) -> None:
        # compose warns at every build command that Bake needs buildx: said once a phase.
        if BAKE_WARNING in line:
            if BAKE_WARNING in said:
                return
            said.add(BAKE_WARNING)
        ctx.out(line)

    def build_group(group: list[str]) -> bool:
        codes.append(code := ctx.engine.build(group, on_line=out))
        return code == 0

    _in_two_groups(ctx, services, build_group)
    if not services:
        return skipped("no service has a build section" if not every
                       else "no image to build for the services of this target")
    ctx.facts.images_changed()
    ctx.cancel.check()
    code = next((c for c in codes if c != 0), 0)
    if code != 0:
        raise PhaseFailed(f"docker compose build failed (exit {code})", exit_code=code)
    return done(", ".join(services))


def built_stand(facts: Facts) -> str | None:
    """On resume: the images the build made are still there (a prune may have taken them)."""
    services = facts.build_services()
    here = facts.here(services)
    ids = facts.image_ids(services if here is None else here)
    gone = sorted(service for service, image in ids.items() if image is None)
    return f"its images are gone ({', '.join(gone)})" if gone else None
