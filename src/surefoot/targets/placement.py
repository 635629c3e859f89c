"""Which services run on a target, and where the release's migration runs.

With one target, every service runs there and so does the migration. With several that declare
their services (``[targets.NAME] services``), each runs its own, those no other target declares
run on the targets that declare none, and the migration runs once a release: on the first target
that runs its service (:func:`place`). The phases read it as data (``ctx.facts``); the engines
never know of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    declared: tuple[str, ...] | None = None  # the services this target declares (None: not declared)
    claimed: tuple[str, ...] = ()  # those the other targets of the deployment declare
    migrates: bool = True  # the migration runs here

    def only(self, services: Iterable[str]) -> frozenset[str] | None:
        """Of the project's ``services``, those that run here; None when all of them do."""
        if self.declared is not None:
            return frozenset(self.declared)
        if not self.claimed:
            return None
        return frozenset(name for name in services if name not in self.claimed)

    def runs(self, service: str, services: Iterable[str]) -> bool:
        only = self.only(services)
        return only is None or service in only


@dataclass(frozen=True)
class Member:
    """A target as :func:`place` needs it: its name, the services it declares and the others'."""

    name: str
    declared: tuple[str, ...] | None
    claimed: tuple[str, ...] = ()


def place(members: Sequence[Member], services: Sequence[str], databases: Sequence[str],
          migrating: str | None) -> list[tuple[str, Placement]]:
    """Each target's placement, in the order they go: the targets that run a database first;
    the migration on the first that runs ``migrating`` (each target runs its own when no target
    declares its services)."""
    placed = [(m.name, Placement(m.declared, m.claimed)) for m in members]
    if all(placement.only(services) is None for _, placement in placed):
        return placed
    placed.sort(key=lambda item: not any(item[1].runs(name, services) for name in databases))
    first = next((name for name, placement in placed if migrating and placement.runs(migrating, services)), None)
    return [(name, Placement(p.declared, p.claimed, migrates=name == first)) for name, p in placed]
