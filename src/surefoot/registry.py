"""The one registry of the pipeline's phases: which function runs each, in what order,
on what inputs. Adding a phase: its module under ``phases/``, its name in
:mod:`surefoot.names`, and its :class:`~surefoot.pipeline.PhaseSpec` here."""

from __future__ import annotations

from surefoot.config import Settings
from surefoot.names import PHASE_NAMES
from surefoot.phases import (
    cleanup,
    configuration,
    database,
    health,
    images,
    postdeploy,
    preflight,
    prerequisites,
    services,
    verify,
)
from surefoot.pipeline import PhaseSpec


def build_pipeline(settings: Settings | None = None) -> list[PhaseSpec]:
    # When the configuration phase writes the env file, the env file is its output:
    # the phases before it cannot depend on it.
    managed = settings is not None and settings.phases.configuration.declared
    pipeline = [
        PhaseSpec("preflight", preflight.preflight, () if managed else ("compose", "env")),
        PhaseSpec("prerequisites", prerequisites.prerequisites),
        PhaseSpec("configuration", configuration.configuration, ("values",) if managed else ("env", "values"),
                  fingerprint_after=True),
        # Pulls and builds touch different images (pull --ignore-buildable): side by side.
        PhaseSpec("pull-images", images.pull, ("compose",), after=("configuration",),
                  announces=(images.DATABASE_IMAGES,)),
        PhaseSpec("build", images.build, ("compose", "env", "build-context"), after=("configuration",),
                  announces=(images.DATABASE_IMAGES,)),
        # The databases start as soon as their own images are there, while the rest are
        # still pulled or built.
        PhaseSpec("database-start", database.start, ("compose", "env", "images:database"),
                  after=(f"pull-images:{images.DATABASE_IMAGES}", f"build:{images.DATABASE_IMAGES}")),
        PhaseSpec("database-migrate", database.migrate, ("compose", "env", "images:migrate"),
                  after=("database-start", "pull-images", "build")),
        PhaseSpec("services-start", services.start, ("compose", "env", "images:all"),
                  release_point=True, rollback_on_failure=True),
        PhaseSpec("health-wait", health.wait, ("compose",), rollback_on_failure=True),
        PhaseSpec("cleanup", cleanup.prune, prunes_releases=True),
    ]
    assert tuple(spec.name for spec in pipeline) == PHASE_NAMES
    last: tuple[str, ...] = ("cleanup",)
    if settings is not None and settings.phases.verify.urls:
        # Verify reads the running stack; cleanup only prunes what no release uses: side by side.
        pipeline.append(PhaseSpec("verify", verify.verify, ("compose",), after=("health-wait",)))
        last = ("cleanup", "verify")
    if settings is not None and settings.phases.post_deploy.declared:
        pipeline.append(PhaseSpec("post-deploy", postdeploy.post_deploy, ("compose", "env"), after=last))
    return pipeline

