"""Run the pipeline: the lock, checkpoints, fingerprints, logs and interruptions.

The runner is the only writer of the state store. One bracket,
:meth:`Runner._run_phase`, records "started -> ran -> outcome" around every
phase, so no phase can forget its checkpoint.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from surefoot import events
from surefoot.compose import Compose, Target
from surefoot.config import PhaseSettings, Settings
from surefoot.errors import Interrupted, PhaseFailed
from surefoot.lock import ProjectLock
from surefoot.pipeline import Facts, PhaseContext, PhaseResult, PhaseSpec, build_pipeline
from surefoot.proc import CancelToken, ProcessRunner
from surefoot.secrets import Redactor
from surefoot.state import PhaseRun, StateStore, now_iso

STATE_DB = "state.db"
TAIL_LINES = 20


@dataclass(frozen=True)
class DeployOptions:
    fresh: bool = False
    resume_only: bool = False


@dataclass(frozen=True)
class DeployOutcome:
    state: str  # completed | failed | interrupted | nothing-to-resume
    deployment_id: int | None
    failed_phase: str | None = None
    error: str | None = None
    log_path: Path | None = None
    tail: tuple[str, ...] = ()
    signum: int | None = None


class _Failed(Exception):
    def __init__(self, outcome: DeployOutcome):
        self.outcome = outcome


class PhaseLog:
    """One phase run's log file, plus the last lines kept for the failure report."""

    def __init__(self, path: Path, redact: Callable[[str], str]):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._redact = redact
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115
        os.chmod(path, 0o600)
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def write(self, line: str) -> str:
        line = self._redact(line)
        self._file.write(f"{now_iso()} {line}\n")
        self._file.flush()
        self.tail.append(line)
        return line

    def close(self) -> None:
        self._file.close()


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def settings_digest(model: PhaseSettings) -> str:
    return hashlib.sha256(model.model_dump_json().encode()).hexdigest()


@dataclass
class Runner:
    settings: Settings
    state_dir: Path
    reporter: events.Reporter
    cancel: CancelToken = field(default_factory=CancelToken)
    clock: Callable[[], float] = time.monotonic
    pipeline: list[PhaseSpec] | None = None

    def __post_init__(self) -> None:
        self.redact = Redactor.from_env_file(self.settings.env_file)
        target = Target(
            project_name=self.settings.project_name,
            project_dir=self.settings.project_dir,
            compose_files=self.settings.compose_files,
            env_file=self.settings.env_file,
        )
        self.compose = Compose(target, ProcessRunner(self.cancel))
        self.facts = Facts(self.settings, self.compose)

    # -- the deployment ---------------------------------------------------------
    def deploy(self, options: DeployOptions) -> DeployOutcome:
        project = self.settings.project_name
        with StateStore.open(self.state_dir / STATE_DB) as store, ProjectLock(self.state_dir):
            latest = store.latest_deployment(project)
            if latest is not None and latest.state == "running":
                # We hold the lock, so whoever left it running is gone.
                store.mark_abandoned(latest)
                latest = store.latest_deployment(project)
            unfinished = latest if latest and latest.state in ("failed", "interrupted") else None
            previous: dict[str, PhaseRun] = {}
            if options.fresh or unfinished is None:
                if options.resume_only and not options.fresh:
                    return DeployOutcome("nothing-to-resume", latest.id if latest else None)
                kind = "fresh" if latest is None or options.fresh else "update"
                deployment_id = store.create_deployment(
                    project, kind, os.getpid(), socket.gethostname(), _who()
                )
            else:
                kind = "resume"
                deployment_id = unfinished.id
                store.claim_deployment(deployment_id, os.getpid(), socket.gethostname())
                previous = store.latest_runs(deployment_id)
            store.add_event(deployment_id, "deploy", f"{kind} by {_who()} (pid {os.getpid()})")
            pipeline = self.pipeline or build_pipeline()
            self.reporter.emit(
                events.DeploymentStarted(deployment_id, project, kind, tuple(p.name for p in pipeline))
            )
            started = self.clock()
            try:
                self._run_pipeline(store, deployment_id, pipeline, previous)
            except Interrupted as exc:
                store.set_deployment_state(deployment_id, "interrupted", str(exc))
                store.add_event(deployment_id, "interrupted", str(exc))
                self.reporter.emit(
                    events.DeploymentFinished(deployment_id, "interrupted", self.clock() - started)
                )
                return DeployOutcome("interrupted", deployment_id, signum=exc.signum)
            except _Failed as failed:
                outcome = failed.outcome
                store.set_deployment_state(deployment_id, "failed", outcome.error)
                self.reporter.emit(
                    events.DeploymentFinished(deployment_id, "failed", self.clock() - started)
                )
                return outcome
            store.set_deployment_state(deployment_id, "completed")
            store.add_event(deployment_id, "completed", "deployment completed")
            self.reporter.emit(
                events.DeploymentFinished(deployment_id, "completed", self.clock() - started)
            )
            return DeployOutcome("completed", deployment_id)

    def _run_pipeline(
        self,
        store: StateStore,
        deployment_id: int,
        pipeline: list[PhaseSpec],
        previous: dict[str, PhaseRun],
    ) -> None:
        rerun_rest = False  # once a phase runs, every later phase runs too
        for index, spec in enumerate(pipeline, start=1):
            self.cancel.check()
            phase_settings = self.settings.phases.for_phase(spec.name)
            last = previous.get(spec.name)
            if not phase_settings.enabled:
                if last is None or last.status != "skipped" or last.reason != "disabled":
                    self._record_disabled(store, deployment_id, spec.name)
                self.reporter.emit(events.PhaseSkipped(spec.name, "disabled in surefoot.toml", "skipped"))
                continue
            if last is None:
                reason = "first run"
            elif last.status in ("completed", "skipped") and not rerun_rest:
                try:
                    current = self._fingerprint(spec)
                except PhaseFailed as exc:
                    current, reason = None, f"its inputs could not be read ({exc.summary})"
                if current is not None and current == last.fingerprint:
                    self.reporter.emit(
                        events.PhaseSkipped(spec.name, "done before, inputs unchanged", last.status)
                    )
                    continue
                if current is not None:
                    changed = sorted(k for k in current if current.get(k) != (last.fingerprint or {}).get(k))
                    reason = "inputs changed since it completed: " + ", ".join(changed or ["all"])
            else:
                reason = f"resuming after it was {last.status}"
            rerun_rest = True
            self._run_phase(store, deployment_id, index, spec, reason)

    def _record_disabled(self, store: StateStore, deployment_id: int, name: str) -> None:
        run = store.start_phase(deployment_id, name, None, "disabled")
        store.finish_phase(run.id, "skipped", fingerprint={})

    def _fingerprint(self, spec: PhaseSpec) -> dict[str, str]:
        values = {"settings": settings_digest(self.settings.phases.for_phase(spec.name))}
        for name in spec.depends:
            values[name] = self.facts.input(name)
        return values

    def _run_phase(
        self, store: StateStore, deployment_id: int, index: int, spec: PhaseSpec, reason: str
    ) -> None:
        name = spec.name
        logs = self.state_dir / "logs" / f"deployment-{deployment_id}"
        # One log per phase and deployment; each attempt appends to it.
        log = PhaseLog(logs / f"{index:02d}-{name}.log", self.redact)
        run = store.start_phase(deployment_id, name, str(log.path), reason)
        self.reporter.emit(events.PhaseStarted(name, run.attempt, reason))
        log.write(f"phase {name}, attempt {run.attempt}: {reason}")
        began = self.clock()

        def out(line: str) -> None:
            self.reporter.emit(events.PhaseOutput(name, log.write(line)))

        def warn(text: str) -> None:
            text = log.write("WARNING: " + text).removeprefix("WARNING: ")
            self.reporter.emit(events.PhaseWarning(name, text))
            store.add_event(deployment_id, "warning", text, name)

        ctx = PhaseContext(
            name=name,
            settings=self.settings,
            phase_settings=self.settings.phases.for_phase(name),
            compose=self.compose,
            facts=self.facts,
            cancel=self.cancel,
            clock=self.clock,
            out=out,
            progress=lambda text: self.reporter.emit(events.PhaseProgress(name, self.redact(text))),
            warn=warn,
        )

        def finish(status: str, note: str | None, **fields: object) -> None:
            store.finish_phase(run.id, status, **fields)  # type: ignore[arg-type]
            self.reporter.emit(events.PhaseFinished(name, status, self.clock() - began, note))

        try:
            fingerprint = self._fingerprint(spec)
            result: PhaseResult = spec.run(ctx)
        except Interrupted as exc:
            log.write(f"interrupted by signal {exc.signum}")
            finish("interrupted", None, error=f"interrupted by signal {exc.signum}")
            store.add_event(deployment_id, "interrupted", str(exc), name)
            log.close()
            raise
        except PhaseFailed as exc:
            summary = self.redact(exc.summary)
            if exc.details:
                for line in exc.details.strip().splitlines()[-TAIL_LINES:]:
                    log.write(line)
            log.write(f"FAILED: {summary}")
            finish("failed", summary, exit_code=exc.command_exit_code, error=summary)
            store.add_event(deployment_id, "failed", summary, name)
            log.close()
            raise _Failed(
                DeployOutcome("failed", deployment_id, name, summary, log.path, tuple(log.tail))
            ) from None
        except Exception as exc:  # a bug of ours: keep the evidence, stay resumable
            for line in traceback.format_exc().splitlines():
                log.write(line)
            summary = self.redact(f"internal error: {type(exc).__name__}: {exc}")
            finish("failed", summary, error=summary)
            log.close()
            raise _Failed(
                DeployOutcome("failed", deployment_id, name, summary, log.path, tuple(log.tail))
            ) from None
        log.write(f"{result.status}" + (f": {result.note}" if result.note else ""))
        finish(result.status, result.note and self.redact(result.note), fingerprint=fingerprint)
        log.close()
