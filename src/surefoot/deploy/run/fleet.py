"""Several targets: one rollout, in batches, each target behind its gate, never left on mixed
versions (issue 15).

1. Every target is connected and locked before anything changes (an unreachable one, or one
   locked by another deployment, stops the rollout with nothing changed).
2. What changes nothing running (preflight, prerequisites, configuration, pulls, builds) runs
   on every target side by side (each target's deployment paused after ``build``).
3. The targets are then updated ``[rollout] batch`` at a time, side by side within a batch,
   each by its own pipeline (its database start and migration, services, health gate).
4. When a target fails, the rollout stops; with ``on_failure = "rollback"`` every target it
   updated goes back to its previous release (gated; the failed one is rolled back by its own
   pipeline), with ``"halt"`` nothing more is done.

Each target keeps its own state (``.surefoot/targets/NAME/``); the rollout's own record is
``.surefoot/rollout.json`` (which targets reached the new release), so that ``deploy`` after
a kill or a halt goes on from where the rollout stopped instead of updating again the targets
already done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from surefoot.base import events
from surefoot.base.errors import LockHeld, SurefootError
from surefoot.config.settings import Settings
from surefoot.deploy.pipeline import PhaseSpec
from surefoot.deploy.run.checkpoint import DeployOptions, DeployOutcome
from surefoot.deploy.run.runner import STATE_DB, Runner
from surefoot.proc import CancelToken
from surefoot.store import StateStore, now_iso, private_folder
from surefoot.targets.choose import TargetChoice
from surefoot.targets.open import Target, open_target
from surefoot.targets.placement import Member as PlacedMember
from surefoot.targets.placement import Placement, place

RECORD = "rollout.json"
PREPARED_UNTIL = "build"  # the last phase that changes nothing running
CONFIGURED_UNTIL = "configuration"  # the phases the first target runs alone


class TargetReporter:
    """A target's events, named after it, to the one renderer (plain lines: targets run side
    by side)."""

    def __init__(self, inner: events.Reporter, name: str):
        self.inner = inner
        self.name = name

    def emit(self, event: events.Event) -> None:
        if isinstance(event, events.DeploymentStarted):
            event = dataclasses.replace(event, project=f"{event.project} on {self.name}")
        elif isinstance(event, events.PhaseWarning):
            event = dataclasses.replace(event, phase=f"{self.name} {event.phase or 'deploy'}")
        elif isinstance(event, events.DeploymentFinished):
            event = events.PhaseWarning(None, f"{self.name}: deployment #{event.deployment_id} {event.state}")
        elif hasattr(event, "phase"):
            event = dataclasses.replace(event, phase=f"{self.name} {event.phase}")
        self.inner.emit(event)

    def paused(self) -> contextlib.AbstractContextManager[None]:
        return self.inner.paused()

    def close(self) -> None:
        pass


@dataclasses.dataclass
class Member:
    """One target of the rollout and what became of it."""

    choice: TargetChoice
    runner: Runner
    previous: int | None = None  # its release before the rollout
    state: str = "pending"  # pending | prepared | completed | failed | rolled-back | restored | untouched
    release: int | None = None
    error: str | None = None
    now: int | None = None  # its release at the end


@dataclasses.dataclass(frozen=True)
class FleetOutcome:
    state: str  # completed | rolled-back | failed | halted | interrupted | nothing-to-resume
    members: tuple[Member, ...]
    error: str | None = None

    def matrix(self) -> list[str]:
        width = max(len(m.choice.name) for m in self.members)
        lines = [f"  {'target':<{width}}  {'before':>6}  {'now':>6}  state"]
        for m in self.members:
            lines.append(f"  {m.choice.name:<{width}}  {m.previous or '-':>6}  {m.now or '-':>6}  {m.state}"
                         + (f": {m.error}" if m.error else ""))
        return lines


class Fleet:
    """A rollout over several servers (see the module)."""

    def __init__(self, settings: Settings, choices: list[TargetChoice], state_base: Path, reporter: events.Reporter,
                 cancel: CancelToken, *, opener: Callable[[TargetChoice], Target] | None = None,
                 pipeline: list[PhaseSpec] | None = None):
        self.settings = settings
        self.choices = choices
        self.state_base = state_base
        self.reporter = reporter
        self.cancel = cancel
        # how a target is opened (default: connected, open_target); the pipeline every target
        # runs (default: the phase table's for its engine)
        self.opener = opener or (lambda choice: open_target(settings, choice, state_base, cancel))
        self.pipeline = pipeline

    def deploy(self, options: DeployOptions) -> FleetOutcome:
        with ExitStack() as stack:
            targets = self._connect(stack)
            for target in targets:  # every lock first, in a fixed order; held to the end
                try:
                    target.hold_lock()
                except LockHeld as exc:
                    raise LockHeld(f"{exc}; nothing was changed on any target", exc.pid, exc.host,
                                   exc.since) from None
            by_name = {target.choice.name: target for target in targets}
            members = []
            for name, placement in self._place(targets):
                target = by_name[name]
                store = stack.enter_context(StateStore.open(target.state_dir / STATE_DB))
                runner = Runner(self.settings, target, store, TargetReporter(self.reporter, name),
                                pipeline=self.pipeline, placement=placement)
                members.append(Member(target.choice, runner, store.current_release(self.settings.project_name)))
            outcome = self._roll(members, dataclasses.replace(options, interactive=False))
            for m in members:
                m.now = m.runner.store.current_release(self.settings.project_name)
            return outcome

    def _place(self, targets: list[Target]) -> list[tuple[str, Placement]]:
        """Where targets run only some services (``[targets.NAME] services``): the order the
        targets go in and where the migration runs (:func:`surefoot.targets.placement.place`);
        the compose model is read only then."""
        members = [PlacedMember(t.choice.name, t.choice.services, t.choice.claimed) for t in targets]
        if all(m.declared is None and not m.claimed for m in members):
            return [(m.name, Placement()) for m in members]
        model = targets[0].engine.model()  # the files are read here: every target's is the same
        configured = self.settings.phases.database_start.services
        databases = list(configured) if configured is not None else model.database_services()
        return place(members, list(model.services), databases, self.settings.phases.database_migrate.service)

    def _connect(self, stack: ExitStack) -> list[Target]:
        """Every target, connected side by side; one that cannot be reached fails the rollout
        before anything is changed."""
        with ThreadPoolExecutor(len(self.choices)) as pool:
            futures = [pool.submit(self.opener, choice) for choice in self.choices]
        targets, errors = [], []
        for choice, future in zip(self.choices, futures, strict=True):
            try:
                target = future.result()
            except SurefootError as exc:
                errors.append(f"{choice.name}: {exc}")
                continue
            stack.callback(target.close)
            targets.append(target)
        if errors:
            raise SurefootError("cannot reach every target, nothing was changed: " + "; ".join(errors))
        return targets

    # -- the rollout -------------------------------------------------------------------
    def _record(self) -> dict[str, Any]:
        try:
            data = json.loads((self.state_base / RECORD).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, record: dict[str, Any]) -> None:
        path = self.state_base / RECORD
        private_folder(path.parent)
        temporary = path.with_suffix(".tmp")
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
            file.write(json.dumps(record, indent=2) + "\n")
        temporary.replace(path)

    def _finish(self, record: dict[str, Any], state: str, members: list[Member]) -> None:
        """The rollout ended: its outcome, per target, goes to the history (newest last)."""
        record["state"] = state
        history = record.setdefault("history", [])
        history.append({
            "rollout": len(history) + 1, "started_at": record.get("started_at"), "finished_at": now_iso(),
            "outcome": state,
            "targets": {m.choice.name: {"release": m.release, "previous": m.previous, "state": m.state,
                                        "error": m.error} for m in members},
        })
        del history[:-50]
        self._save(record)

    def _roll(self, members: list[Member], options: DeployOptions) -> FleetOutcome:
        names = [m.choice.name for m in members]
        record = self._record()
        if options.resume_only and record.get("state") not in ("running", "halted"):
            return FleetOutcome("nothing-to-resume", tuple(members))
        if record.get("state") in ("running", "halted") and record.get("targets_all") == names and not options.fresh:
            done = {name for name, state in record.get("targets", {}).items() if state == "completed"}
        else:
            done = set()
            record = {"started_at": now_iso(), "targets_all": names, "targets": {},
                      "history": record.get("history", [])}
        record["state"] = "running"
        for m in members:
            if m.choice.name in done:
                m.state, m.release = "completed", m.runner.store.current_release(self.settings.project_name)
                m.previous = record.get("previous", {}).get(m.choice.name, m.previous)
        record.setdefault("previous", {m.choice.name: m.previous for m in members})
        self._save(record)

        todo = [m for m in members if m.state != "completed"]
        # 1. what changes nothing running, everywhere at once
        def prepare(m: Member) -> DeployOutcome:
            return m.runner.deploy(dataclasses.replace(options, until=PREPARED_UNTIL))

        # The first target's configuration comes first, alone (it may ask questions and write the
        # env file every target reads); then every target prepares side by side: images built
        # here (build = "control" or "registry") are built once, by whichever target gets there
        # first, and shipped to every server at once.
        def configure(m: Member) -> DeployOutcome:
            return m.runner.deploy(dataclasses.replace(options, until=CONFIGURED_UNTIL))

        configured = self._side_by_side(todo[:1], configure)
        if any(outcome.state == "interrupted" for _, outcome in configured):
            return FleetOutcome("interrupted", tuple(members), "interrupted")
        stopped = [(m, outcome) for m, outcome in configured if outcome.state != "paused"]  # failed alone
        prepared = stopped + self._side_by_side([m for m in todo if all(m is not f for f, _ in stopped)], prepare)
        if any(outcome.state == "interrupted" for _, outcome in prepared):
            return FleetOutcome("interrupted", tuple(members), "interrupted")
        failed = [m for m, outcome in prepared if outcome.state != "paused"]
        for m, outcome in prepared:
            m.state = "prepared" if outcome.state == "paused" else "failed"
            m.error = outcome.error
        if failed:
            for m in todo:
                if m.state == "prepared":
                    m.state = "untouched"
            self._finish(record, "failed", members)
            return FleetOutcome("failed", tuple(members), "; ".join(f"{m.choice.name}: {m.error}" for m in failed))
        # 2. batch by batch
        size = self.settings.rollout.batch_size(len(members))
        for start in range(0, len(todo), size):
            batch = todo[start:start + size]
            results = self._side_by_side(batch, lambda m: m.runner.deploy(options))
            if any(outcome.state == "interrupted" for _, outcome in results):
                for m, outcome in results:
                    if outcome.state == "completed":
                        m.state = "completed"
                        record["targets"][m.choice.name] = "completed"
                self._save(record)  # still running: deploy goes on from here
                return FleetOutcome("interrupted", tuple(members), "interrupted")
            broken = []
            for m, outcome in results:
                m.error = outcome.error
                if outcome.state == "completed":
                    m.state, m.release = "completed", outcome.deployment_id
                    record["targets"][m.choice.name] = "completed"
                else:
                    m.state = "rolled-back" if outcome.state == "rolled-back" else "failed"
                    record["targets"][m.choice.name] = m.state
                    broken.append(m)
            self._save(record)
            if broken:
                return self._after_failure(members, broken, record)
        self._finish(record, "completed", members)
        return FleetOutcome("completed", tuple(members))

    def _after_failure(self, members: list[Member], broken: list[Member], record: dict[str, Any]) -> FleetOutcome:
        error = "; ".join(f"{m.choice.name}: {m.error}" for m in broken)
        for m in members:
            if m.state == "prepared":
                m.state = "untouched"
        if self.settings.rollout.on_failure == "halt":
            self._finish(record, "halted", members)
            return FleetOutcome("halted", tuple(members), error)
        updated = [m for m in members if m.state == "completed"]
        restored = self._side_by_side(updated, self._restore)
        for m, outcome in restored:
            m.state = "restored" if outcome.state == "restored" else "failed"
            if outcome.state != "restored":
                m.error = outcome.error or f"could not go back to release {m.previous}"
        back = all(m.state in ("restored", "rolled-back", "untouched") for m in members)
        record["targets"] = {}  # the next deploy is a new rollout
        self._finish(record, "rolled-back" if back else "failed", members)
        return FleetOutcome("rolled-back" if back else "failed", tuple(members), error)

    def _restore(self, member: Member) -> DeployOutcome:
        if member.previous is None:
            return DeployOutcome("failed", None, error="no previous release to go back to")
        return member.runner.rollback(member.previous)

    def _side_by_side(self, members: list[Member],
                      work: Callable[[Member], DeployOutcome]) -> list[tuple[Member, DeployOutcome]]:
        if not members:
            return []

        def guarded(member: Member) -> DeployOutcome:
            try:
                return work(member)
            except SurefootError as exc:  # e.g. the connection to it dropped
                return DeployOutcome("failed", None, error=str(exc))

        with ThreadPoolExecutor(len(members)) as pool:
            outcomes = list(pool.map(guarded, members))
        return list(zip(members, outcomes, strict=True))
