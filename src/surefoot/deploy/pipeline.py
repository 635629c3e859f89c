"""The pipeline: each phase's :class:`PhaseSpec` (what it waits for, what it depends on), built
from the phase table (:data:`surefoot.base.names.PHASES`) for a target's engine.

Each row's function is ``"module:function"`` under :mod:`surefoot.deploy.phases`; where a row's
``engine`` entry names the engine's own function (``{"swarm": "services_start"}``), that one runs
on a target of that engine (``surefoot.engines.swarm.phases.services_start``). Adding a phase is
its module and its row; adding an engine is its package and its entries in the rows whose work
differs there; nothing here names a phase or an engine.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from surefoot.base.names import PHASES
from surefoot.config.settings import Settings
from surefoot.deploy.api import Facts, InputName, PhaseContext, PhaseResult


@dataclass(frozen=True)
class PhaseSpec:
    """A phase of the pipeline.

    ``after`` orders the phases: each entry is a phase that must have finished, or a
    ``"phase:milestone"`` that phase announces while it runs. None means the phase
    listed before it. Phases whose ``after`` is satisfied run side by side.

    Re-running: a phase runs again when its inputs (``depends``) changed, and when a
    phase it waits for *in full* ran in this deployment. Waiting on a milestone does
    not carry that rule: the inputs the milestone stands for are fingerprinted.
    """

    name: str
    run: Callable[[PhaseContext], PhaseResult]
    depends: tuple[InputName, ...] = ()
    release_point: bool = False  # the release is captured (images pinned) before this phase
    rollback_on_failure: bool = False  # a failure here restores the previous release
    after: tuple[str, ...] | None = None
    announces: tuple[str, ...] = ()  # the milestones its function passes to ``ctx.reached``
    # Its inputs are fingerprinted once it has run, not before: it writes them (the env file).
    fingerprint_after: bool = False
    # Its input includes the release tags past keeping (``ctx.expired_tags``); their files go.
    prunes_releases: bool = False
    # What it made still stands (asked on resume before it is skipped): None, or why not
    # ("its containers are gone"): it runs again then.
    stands: Callable[[Facts], str | None] | None = None


def ordered(pipeline: list[PhaseSpec]) -> dict[str, tuple[str, ...]]:
    """Each phase's ``after``, with None made explicit; checks that every entry names an
    earlier phase, or a milestone that phase announces."""
    result: dict[str, tuple[str, ...]] = {}
    specs = {spec.name: spec for spec in pipeline}
    for index, spec in enumerate(pipeline):
        after = spec.after if spec.after is not None else tuple(p.name for p in pipeline[index - 1:index])
        for entry in after:
            phase, _, milestone = entry.partition(":")
            if phase not in result:
                raise ValueError(f"phase {spec.name} waits for {entry}, which is not an earlier phase")
            if milestone and milestone not in specs[phase].announces:
                raise ValueError(f"phase {spec.name} waits for {entry}, which {phase} does not announce")
        result[spec.name] = after
    return result


_FLAGS = ("release_point", "rollback_on_failure", "fingerprint_after", "prunes_releases")


def phase_function(where: str, engine: str | None = None) -> Callable[[PhaseContext], PhaseResult]:
    """The function a row names: ``"images:build"`` is :func:`surefoot.deploy.phases.images.build`;
    with ``engine``, ``"services_start"`` is ``surefoot.engines.ENGINE.phases.services_start``."""
    if engine is not None:
        module, function = f"surefoot.engines.{engine}.phases", where
    else:
        name, _, function = where.partition(":")
        module = f"surefoot.deploy.phases.{name}"
    return cast(Callable[[PhaseContext], PhaseResult], getattr(importlib.import_module(module), function))


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
        # What the phase made is checked only where its own function made it (not an engine's).
        stands = row.get("stands") if engine not in row.get("engine", {}) else None
        pipeline.append(PhaseSpec(
            row["name"], function_for(row, engine), inputs, after=after,
            announces=tuple(row.get("announces", ())),
            stands=cast(Callable[[Facts], "str | None"], phase_function(stands)) if stands else None,
            **{flag: bool(row.get(flag)) for flag in _FLAGS},
        ))
    return pipeline


def function_for(row: dict[str, Any], engine: str) -> Callable[..., Any]:
    """The function of a row of the phase table (or of ``names.RESTORE``) on ``engine``: the
    engine's own where the row names one, else the row's."""
    own = row.get("engine", {}).get(engine)
    return phase_function(own, engine) if own is not None else phase_function(row["run"])
