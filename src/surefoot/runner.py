"""Run the pipeline: the lock, checkpoints, fingerprints, logs, releases and rollback.

The runner is the only writer of the state store. One bracket,
:meth:`Runner._bracket`, records "started -> ran -> outcome" around every unit of
work (each phase, and each rollback), so none can forget its checkpoint.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import queue
import shlex
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from surefoot import events
from surefoot.ahead import AskedAhead
from surefoot.compose import Compose, Target
from surefoot.config import PhaseSettings, ProbeSettings, Settings
from surefoot.configure import PausingPrompter, Prompter, TerminalPrompter
from surefoot.errors import (
    CommandNotFound,
    ConfigError,
    Interrupted,
    PhaseFailed,
    StackUntouched,
    StateError,
    SurefootError,
)
from surefoot.host import LocalHost
from surefoot.lock import ProjectLock
from surefoot.notify import Notifier
from surefoot.pipeline import Facts, PhaseContext, PhaseResult, PhaseSpec, build_pipeline, done, ordered
from surefoot.proc import CancelToken, ProcessRunner
from surefoot.releases import ReleaseKeeper
from surefoot.secrets import Redactor
from surefoot.state import PhaseRun, Release, StateStore, now_iso

STATE_DB = "state.db"
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


@dataclass(frozen=True)
class DeployOutcome:
    # completed | failed | interrupted | rolled-back | nothing-to-resume
    state: str
    deployment_id: int | None
    failed_phase: str | None = None
    error: str | None = None
    log_path: Path | None = None
    tail: tuple[str, ...] = ()
    signum: int | None = None
    restored_release: int | None = None
    notes: tuple[str, ...] = ()
    usage_error: bool = False  # a configuration problem found while running (exit 2)
    untouched: bool = False  # the failed phase left the running stack as it was: no rollback


NO_HEALTH_PROBE = ("no health probe configured: nothing checked that the application answers "
                   "(set phases.health-wait.url or probes in surefoot.toml)")


class _Failed(Exception):
    def __init__(self, outcome: DeployOutcome):
        self.outcome = outcome


class NoRelease(SurefootError):
    """There is no release to roll back to (exit 2)."""

    exit_code = 2


class PhaseLog:
    """One phase run's log file, plus the last lines kept for the failure report."""

    def __init__(self, path: Path, redact: Callable[[str], str]):
        self.path = path
        self._redact = redact
        self.error: OSError | None = None  # the first write that failed (a full disk, say)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115
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


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def settings_digest(model: PhaseSettings) -> str:
    """What the operator wrote for a phase (keys left out take their defaults): a key that a
    later surefoot adds, or a default it changes, does not make completed phases run again."""
    return hashlib.sha256(model.model_dump_json(exclude_unset=True).encode()).hexdigest()


def choose_release(store: StateStore, project: str, release_id: int | None, keep: int) -> Release:
    """The release a rollback restores: ``release_id``, or the newest healthy one before the
    current release. Raises NoRelease with the true reason when it cannot be restored."""
    releases = store.releases(project)
    current = store.current_release(project)
    if release_id is None:
        candidates = [r for r in releases
                      if r.outcome == "healthy" and r.id != current and (current is None or r.id < current)]
        if not candidates:
            raise NoRelease("no earlier healthy release to roll back to (see `surefoot history`)")
        target = candidates[0]
    else:
        found = next((r for r in releases if r.id == release_id), None)
        if found is None:
            known = ", ".join(str(r.id) for r in releases) or "none"
            raise NoRelease(f"there is no release {release_id} (releases: {known})")
        target = found
    why_not = {
        "rolled-back": "it failed its deployment and was rolled back",
        "failed": "its deployment failed",
        "pending": "it never passed its health gate",
    }.get(target.outcome)
    if why_not is not None:
        gone = "" if Path(target.files_dir).is_dir() else "; its images and files were removed"
        raise NoRelease(f"release {target.id} cannot be restored: {why_not}{gone} "
                        "(only a release that was healthy can be; see `surefoot history`)")
    if not Path(target.files_dir).is_dir():
        newer = [r.id for r in releases if r.outcome == "healthy" and r.id > target.id]
        if len(newer) >= keep:
            raise NoRelease(f"release {target.id} is past keeping: only the last {keep} healthy releases "
                            "keep their images and files (rollback.keep_releases)")
        raise NoRelease(f"release {target.id} cannot be restored: its files are gone from "
                        f"{target.files_dir} (removed outside surefoot)")
    return target


def describe_release(release: Release) -> str:
    """``release 6 (2026-05-01 10:00 UTC, git abc1234def)`` for the rollback question."""
    when = release.created_at.replace("T", " ")[:16] + " UTC"
    commit = f", git {release.git_commit[:10]}{'-dirty' if release.git_commit.endswith('-dirty') else ''}" \
        if release.git_commit else ""
    return f"release {release.id} ({when}{commit})"


@dataclass
class Runner:
    settings: Settings
    state_dir: Path
    reporter: events.Reporter
    cancel: CancelToken = field(default_factory=CancelToken)
    clock: Callable[[], float] = time.monotonic
    pipeline: list[PhaseSpec] | None = None
    ahead: AskedAhead | None = None  # the first commands, started before the settings were loaded

    def __post_init__(self) -> None:
        self.redact = Redactor.from_env_file(self.settings.env_files)
        target = Target(
            project_name=self.settings.project_name,
            project_dir=self.settings.project_dir,
            compose_files=self.settings.compose_files,
            env_file=self.settings.env_file,
            earlier_env_files=self.settings.earlier_env_files,
        )
        self.processes = ProcessRunner(self.cancel)
        self.compose = Compose(target, self.processes, ahead=self.ahead)
        self.facts = Facts(self.settings, self.compose, self.state_dir)
        self.keeper = ReleaseKeeper(self.settings, self.state_dir, self.compose)
        self.options = DeployOptions()
        self.prompter: Prompter | None = None
        self.notifier = Notifier(
            self.settings.notifications, self.settings.project_name,
            lambda text: self.reporter.emit(events.PhaseWarning(None, text)),
        )

    @contextmanager
    def _locked_store(self) -> Iterator[StateStore]:
        """The store, with the project lock held. A deployment still marked running was
        left by a holder that died (we hold the lock now): it is marked interrupted."""
        with StateStore.open(self.state_dir / STATE_DB) as store, ProjectLock(self.state_dir):
            latest = store.latest_deployment(self.settings.project_name)
            if latest is not None and latest.state == "running":
                store.mark_abandoned(latest)
            yield store

    # -- the deployment ---------------------------------------------------------
    def deploy(self, options: DeployOptions) -> DeployOutcome:
        self.options = options
        self.facts.values = dict(options.values)
        if options.values and (self.settings.env_file is None or not self.settings.phases.configuration.enabled):
            # --set is written by the configuration phase, to the env file: never dropped silently.
            why = ("no env file is configured (project.env_file)" if self.settings.env_file is None
                   else "the configuration phase is disabled (phases.configuration.enabled)")
            raise ConfigError(f"--set cannot be applied: {why}")
        if not options.interactive:
            return self._deploy(options)
        with TerminalPrompter.open() as terminal:
            self.prompter = PausingPrompter(terminal, self.reporter.paused) if terminal else None
            try:
                return self._deploy(options)
            finally:
                self.prompter = None

    def _deploy(self, options: DeployOptions) -> DeployOutcome:
        project = self.settings.project_name
        with self._locked_store() as store:
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
            pipeline = self.pipeline or build_pipeline(self.settings)
            self.reporter.emit(
                events.DeploymentStarted(deployment_id, project, kind, tuple(p.name for p in pipeline))
            )
            self.notifier.send("started", deployment_id, f"{kind} by {_who()}@{socket.gethostname()}")
            started = self.clock()
            try:
                self._run_pipeline(store, deployment_id, pipeline, previous)
            except Interrupted as exc:
                store.set_deployment_state(deployment_id, "interrupted", str(exc))
                store.add_event(deployment_id, "interrupted", str(exc))
                outcome = DeployOutcome("interrupted", deployment_id, signum=exc.signum)
            except _Failed as failed:
                outcome = self._after_failure(store, deployment_id, failed.outcome, pipeline)
            except StateError:
                with contextlib.suppress(StateError):
                    store.set_deployment_state(deployment_id, "failed", "the state folder cannot be written")
                raise
            else:
                store.set_deployment_state(deployment_id, "completed")
                if store.release(project, deployment_id) is not None:
                    store.set_release_outcome(deployment_id, "healthy")
                store.add_event(deployment_id, "completed", "deployment completed")
                warnings = self._unchecked_warnings()
                for text in warnings:
                    store.add_event(deployment_id, "warning", text)
                    self.reporter.emit(events.PhaseWarning(None, text))
                outcome = DeployOutcome("completed", deployment_id, notes=warnings)
            self.reporter.emit(
                events.DeploymentFinished(deployment_id, outcome.state, self.clock() - started)
            )
            message = outcome.error or ""
            if outcome.restored_release:
                message += f"; release {outcome.restored_release} restored"
            self.notifier.send(outcome.state, deployment_id, message, outcome.failed_phase)
            return outcome

    def _unchecked_warnings(self) -> tuple[str, ...]:
        """What the operator must hear at the end of a successful deployment: no health
        probe at all (health-wait without probes or turned off, no verify URL) means that
        nothing checked that the application answers."""
        phases = self.settings.phases
        probed = phases.health_wait.enabled and bool(phases.health_wait.all_probes())
        verified = phases.verify.enabled and bool(phases.verify.urls)
        if probed or verified:
            return ()
        return (NO_HEALTH_PROBE,)

    def _run_pipeline(
        self,
        store: StateStore,
        deployment_id: int,
        pipeline: list[PhaseSpec],
        previous: dict[str, PhaseRun],
    ) -> None:
        """Run every phase once what it waits for (``PhaseSpec.after``) is done; phases
        whose turn comes together run side by side, each in its own thread and under its
        own checkpoint. After a failure no phase starts, the running ones finish, and the
        first failure is raised (an interruption first, when there was one)."""
        after = ordered(pipeline)
        position = {spec.name: index for index, spec in enumerate(pipeline, start=1)}
        waiting = list(pipeline)
        finished: set[str] = set()  # phases done with: completed, skipped, disabled
        milestones: set[str] = set()  # "phase:milestone" announced by running phases
        ran: set[str] = set()  # phases that ran in this deployment
        running: set[str] = set()
        errors: list[BaseException] = []
        news: queue.Queue[tuple[str, str, BaseException | None]] = queue.Queue()

        def satisfied(entry: str) -> bool:
            phase = entry.partition(":")[0]
            return phase in finished or entry in milestones

        def work(spec: PhaseSpec, reason: str) -> None:
            def reached(milestone: str) -> None:
                news.put(("milestone", f"{spec.name}:{milestone}", None))

            try:
                self._run_phase(store, deployment_id, position[spec.name], spec, reason, reached)
            except BaseException as exc:  # handed to the main thread, which raises it
                news.put(("finished", spec.name, exc))
            else:
                news.put(("finished", spec.name, None))

        def start_ready() -> None:
            progressed = True
            while progressed:  # a phase skipped now may let others start
                progressed = False
                for spec in [s for s in waiting if all(satisfied(e) for e in after[s.name])]:
                    self.cancel.check()
                    waiting.remove(spec)
                    progressed = True
                    reran = [e for e in after[spec.name] if ":" not in e and e in ran]
                    reason = self._why_run(store, deployment_id, spec, previous.get(spec.name), reran)
                    if reason is None:
                        finished.add(spec.name)
                        if reran and not self.settings.phases.for_phase(spec.name).enabled:
                            ran.add(spec.name)  # a disabled phase passes "ran again" on to what follows it
                        continue
                    ran.add(spec.name)
                    running.add(spec.name)
                    threading.Thread(target=work, args=(spec, reason), name=f"phase-{spec.name}").start()

        while True:
            if not errors:
                try:
                    start_ready()
                except BaseException as exc:  # stop starting; let the running phases finish first
                    errors.append(exc)
            if not running:
                break
            kind, name, error = news.get()
            if kind == "milestone":
                milestones.add(name)
                continue
            running.discard(name)
            if error is None:
                finished.add(name)
            else:
                errors.append(error)
        if waiting and not errors:
            raise AssertionError(f"phases never ready: {', '.join(s.name for s in waiting)}")
        if errors:
            interrupted = [e for e in errors if isinstance(e, Interrupted)]
            raise (interrupted or errors)[0]

    def _why_run(
        self, store: StateStore, deployment_id: int, spec: PhaseSpec, last: PhaseRun | None,
        reran: list[str],
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
            current = self._fingerprint(spec)
        except PhaseFailed as exc:
            return f"its inputs could not be read ({exc.summary})"
        if current == last.fingerprint:
            self.reporter.emit(events.PhaseSkipped(spec.name, "done before, inputs unchanged", last.status))
            return None
        before = last.fingerprint or {}
        changed = sorted(k for k in current if current.get(k) != before.get(k))
        return "inputs changed since it completed: " + ", ".join(changed or ["all"])

    def _fingerprint(self, spec: PhaseSpec) -> dict[str, str]:
        values = {"settings": settings_digest(self.settings.phases.for_phase(spec.name))}
        for name in spec.depends:
            values[name] = self.facts.input(name)
        return values

    def _run_phase(
        self, store: StateStore, deployment_id: int, index: int, spec: PhaseSpec, reason: str,
        reached: Callable[[str], None],
    ) -> None:
        log_path = self.state_dir / "logs" / f"deployment-{deployment_id}" / f"{index:02d}-{spec.name}.log"
        run = store.start_phase(deployment_id, spec.name, str(log_path), reason)
        self.reporter.emit(events.PhaseStarted(spec.name, run.attempt, reason))
        fingerprint: dict[str, str] = {}
        hooks = self.settings.hooks.get(spec.name)

        def body(ctx: PhaseContext) -> PhaseResult:
            fingerprint.update(self._fingerprint(spec))
            if hooks:
                self._run_hooks(ctx, "before", hooks.before, run.attempt, log_path)
            if spec.release_point:
                store.save_release(self.keeper.capture(deployment_id, self.facts))
            if spec.name == "cleanup":
                ctx.expired_tags = self._expired_tags(store, deployment_id)
            result = spec.run(ctx)
            if spec.fingerprint_after:
                fingerprint.update(self._fingerprint(spec))
            if hooks:
                self._run_hooks(ctx, "after", hooks.after, run.attempt, log_path)
            return result

        def record(status: str, note: str | None, error: str | None, exit_code: int | None) -> None:
            store.finish_phase(run.id, status, exit_code=exit_code, error=error,
                               fingerprint=fingerprint if status in ("completed", "skipped") else None)
            if error:
                store.add_event(deployment_id, status, error, spec.name)

        self._bracket(spec.name, f"attempt {run.attempt}: {reason}", log_path, deployment_id,
                      self.compose, self.facts, body, record, reached)

    def _run_hooks(
        self, ctx: PhaseContext, when: str, commands: list[list[str]], attempt: int, log_path: Path
    ) -> None:
        """Run a phase's hooks on the host, given the phase's context in SUREFOOT_* variables.
        A failing before-hook fails the phase; a failing after-hook warns."""
        env = {
            "SUREFOOT_PROJECT": self.settings.project_name,
            "SUREFOOT_PROJECT_DIR": str(self.settings.project_dir),
            "SUREFOOT_PHASE": ctx.name,
            "SUREFOOT_HOOK": when,
            "SUREFOOT_DEPLOYMENT": str(ctx.deployment_id),
            "SUREFOOT_ATTEMPT": str(attempt),
            "SUREFOOT_STATE_DIR": str(self.state_dir),
            "SUREFOOT_LOG": str(log_path),
            "SUREFOOT_ENV_FILE": str(self.settings.env_file or ""),
        }
        for argv in commands:
            ctx.out(f"{when}-{ctx.name} hook: {shlex.join(argv)}")
            try:
                code = self.processes.stream(argv, ctx.out, cwd=self.settings.project_dir, env=env)
            except CommandNotFound:
                code = 127
            if code == 0:
                continue
            message = f"the {when}-{ctx.name} hook {shlex.join(argv)} exited with code {code}"
            if when == "before":
                raise PhaseFailed(message, exit_code=code)
            ctx.warn(message)

    def _bracket(
        self,
        name: str,
        headline: str,
        log_path: Path,
        deployment_id: int,
        compose: Compose,
        facts: Facts,
        body: Callable[[PhaseContext], PhaseResult],
        record: Callable[[str, str | None, str | None, int | None], None],
        reached: Callable[[str], None] | None = None,
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
            compose=compose,
            facts=facts,
            cancel=self.cancel,
            clock=self.clock,
            out=out,
            progress=lambda text: self.reporter.emit(events.PhaseProgress(name, self.redact(text))),
            warn=warn,
            host=LocalHost(self.processes),
            deployment_id=deployment_id,
            state_dir=self.state_dir,
            prompter=self.prompter,
            values=dict(self.options.values),
            assume_yes=self.options.assume_yes,
            add_secret=self.redact.add,
            skip_checks=self.options.skip_checks,
            dry_run=self.options.dry_run,
        )
        if reached is not None:
            ctx.reached = reached

        def finish(status: str, note: str | None, error: str | None = None, code: int | None = None) -> None:
            record(status, note, error, code)
            self.reporter.emit(events.PhaseFinished(name, status, self.clock() - began, note))
            log.close()

        def failure(summary: str, usage: bool = False, untouched: bool = False) -> _Failed:
            return _Failed(DeployOutcome("failed", deployment_id, name, summary, log.path,
                                         tuple(log.tail), usage_error=usage, untouched=untouched))

        try:
            result = body(ctx)
        except Interrupted as exc:
            log.write(f"interrupted by signal {exc.signum}")
            finish("interrupted", None, f"interrupted by signal {exc.signum}")
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

    # -- releases ---------------------------------------------------------------
    def _expired_tags(self, store: StateStore, deployment_id: int) -> list[str]:
        project = self.settings.project_name
        releases = store.releases(project)
        kept = ReleaseKeeper.kept_releases(
            releases, self.settings.rollback.keep_releases, store.current_release(project), deployment_id
        )
        expired = [r for r in releases if r.id not in kept]
        for release in expired:
            self.keeper.forget_files(release.id)
        return [tag for release in expired for tag in release.tags.values()]

    def _previous_release(self, store: StateStore, exclude: int) -> Release | None:
        project = self.settings.project_name
        current = store.current_release(project)
        candidates = [r for r in store.releases(project) if r.id != exclude and Path(r.files_dir).is_dir()]
        if current is not None and current != exclude:
            return next((r for r in candidates if r.id == current), None)
        return next((r for r in candidates if r.outcome == "healthy"), None)

    def _after_failure(
        self, store: StateStore, deployment_id: int, outcome: DeployOutcome, pipeline: list[PhaseSpec]
    ) -> DeployOutcome:
        store.set_deployment_state(deployment_id, "failed", outcome.error)
        if store.release(self.settings.project_name, deployment_id) is not None:
            # Past the release point: the release failed (a rollback below says rolled-back;
            # a resume that succeeds makes it healthy).
            store.set_release_outcome(deployment_id, "failed")
        spec = next((s for s in pipeline if s.name == outcome.failed_phase), None)
        if spec is None or not spec.rollback_on_failure or outcome.untouched:
            return outcome
        if not self.settings.rollback.automatic:
            return outcome
        target = self._previous_release(store, exclude=deployment_id)
        if target is None:
            return outcome  # nothing to go back to: stop, resumable, as before
        store.set_release_outcome(deployment_id, "failed")
        try:
            restored = self._rollback(store, target, "automatic", deployment_id, deployment_id)
        except _Failed as failed:
            error = f"{outcome.error}; rolling back to release {target.id} failed too: {failed.outcome.error}"
            store.set_deployment_state(deployment_id, "failed", error)
            return DeployOutcome("failed", deployment_id, outcome.failed_phase, error, outcome.log_path,
                                 (*outcome.tail, "--- rollback ---", *failed.outcome.tail))
        store.set_release_outcome(deployment_id, "rolled-back")
        store.set_deployment_state(deployment_id, "rolled-back", outcome.error)
        return DeployOutcome("rolled-back", deployment_id, outcome.failed_phase, outcome.error,
                             outcome.log_path, outcome.tail, restored_release=target.id,
                             notes=restored)

    def rollback(self, release_id: int | None) -> DeployOutcome:
        """``surefoot rollback``: restore a release (default: the one before the current one)."""
        project = self.settings.project_name
        with self._locked_store() as store:
            latest = store.latest_deployment(project)
            current = store.current_release(project)
            target = choose_release(store, project, release_id, self.settings.rollback.keep_releases)
            dep = latest.id if latest else 0
            started = self.clock()
            self.reporter.emit(events.DeploymentStarted(dep, project, f"rollback to release {target.id}",
                                                        ("rollback",)))
            by = f"{_who()}@{socket.gethostname()}"
            origin = f" from release {current}" if current is not None else ""
            extra: dict[str, object] = {"release": target.id, "from_release": current, "trigger": "manual"}
            try:
                notes = self._rollback(store, target, "manual", current, dep)
            except _Failed as failed:
                self.reporter.emit(events.DeploymentFinished(dep, "failed", self.clock() - started))
                self.notifier.send("failed", dep, f"{failed.outcome.error} ({by})", "rollback",
                                   words=f"could not be rolled back to release {target.id}", extra=extra)
                return failed.outcome
            except Interrupted as exc:
                return DeployOutcome("interrupted", dep, signum=exc.signum)
            self.reporter.emit(events.DeploymentFinished(dep, "restored", self.clock() - started))
            self.notifier.send("rolled-back", dep, f"manual rollback{origin} by {by}", "rollback",
                               words=f"rolled back by hand to release {target.id}", extra=extra)
            return DeployOutcome("restored", dep, restored_release=target.id, notes=notes)

    def _rollback(
        self, store: StateStore, release: Release, trigger: str, from_release: int | None, deployment_id: int
    ) -> tuple[str, ...]:
        """Restore ``release`` and gate it. Returns notes for the operator; raises _Failed."""
        project = self.settings.project_name
        log_path = self.state_dir / "logs" / "rollbacks" / f"to-release-{release.id}-{now_iso()}.log"
        rollback_id = store.start_rollback(project, trigger, from_release, release.id, _who(),
                                           socket.gethostname(), str(log_path))
        compose = Compose(self.keeper.target(release), self.processes)
        facts = Facts(self.settings, compose)
        notes = self._data_notes(store, release) + tuple(
            f"not restored (release {release.id} could not keep it; as it is now): {item}"
            for item in release.not_kept)
        self.reporter.emit(events.PhaseStarted("rollback", 1, f"restoring release {release.id}"))

        def body(ctx: PhaseContext) -> PhaseResult:
            missing = self.keeper.missing_images(release)
            if missing:
                raise PhaseFailed(f"release {release.id} cannot be restored: its images are gone "
                                  f"({', '.join(missing)})")
            restore = self.keeper.restore(release, ctx.out)
            compose.target = restore.target
            up = ("up", "--detach", "--no-build", "--pull", "never")
            code = compose.stream(compose.argv(*up, "--remove-orphans"), ctx.out)
            if code == 0 and restore.force:  # their secret or config files differ: compose cannot tell
                code = compose.stream(compose.argv(*up, "--no-deps", "--force-recreate", *restore.force), ctx.out)
            if code != 0:
                raise PhaseFailed(f"docker compose up of release {release.id} failed (exit {code})")
            self._gate_release(ctx, release)
            for note in notes:
                ctx.warn(note)
            return done(f"release {release.id} restored and healthy")

        def record(status: str, note: str | None, error: str | None, code: int | None) -> None:
            store.finish_rollback(rollback_id, "restored" if status == "completed" else "failed",
                                  error or note or status)
            store.add_event(deployment_id or None, "rollback", f"to release {release.id}: {error or note}")

        self._bracket("rollback", f"restoring release {release.id} ({trigger})", log_path, deployment_id,
                      compose, facts, body, record)
        return notes

    def rollback_choice(self, release_id: int | None) -> Release:
        """The release ``rollback`` would restore (for its question), without taking the lock."""
        try:
            opened = StateStore.open(self.state_dir / STATE_DB, create=False)
        except FileNotFoundError:
            raise NoRelease("no releases yet: nothing to roll back to") from None
        with opened as store:
            return choose_release(store, self.settings.project_name, release_id,
                                  self.settings.rollback.keep_releases)

    def _gate_release(self, ctx: PhaseContext, release: Release) -> None:
        from surefoot.gates import build_probe, run_probes
        from surefoot.watch import ContainerWatch

        watch = ContainerWatch(ctx.compose)
        configured = self.settings.phases.health_wait.all_probes()
        if not configured:  # no health URL: at least every service must come up and stay up
            configured = [ProbeSettings(service=s, consecutive=3, interval=1.0, timeout=60.0)
                          for s in release.tags]
        probes = [build_probe(p, ctx, watch) for p in configured]
        run_probes(ctx, probes, watch=watch, what=f"release {release.id} failed its health gate")

    def _data_notes(self, store: StateStore, release: Release) -> tuple[str, ...]:
        notes = [f"database changes made since release {release.id} are not undone by a rollback"]
        later = sorted((r for r in store.releases(self.settings.project_name)
                        if r.id > release.id and r.backup_path), key=lambda r: r.id)
        if later:
            notes.append(f"the backup taken before release {later[0].id}'s migration matches release "
                         f"{release.id}: {later[0].backup_path}")
        return tuple(notes)

    # -- single phases on demand --------------------------------------------------
    def verify(self) -> DeployOutcome:
        """``surefoot verify``: the verify checks against the running stack."""
        from surefoot.phases.verify import verify

        return self._standalone("verify", verify)

    def prerequisites(self, dry_run: bool) -> DeployOutcome:
        """``surefoot prerequisites``: install what is missing, or (dry run) list it."""
        from surefoot.phases.prerequisites import prerequisites

        self.options = DeployOptions(dry_run=dry_run)
        return self._standalone("prerequisites", prerequisites)

    def _standalone(self, name: str, run: Callable[[PhaseContext], PhaseResult]) -> DeployOutcome:
        """One phase outside any deployment: logged, not recorded in the store."""
        project = self.settings.project_name
        log_path = self.state_dir / "logs" / name / f"{name}-{now_iso()}.log"
        started = self.clock()
        self.reporter.emit(events.DeploymentStarted(0, project, name, (name,)))
        self.reporter.emit(events.PhaseStarted(name, 1, "on demand"))
        try:
            result = self._bracket(name, "on demand", log_path, 0, self.compose, self.facts, run, lambda *a: None)
        except _Failed as failed:
            self.reporter.emit(events.DeploymentFinished(0, "failed", self.clock() - started))
            return failed.outcome
        except Interrupted as exc:
            return DeployOutcome("interrupted", None, signum=exc.signum)
        self.reporter.emit(events.DeploymentFinished(0, "done", self.clock() - started))
        return DeployOutcome("done", None, notes=(result.note,) if result.note else ())
