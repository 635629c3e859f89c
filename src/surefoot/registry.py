"""The pipeline, built from the phase table of :mod:`surefoot.names`: each row's function
(``"module:function"`` under :mod:`surefoot.phases`) and its :class:`~surefoot.pipeline.PhaseSpec`.
Adding a phase is its module and its row there; nothing here names a phase."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, cast

from surefoot.config import Settings
from surefoot.names import PHASES
from surefoot.pipeline import PhaseContext, PhaseResult, PhaseSpec

_FLAGS = ("release_point", "rollback_on_failure", "fingerprint_after", "prunes_releases")


def phase_function(where: str) -> Callable[[PhaseContext], PhaseResult]:
    """The function a row names: ``"images:build"`` is :func:`surefoot.phases.images.build`."""
    module, _, function = where.partition(":")
    return cast(Callable[[PhaseContext], PhaseResult],
                getattr(importlib.import_module(f"surefoot.phases.{module}"), function))


def build_pipeline(settings: Settings | None = None, engine: str = "compose") -> list[PhaseSpec]:
    """The pipeline of a target whose engine is ``engine`` (a row's ``engine`` key names its
    function there, when it differs: ``{"swarm": "swarm:services_start"}``)."""
    # When the configuration phase writes the env file, the env file is its output: the
    # phases up to it cannot depend on it (nor on the compose model, which reads it).
    managed = settings is not None and settings.phases.configuration.declared
    pipeline: list[PhaseSpec] = []
    before_env = True
    for row in PHASES:
        if row.get("optional") and (settings is None or not settings.phases.for_phase(row["name"]).configured):
            continue
        inputs: tuple[Any, ...] = tuple(row.get("inputs", ()))
        if managed and before_env:
            inputs = tuple(i for i in inputs if i not in ("env", "compose"))
        if row.get("writes_env"):
            before_env = False
        present = {spec.name for spec in pipeline}
        after = row.get("after")
        if after is not None:  # an optional phase waits only for those that run
            after = tuple(entry for entry in after if entry.partition(":")[0] in present)
        pipeline.append(PhaseSpec(
            row["name"], phase_function(row.get("engine", {}).get(engine, row["run"])), inputs, after=after,
            announces=tuple(row.get("announces", ())), **{flag: bool(row.get(flag)) for flag in _FLAGS},
        ))
    return pipeline
