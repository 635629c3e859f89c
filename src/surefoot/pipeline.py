"""The phase list's shape: what each phase waits for and depends on.

The phases themselves are registered in :mod:`surefoot.registry`; what a phase sees
(its context, its result) is :mod:`surefoot.phase_api`, re-exported here for older imports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from surefoot.phase_api import (
    Facts,
    InputName,
    PhaseContext,
    PhaseResult,
    _tree_digest,
    done,
    skipped,
)

__all__ = ["Facts", "InputName", "PhaseContext", "PhaseResult", "PhaseSpec", "_tree_digest", "done", "ordered",
           "skipped"]


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
