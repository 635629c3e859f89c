"""The checkpoint bracket: around every unit of work (a phase, a rollback, a phase on
demand) it opens the log, builds the context, runs the unit, records the outcome and
reports it, so none can forget its checkpoint; and the resume policy (why a phase runs
again, on what fingerprint).
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from surefoot.base import events
from surefoot.base.errors import ConfigError, Interrupted, LockLost, PhaseFailed, StackUntouched, StateError
from surefoot.base.secrets import Redactor
from surefoot.config.configure import Prompter
from surefoot.config.settings import Settings
from surefoot.config.values import PhaseSettings
from surefoot.deploy.api import Facts, PhaseContext, PhaseResult
from surefoot.deploy.pipeline import PhaseSpec
from surefoot.engines.base import Engine
from surefoot.hosts.base import Host
from surefoot.proc import CancelToken
from surefoot.store import PhaseRun, StateStore, now_iso, private_folder

TAIL_LINES = 20


@dataclass(frozen=True)
class DeployOptions:
    fresh: bool = False
    resume_only: bool = False
    assume_yes: bool = False
    interactive: bool = True  # False: never ask (--non-interactive); also when there is no terminal
    values: tuple[tuple[str, str], ...] = ()  # --set KEY=VALUE
    skip_checks: tuple[str, ...] = ()  # --skip-check NAME
    dry_run: bool = False  # prerequisites: only list what would change
    # Run the pipeline up to this phase only, then leave the deployment to be resumed (a
    # rollout over several targets: what changes nothing running first, on every target).
    until: str | None = None


@dataclass(frozen=True)
class DeployOutcome:
    # completed | failed | interrupted | rolled-back | nothing-to-resume | paused (until)
    state: str
    deployment_id: int | None
    failed_phase: str | None = None
    error: str | None = None
    log_path: Path | None = None
    tail: tuple[str, ...] = ()
    signum: int | None = None
    restored_release: int | None = None
    from_release: int | None = None  # a rollback by hand: the release it replaced
    notes: tuple[str, ...] = ()
    usage_error: bool = False  # a configuration problem found while running (exit 2)
    untouched: bool = False  # the failed phase left the running stack as it was: no rollback


class UnitFailed(Exception):
    """A unit of work failed; its outcome is recorded and carried to the caller."""

    def __init__(self, outcome: DeployOutcome):
        self.outcome = outcome


class PhaseLog:
    """One phase run's log file, plus the last lines kept for the failure report."""

    def __init__(self, path: Path, redact: Callable[[str], str]):
        self.path = path
        self._redact = redact
        self.error: OSError | None = None  # the first write that failed (a full disk, say)
        try:
            private_folder(path.parent)
            self._file: IO[str] = open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),  # noqa: SIM115
                                       "a", encoding="utf-8")
            os.chmod(path, 0o600)
        except OSError as exc:
            raise StateError(f"{path}: cannot write the phase log: {exc.strerror}") from None
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()  # a phase may write from two threads (build's groups)

    def write(self, line: str) -> str:
        """Log a line. A failed write is remembered, not raised: the phase's work is not cut in half."""
        line = self._redact(line)
        with self._lock:
            self.tail.append(line)
            if self.error is None:
                try:
                    self._file.write(f"{now_iso()} {line}\n")
                    self._file.flush()
                except OSError as exc:
                    self.error = exc
        return line

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


def settings_digest(model: PhaseSettings) -> str:
    """What the operator wrote for a phase (keys left out take their defaults): a key that a
    later surefoot adds, or a default it changes, does not make completed phases run again."""
    return hashlib.sha256(model.model_dump_json(exclude_unset=True).encode()).hexdigest()


def who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


@dataclass
class Checkpoints:
    """Runs units of work inside the bracket, and decides which phases run again."""

    settings: Settings
    state_dir: Path
    reporter: events.Reporter
    redact: Redactor
    clock: Callable[[], float]
    cancel: CancelToken
    host: Host  # the server: host probes and host commands run there
    control: Host | None = None  # this machine (where hooks run by default); None: the same as host
    where: str = "this machine"  # the host as messages name it (a server: its target's name)

    def why_run(
        self, store: StateStore, deployment_id: int, spec: PhaseSpec, last: PhaseRun | None,
        reran: list[str], facts: Facts,
    ) -> str | None:
        """Why ``spec`` must run now, or None when it need not (recorded and reported)."""
        if not self.settings.phases.for_phase(spec.name).enabled:
            if last is None or last.status != "skipped" or last.reason != "disabled":
                run = store.start_phase(deployment_id, spec.name, None, "disabled")
                store.finish_phase(run.id, "skipped", fingerprint={})
            self.reporter.emit(events.PhaseSkipped(spec.name, "disabled in surefoot.toml", "skipped"))
            return None
        if last is None:
            return "first run"
        if last.status not in ("completed", "skipped"):
            return f"resuming after it was {last.status}"
        if reran:
            return f"{', '.join(reran)} ran again"
        try:
            current = self.fingerprint(spec, facts)
        except PhaseFailed as exc:
            return f"its inputs could not be read ({exc.summary})"
        if current == last.fingerprint:
            gone = self._gone(spec, facts) if last.status == "completed" else None
            if gone is not None:  # what it made was undone since (the stack taken down, images pruned)
                return gone
            self.reporter.emit(events.PhaseSkipped(spec.name, "done before, inputs unchanged", last.status))
            return None
        before = last.fingerprint or {}
        changed = sorted(k for k in current if current.get(k) != before.get(k))
        return "inputs changed since it completed: " + ", ".join(changed or ["all"])

    @staticmethod
    def _gone(spec: PhaseSpec, facts: Facts) -> str | None:
        if spec.stands is None:
            return None
        try:
            return spec.stands(facts)
        except PhaseFailed as exc:
            return f"what it made cannot be checked ({exc.summary})"

    def fingerprint(self, spec: PhaseSpec, facts: Facts) -> dict[str, str]:
        values = {"settings": settings_digest(self.settings.phases.for_phase(spec.name))}
        for name in spec.depends:
            values[name] = facts.input(name)
        return values

    def bracket(
        self,
        name: str,
        headline: str,
        log_path: Path,
        deployment_id: int,
        engine: Engine,
        facts: Facts,
        body: Callable[[PhaseContext], PhaseResult],
        record: Callable[[str, str | None, str | None, int | None], None],
        reached: Callable[[str], None] | None = None,
        *,
        options: DeployOptions = DeployOptions(),
        prompter: Prompter | None = None,
    ) -> PhaseResult:
        """Run ``body`` with a log and a context, then ``record`` its outcome; raise on failure."""
        log = PhaseLog(log_path, self.redact)
        log.write(f"{name}, {headline}")
        began = self.clock()

        def out(line: str) -> None:
            self.reporter.emit(events.PhaseOutput(name, log.write(line)))

        def warn(text: str) -> None:
            text = log.write("WARNING: " + text).removeprefix("WARNING: ")
            self.reporter.emit(events.PhaseWarning(name, text))

        ctx = PhaseContext(
            name=name,
            settings=self.settings,
            phase_settings=self.settings.phases.for_phase(name) if name != "rollback" else PhaseSettings(),
            engine=engine,
            facts=facts,
            cancel=self.cancel,
            clock=self.clock,
            out=out,
            progress=lambda text: self.reporter.emit(events.PhaseProgress(name, self.redact(text))),
            warn=warn,
            deployment_id=deployment_id,
            state_dir=self.state_dir,
            prompter=prompter,
            values=dict(options.values),
            assume_yes=options.assume_yes,
            add_secret=self.redact.add,
            redact=self.redact,
            skip_checks=options.skip_checks,
            dry_run=options.dry_run,
            host=self.host,
            control=self.control or self.host,
            where=self.where,
        )
        if reached is not None:
            ctx.reached = reached

        def finish(status: str, note: str | None, error: str | None = None, code: int | None = None) -> None:
            record(status, note, error, code)
            self.reporter.emit(events.PhaseFinished(name, status, self.clock() - began, note))
            log.close()

        def failure(summary: str, usage: bool = False, untouched: bool = False) -> UnitFailed:
            return UnitFailed(DeployOutcome("failed", deployment_id, name, summary, log.path,
                                            tuple(log.tail), usage_error=usage, untouched=untouched))

        try:
            result = body(ctx)
        except Interrupted as exc:
            log.write(f"interrupted by signal {exc.signum}")
            finish("interrupted", None, f"interrupted by signal {exc.signum}")
            raise
        except LockLost as exc:  # nothing more may change on the target: no rollback either
            log.write(f"STOPPED: {exc}")
            finish("interrupted", None, str(exc))
            raise
        except PhaseFailed as exc:
            summary = self.redact(exc.summary)
            if exc.details:
                for line in exc.details.strip().splitlines()[-TAIL_LINES:]:
                    log.write(line)
            log.write(f"FAILED: {summary}")
            finish("failed", summary, summary, exc.command_exit_code)
            raise failure(summary, untouched=isinstance(exc, StackUntouched)) from None
        except ConfigError as exc:
            summary = self.redact(str(exc))
            log.write(f"FAILED: {summary}")
            finish("failed", summary, summary)
            raise failure(summary, usage=True) from None
        except Exception as exc:  # a bug of ours: keep the evidence, stay resumable
            for line in traceback.format_exc().splitlines():
                log.write(line)
            summary = self.redact(f"internal error: {type(exc).__name__}: {exc}")
            finish("failed", summary, summary)
            raise failure(summary) from None
        note = result.note and self.redact(result.note)
        log.write(f"{result.status}" + (f": {note}" if note else ""))
        if log.error is not None:
            summary = f"{log.path}: cannot write the phase log: {log.error.strerror}"
            finish("failed", summary, summary)
            raise StateError(summary)
        finish(result.status, note)
        return result
