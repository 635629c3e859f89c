"""Rollback: which release to restore, and restoring it: the engine's restore unit (``names.RESTORE``:
:mod:`surefoot.deploy.phases.restore`, or the engine's own) run inside the checkpoint bracket."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from surefoot.base import events
from surefoot.base.errors import Interrupted, NoRelease
from surefoot.base.names import RESTORE
from surefoot.base.units import short_commit
from surefoot.config.settings import Settings
from surefoot.deploy.api import Facts
from surefoot.deploy.pipeline import PhaseSpec, function_for
from surefoot.deploy.releases import ReleaseKeeper
from surefoot.deploy.run.checkpoint import Checkpoints, DeployOutcome, UnitFailed, who
from surefoot.deploy.run.notify import Notifier
from surefoot.engines.base import Engine
from surefoot.store import Release, StateStore, now_iso
from surefoot.targets.placement import Placement


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
    commit = f", git {short_commit(release.git_commit)}" if release.git_commit else ""
    return f"release {release.id} ({when}{commit})"


def previous_release(store: StateStore, project: str, exclude: int) -> Release | None:
    """The release an automatic rollback goes back to: the current one, else the newest healthy one."""
    current = store.current_release(project)
    candidates = [r for r in store.releases(project) if r.id != exclude and Path(r.files_dir).is_dir()]
    if current is not None and current != exclude:
        return next((r for r in candidates if r.id == current), None)
    return next((r for r in candidates if r.outcome == "healthy"), None)


def data_notes(store: StateStore, project: str, release: Release) -> tuple[str, ...]:
    notes = [f"database changes made since release {release.id} are not undone by a rollback"]
    later = sorted((r for r in store.releases(project) if r.id > release.id and r.backup_path), key=lambda r: r.id)
    if later:
        notes.append(f"the backup taken before release {later[0].id}'s migration matches release "
                     f"{release.id}: {later[0].backup_path}")
    return tuple(notes)


@dataclass
class Rollbacks:
    """Restoring a release: automatically after a failed phase, or by hand (``surefoot rollback``)."""

    settings: Settings
    state_dir: Path
    reporter: events.Reporter
    checkpoints: Checkpoints
    keeper: ReleaseKeeper
    engine: Engine  # the target's engine: the release's files are handed to it
    placement: Placement  # which services run on the target
    notifier: Notifier
    clock: Callable[[], float]

    def after_failure(
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
        target = previous_release(store, self.settings.project_name, exclude=deployment_id)
        if target is None:
            return outcome  # nothing to go back to: stop, resumable, as before
        store.set_release_outcome(deployment_id, "failed")
        try:
            restored = self.restore_release(store, target, "automatic", deployment_id, deployment_id)
        except UnitFailed as failed:
            error = f"{outcome.error}; rolling back to release {target.id} failed too: {failed.outcome.error}"
            store.set_deployment_state(deployment_id, "failed", error)
            return DeployOutcome("failed", deployment_id, outcome.failed_phase, error, outcome.log_path,
                                 (*outcome.tail, "--- rollback ---", *failed.outcome.tail))
        store.set_release_outcome(deployment_id, "rolled-back")
        store.set_deployment_state(deployment_id, "rolled-back", outcome.error)
        return DeployOutcome("rolled-back", deployment_id, outcome.failed_phase, outcome.error,
                             outcome.log_path, outcome.tail, restored_release=target.id,
                             notes=restored)

    def manual(self, store: StateStore, release_id: int | None) -> DeployOutcome:
        """``surefoot rollback``, the lock held: restore a release (default: the one before the current one)."""
        project = self.settings.project_name
        latest = store.latest_deployment(project)
        current = store.current_release(project)
        target = choose_release(store, project, release_id, self.settings.rollback.keep_releases)
        dep = latest.id if latest else 0
        started = self.clock()
        origin = f" from release {current}" if current is not None else ""
        self.reporter.emit(events.DeploymentStarted(0, project, f"rollback to release {target.id}{origin}",
                                                    ("rollback",)))
        by = f"{who()}@{socket.gethostname()}"
        extra: dict[str, object] = {"release": target.id, "from_release": current, "trigger": "manual"}
        try:
            notes = self.restore_release(store, target, "manual", current, dep)
        except UnitFailed as failed:
            self.reporter.emit(events.DeploymentFinished(0, "failed", self.clock() - started))
            self.notifier.send("failed", dep, f"{failed.outcome.error} ({by})", "rollback",
                               words=f"could not be rolled back to release {target.id}", extra=extra)
            return failed.outcome
        except Interrupted as exc:
            return DeployOutcome("interrupted", dep, signum=exc.signum)
        self.reporter.emit(events.DeploymentFinished(0, "restored", self.clock() - started))
        self.notifier.send("rolled-back", dep, f"manual rollback{origin} by {by}", "rollback",
                           words=f"rolled back by hand to release {target.id}", extra=extra)
        return DeployOutcome("restored", dep, restored_release=target.id, notes=notes, from_release=current)

    def restore_release(
        self, store: StateStore, release: Release, trigger: str, from_release: int | None, deployment_id: int
    ) -> tuple[str, ...]:
        """Restore ``release`` and gate it. Returns notes for the operator; raises UnitFailed."""
        project = self.settings.project_name
        log_path = self.state_dir / "logs" / "rollbacks" / f"to-release-{release.id}-{now_iso()}.log"
        rollback_id = store.start_rollback(project, trigger, from_release, release.id, who(),
                                           socket.gethostname(), str(log_path))
        engine = self.engine.with_files(self.keeper.project(release))
        self.checkpoints.redact.add_env_files(engine.project.env_files)  # the release's own values
        facts = Facts(self.settings, engine, self.state_dir, self.placement)
        restore = function_for(RESTORE, engine.kind)
        notes = data_notes(store, project, release) + tuple(
            f"not restored (release {release.id} could not keep it; as it is now): {item}"
            for item in release.not_kept)
        self.reporter.emit(events.PhaseStarted("rollback", 1, f"restoring release {release.id}"))

        def record(status: str, note: str | None, error: str | None, code: int | None) -> None:
            store.finish_rollback(rollback_id, "restored" if status == "completed" else "failed",
                                  error or note or status)
            store.add_event(deployment_id or None, "rollback", f"to release {release.id}: {error or note}")

        self.checkpoints.bracket("rollback", f"restoring release {release.id} ({trigger})", log_path,
                                 deployment_id, engine, facts, lambda ctx: restore(ctx, release, self.keeper, notes),
                                 record)
        return notes


def release_record(store: StateStore, project: str) -> dict[str, Any] | None:
    """What a server keeps of the release running there (for the other control machines)."""
    current = store.current_release(project)
    release = store.release(project, current) if current is not None else None
    if release is None:
        return None
    return {
        "project": project, "release": release.id, "outcome": release.outcome,
        "created_at": release.created_at, "healthy_at": release.healthy_at, "images": release.images,
        "git_commit": release.git_commit, "by": who(), "host": socket.gethostname(), "recorded_at": now_iso(),
    }


def runs_elsewhere(target: str, record: dict[str, Any] | None) -> str:
    """For a server whose releases this machine has no history of: what the server says runs
    there, and from where it was deployed (that machine holds the history); "" without a record."""
    if not record:
        return ""
    return (f"; {target} runs release {record.get('release')} ({record.get('outcome')}), "
            f"deployed from {record.get('host')} by {record.get('by')} at {record.get('recorded_at')}: "
            "its releases are recorded on that control machine; roll back from there")
