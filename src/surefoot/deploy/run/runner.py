"""Run the pipeline: the lock, the deployment's lifecycle, releases and rollback.

The runner is the only writer of the state store. It hands the scheduling to
:mod:`surefoot.deploy.run.scheduler`, each unit of work (each phase, each rollback) to the
checkpoint bracket (:mod:`surefoot.deploy.run.checkpoint`), which records "started -> ran ->
outcome" so none can forget its checkpoint; hooks are :mod:`surefoot.deploy.run.hooks`, and the
rollback's choice and restore work :mod:`surefoot.deploy.run.rollback`. Options come with each
call (``deploy(options)``), never kept on the runner.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from surefoot.base import events
from surefoot.base.errors import ConfigError, Interrupted, LockLost, NoRelease, StateError
from surefoot.base.names import PHASES
from surefoot.base.secrets import Redactor
from surefoot.config.configure import Prompter
from surefoot.config.settings import Settings
from surefoot.deploy.api import Facts, PhaseContext, PhaseResult
from surefoot.deploy.pipeline import PhaseSpec, build_pipeline, function_for
from surefoot.deploy.releases import ReleaseKeeper
from surefoot.deploy.run.checkpoint import (
    TAIL_LINES,
    Checkpoints,
    DeployOptions,
    DeployOutcome,
    PhaseLog,
    UnitFailed,
    settings_digest,
    who,
)
from surefoot.deploy.run.hooks import run_hooks
from surefoot.deploy.run.notify import Notifier
from surefoot.deploy.run.rollback import (
    Rollbacks,
    choose_release,
    describe_release,
    release_record,
    runs_elsewhere,
)
from surefoot.deploy.run.scheduler import run_side_by_side
from surefoot.engines.compose.model import ComposeModel
from surefoot.store import PhaseRun, StateStore, now_iso
from surefoot.targets.open import Target
from surefoot.targets.placement import Placement

STATE_DB = "state.db"

__all__ = ["STATE_DB", "TAIL_LINES", "DeployOptions", "DeployOutcome", "NoRelease", "PhaseLog", "Runner",
           "choose_release", "describe_release", "settings_digest"]


NO_HEALTH_PROBE = ("no health probe configured: nothing checked that the application answers "
                   "(set phases.health-wait.url or probes in surefoot.toml)")


@dataclass
class Runner:
    """Runs deployments, rollbacks and single phases against ``target`` (this machine or a
    server: :mod:`surefoot.targets.open`), recording them in ``store``. ``prompter``: the
    terminal to ask on (None: never ask)."""

    settings: Settings
    target: Target
    store: StateStore
    reporter: events.Reporter
    prompter: Prompter | None = None
    clock: Callable[[], float] = time.monotonic
    pipeline: list[PhaseSpec] | None = None  # default: the phase table's, for the target's engine
    placement: Placement | None = None  # default: the target's (several targets: the fleet's)

    def __post_init__(self) -> None:
        self.state_dir = self.target.state_dir
        self.cancel = self.target.cancel
        self.redact = Redactor.from_env_file(self.settings.compose_env_files)
        self.engine = self.target.engine
        self.host = self.target.host
        choice = self.target.choice
        self.placement = self.placement or Placement(choice.services, choice.claimed)
        self.facts = Facts(self.settings, self.engine, self.state_dir, self.placement, on_model=self._mask_files_of,
                           target=json.dumps(choice._asdict(), default=str, sort_keys=True))
        self.keeper = ReleaseKeeper(self.settings, self.state_dir, self.engine, not choice.local)
        self.checkpoints = Checkpoints(self.settings, self.state_dir, self.reporter, self.redact, self.clock,
                                       self.cancel, self.host, self.target.control,
                                       "this machine" if choice.local else choice.name)
        self.notifier = Notifier(
            self.settings.notifications, self.settings.project_name,
            lambda text: self.reporter.emit(events.PhaseWarning(None, text)),
        )
        self.rollbacks = Rollbacks(self.settings, self.state_dir, self.reporter, self.checkpoints, self.keeper,
                                   self.engine, self.placement, self.notifier, self.clock)

    @contextmanager
    def _locked_store(self) -> Iterator[StateStore]:
        """The store, with the target's lock held. A deployment still marked running was
        left by a holder that died (we hold the lock now): it is marked interrupted."""
        with self.target.lock():
            latest = self.store.latest_deployment(self.settings.project_name)
            if latest is not None and latest.state == "running":
                self.store.mark_abandoned(latest)
            yield self.store

    def _mask_files_of(self, model: ComposeModel) -> None:
        """The files the model hands the containers hold secrets too: mask them."""
        self.redact.add_env_files(model.env_files())
        for path in model.secret_files():
            self.redact.add_file(path)

    def _say(self, text: str) -> None:
        self.reporter.emit(events.PhaseWarning(None, text))

    # -- the deployment ---------------------------------------------------------
    def deploy(self, options: DeployOptions) -> DeployOutcome:
        self.facts.values = dict(options.values)
        if options.values and (self.settings.env_file is None or not self.settings.phases.configuration.enabled):
            # --set is written by the configuration phase, to the env file: never dropped silently.
            why = ("no env file is configured (project.env_file)" if self.settings.env_file is None
                   else "the configuration phase is disabled (phases.configuration.enabled)")
            raise ConfigError(f"--set cannot be applied: {why}")
        return self._deploy(options, self.prompter if options.interactive else None)

    def _deploy(self, options: DeployOptions, prompter: Prompter | None = None) -> DeployOutcome:
        project = self.settings.project_name
        with self._locked_store() as store:
            self.target.prepare(lambda text: store.add_event(None, "target", text))
            self.redact.add_env_files(self.settings.compose_env_files)  # one fetched from the server
            latest = store.latest_deployment(project)
            unfinished = latest if latest and latest.state in ("failed", "interrupted") else None
            previous: dict[str, PhaseRun] = {}
            if options.fresh or unfinished is None:
                if options.resume_only and not options.fresh:
                    return DeployOutcome("nothing-to-resume", latest.id if latest else None)
                kind = "fresh" if latest is None or options.fresh else "update"
                deployment_id = store.create_deployment(
                    project, kind, os.getpid(), socket.gethostname(), who()
                )
            else:
                kind = "resume"
                deployment_id = unfinished.id
                store.claim_deployment(deployment_id, os.getpid(), socket.gethostname())
                previous = store.latest_runs(deployment_id)
            store.add_event(deployment_id, "deploy", f"{kind} by {who()} (pid {os.getpid()})")
            pipeline = self.pipeline or build_pipeline(self.settings, self.engine.kind)
            if options.until is not None:
                pipeline = pipeline[:[spec.name for spec in pipeline].index(options.until) + 1]
            self.reporter.emit(
                events.DeploymentStarted(deployment_id, project, kind, tuple(p.name for p in pipeline))
            )
            self.notifier.send("started", deployment_id, f"{kind} by {who()}@{socket.gethostname()}")
            started = self.clock()
            try:
                run_side_by_side(
                    pipeline,
                    why_run=lambda spec, reran: self.checkpoints.why_run(
                        store, deployment_id, spec, previous.get(spec.name), reran, self.facts),
                    run=lambda spec, index, reason, reached: self._run_phase(
                        store, deployment_id, index, spec, reason, reached, options, prompter),
                    disabled=lambda name: not self.settings.phases.for_phase(name).enabled,
                    cancel=self.cancel,
                )
            except Interrupted as exc:
                store.set_deployment_state(deployment_id, "interrupted", str(exc))
                store.add_event(deployment_id, "interrupted", str(exc))
                outcome = DeployOutcome("interrupted", deployment_id, signum=exc.signum)
            except LockLost as exc:  # resumable; nothing more is done on the target
                store.set_deployment_state(deployment_id, "interrupted", str(exc))
                store.add_event(deployment_id, "interrupted", str(exc))
                self.reporter.emit(events.DeploymentFinished(deployment_id, "interrupted", self.clock() - started))
                raise
            except UnitFailed as failed:
                outcome = self.rollbacks.after_failure(store, deployment_id, failed.outcome, pipeline)
            except StateError:
                with contextlib.suppress(StateError):
                    store.set_deployment_state(deployment_id, "failed", "the state folder cannot be written")
                raise
            else:
                if options.until is not None:  # the rest runs later (its batch): resumable as interrupted
                    store.set_deployment_state(deployment_id, "interrupted", f"paused after {options.until}")
                    self.reporter.emit(events.DeploymentFinished(deployment_id, "paused", self.clock() - started))
                    return DeployOutcome("paused", deployment_id)
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
            if outcome.state in ("completed", "rolled-back"):
                self._record_current(store)
            return outcome

    def _record_current(self, store: StateStore) -> None:
        """Tell the target which release runs there now (a server keeps it for the other
        control machines: ``status`` and ``rollback`` from there)."""
        record = release_record(store, self.settings.project_name)
        if record is not None:
            self.target.record(record)

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

    def _run_phase(
        self, store: StateStore, deployment_id: int, index: int, spec: PhaseSpec, reason: str,
        reached: Callable[[str], None], options: DeployOptions, prompter: Prompter | None,
    ) -> None:
        log_path = self.state_dir / "logs" / f"deployment-{deployment_id}" / f"{index:02d}-{spec.name}.log"
        run = store.start_phase(deployment_id, spec.name, str(log_path), reason)
        self.reporter.emit(events.PhaseStarted(spec.name, run.attempt, reason))
        fingerprint: dict[str, str] = {}
        hooks = self.settings.hooks.get(spec.name)

        def body(ctx: PhaseContext) -> PhaseResult:
            fingerprint.update(self.checkpoints.fingerprint(spec, self.facts))
            if hooks:
                run_hooks(ctx, self.settings, "before", hooks.before, run.attempt, log_path, hooks.on)
            if spec.release_point:
                store.save_release(self.keeper.capture(deployment_id, self.facts))
            if spec.prunes_releases:  # the release tags past keeping are its input
                ctx.expired_tags = self._expired_tags(store, deployment_id)
            result = spec.run(ctx)
            self.target.check_lock()  # what the phase saw may be another deployment's since
            if spec.fingerprint_after:
                fingerprint.update(self.checkpoints.fingerprint(spec, self.facts))
            if hooks:
                run_hooks(ctx, self.settings, "after", hooks.after, run.attempt, log_path, hooks.on)
            return result

        def record(status: str, note: str | None, error: str | None, exit_code: int | None) -> None:
            store.finish_phase(run.id, status, exit_code=exit_code, error=error,
                               fingerprint=fingerprint if status in ("completed", "skipped") else None)
            if error:
                store.add_event(deployment_id, status, error, spec.name)

        self.checkpoints.bracket(spec.name, f"attempt {run.attempt}: {reason}", log_path, deployment_id,
                                 self.engine, self.facts, body, record, reached, options=options, prompter=prompter)

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

    def rollback(self, release_id: int | None) -> DeployOutcome:
        """``surefoot rollback``: restore a release (default: the one before the current one)."""
        with self._locked_store() as store:
            try:
                outcome = self.rollbacks.manual(store, release_id)
            except NoRelease as exc:
                raise NoRelease(f"{exc}{runs_elsewhere(self.target.choice.name, self.target.running_release())}") \
                    from None
            if outcome.state == "restored":
                self._record_current(store)
            return outcome

    # -- single phases on demand --------------------------------------------------
    def verify(self) -> DeployOutcome:
        """``surefoot verify``: the verify checks against the running stack."""
        return self._standalone("verify", self._function("verify"), DeployOptions())

    def prerequisites(self, dry_run: bool) -> DeployOutcome:
        """``surefoot prerequisites``: install what is missing, or (dry run) list it."""
        return self._standalone("prerequisites", self._function("prerequisites"), DeployOptions(dry_run=dry_run))

    def _function(self, phase: str) -> Callable[[PhaseContext], PhaseResult]:
        """A phase's function on this target's engine, from the phase table."""
        return function_for(next(row for row in PHASES if row["name"] == phase), self.engine.kind)

    def _standalone(self, name: str, run: Callable[[PhaseContext], PhaseResult],
                    options: DeployOptions) -> DeployOutcome:
        """One phase outside any deployment: logged, not recorded in the store."""
        project = self.settings.project_name
        log_path = self.state_dir / "logs" / name / f"{name}-{now_iso()}.log"
        started = self.clock()
        self.reporter.emit(events.DeploymentStarted(0, project, name, (name,)))
        self.reporter.emit(events.PhaseStarted(name, 1, "on demand"))
        try:
            result = self.checkpoints.bracket(name, "on demand", log_path, 0, self.engine, self.facts, run,
                                              lambda *a: None, options=options)
        except UnitFailed as failed:
            self.reporter.emit(events.DeploymentFinished(0, "failed", self.clock() - started))
            return failed.outcome
        except Interrupted as exc:
            return DeployOutcome("interrupted", None, signum=exc.signum)
        self.reporter.emit(events.DeploymentFinished(0, "done", self.clock() - started))
        return DeployOutcome("done", None, notes=(result.note,) if result.note else ())
