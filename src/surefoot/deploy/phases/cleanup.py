"""cleanup: release tags past keeping and the project's dangling images go; a failure here
only warns. Only what the project made is removed: the engine may be shared."""

from __future__ import annotations

from surefoot.deploy.api import PhaseContext, PhaseResult, done


def prune(ctx: PhaseContext) -> PhaseResult:
    notes = []
    present = [tag for tag, image in ctx.engine.image_ids(ctx.expired_tags).items() if image]
    if present:
        ctx.out(f"untagging {len(present)} image(s) of releases past keeping "
                f"(rollback.keep_releases = {ctx.settings.rollback.keep_releases})")
        code = ctx.engine.remove_images(present, on_line=ctx.out)
        if code != 0:
            ctx.warn(f"some release images could not be removed (exit {code}); "
                     "a container may still use them")
        notes.append(f"{len(present)} old release tag(s) removed")
    # Compose labels the images it builds with the project's name; other dangling images
    # (another project's, or anyone's on a shared server) are not ours to remove.
    code = ctx.engine.prune_project_images(on_line=ctx.out)
    if code != 0:
        ctx.warn(f"pruning dangling images failed (exit {code}); nothing else depends on it")
        notes.append("prune failed")
    return done("; ".join(notes) or None)
