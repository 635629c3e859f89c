"""What a deployment tells its renderers. The runner and the phases never print."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class DeploymentStarted:
    deployment_id: int
    project: str
    kind: str  # fresh | update | resume
    phases: tuple[str, ...]


@dataclass(frozen=True)
class PhaseSkipped:
    phase: str
    reason: str
    status: str  # completed (kept from before) | skipped (disabled or nothing to do)


@dataclass(frozen=True)
class PhaseStarted:
    phase: str
    attempt: int
    reason: str


@dataclass(frozen=True)
class PhaseOutput:
    phase: str
    line: str


@dataclass(frozen=True)
class PhaseProgress:
    phase: str
    text: str


@dataclass(frozen=True)
class PhaseWarning:
    phase: str | None
    text: str


@dataclass(frozen=True)
class PhaseFinished:
    phase: str
    status: str  # completed | skipped | failed | interrupted
    elapsed: float
    note: str | None


@dataclass(frozen=True)
class DeploymentFinished:
    deployment_id: int
    state: str
    elapsed: float


Event = (
    DeploymentStarted
    | PhaseSkipped
    | PhaseStarted
    | PhaseOutput
    | PhaseProgress
    | PhaseWarning
    | PhaseFinished
    | DeploymentFinished
)


class Reporter(Protocol):
    def emit(self, event: Event) -> None: ...

    def paused(self) -> AbstractContextManager[None]:
        """Stop drawing while the operator is asked something on the terminal."""
        ...

    def close(self) -> None: ...


class NullReporter:
    def emit(self, event: Event) -> None:
        pass

    def paused(self) -> AbstractContextManager[None]:
        return nullcontext()

    def close(self) -> None:
        pass
