"""The phases that differ on a swarm (``[targets.NAME] engine = "swarm"``): database-start,
database-migrate, services-start and health-wait, the swarm's preflight checks, and the restore
of a release. The other phases (configuration, pull, build, cleanup) are the same as on a
server: they work on the manager's engine.

Every stack file deployed is made by :func:`surefoot.engines.swarm.stackfile.render` from the compose model
and kept: the release's (``releases/N/stack.json``) is what health-wait gates and what a
rollback deploys again, every service of it (the whole stack goes back, not only the service
that failed).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from surefoot.base.errors import PhaseFailed
from surefoot.base.units import format_duration
from surefoot.deploy.api import PhaseContext, PhaseResult, done, skipped
from surefoot.deploy.gates import build_probe, probes_here, run_probes
from surefoot.deploy.gates.watch import ContainerWatch
from surefoot.deploy.phases import verify as verify_phase
from surefoot.deploy.phases.verify import Check
from surefoot.deploy.releases import ReleaseKeeper
from surefoot.engines.swarm.client import SwarmClient, watch
from surefoot.engines.swarm.engine import OnSwarm
from surefoot.engines.swarm.stackfile import (
    MIGRATE_SERVICE,
    StackFile,
    image_ref,
    migration_service,
    problems,
    render,
    spec_digest,
)
from surefoot.engines.swarm.state import SwarmError, SwarmGate
from surefoot.store import Release

POLL = 0.5  # seconds between two looks at the stack (each is two API calls through the connection)
STACK_FILE = "stack.json"


def swarm_of(ctx: PhaseContext) -> SwarmClient:
    """The swarm of the target (these functions run only where the engine is a swarm: the phase
    table's ``"swarm"`` entries)."""
    engine = ctx.engine
    if not isinstance(engine, OnSwarm):
        raise AssertionError(f"a swarm phase on a target whose engine is {engine.kind}")
    return engine.swarm


def _write(path: Path, data: dict[str, Any]) -> Path:
    """The stack file, private (it holds the env file's values)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1)
    return path


def stack_file(ctx: PhaseContext, only: Sequence[str] | None = None) -> StackFile:
    """The stack file of the project as it is now: each service's image (on the manager) tagged
    with the reference named after its id, the one the stack runs."""
    model = ctx.model()
    services = list(only) if only is not None else list(model.services)
    ctx.facts.images_changed()
    ids = ctx.facts.image_ids(services)
    missing = [service for service, image_id in ids.items() if image_id is None]
    if missing:
        raise PhaseFailed(f"no image on the manager for {', '.join(missing)} "
                          f"({', '.join(model.image_name(s) for s in missing)}): the pull-images and build "
                          "phases make them; were they disabled?")
    swarm = swarm_of(ctx)
    refs: dict[str, str] = {}
    for service in services:
        image_id = str(ids[service])
        # build = "registry": by digest from the registry the images went through (the nodes pull);
        # else a reference named after the image id, shipped to the nodes.
        digest = swarm.registry_digest(image_id, model.image_name(service)) if swarm.registry else None
        refs[service] = digest or image_ref(ctx.settings.project_name, service, image_id)
        if digest is None:
            ctx.engine.tag(image_id, refs[service])
    stack = render(model.data, refs, only=only, stack=ctx.settings.project_name, file_digests=_file_digests(model.data))
    found = problems(stack)
    if found:
        raise PhaseFailed("the swarm cannot run this stack: " + "; ".join(found))
    return stack


def _file_digests(model: dict[str, Any]) -> dict[str, str]:
    """A digest of each file a secret or config is made from (a changed file: a new one)."""
    found = {}
    for kind in ("secrets", "configs"):
        for spec in (model.get(kind) or {}).values():
            path = Path(str((spec or {}).get("file") or ""))
            if (spec or {}).get("file") and path.is_file():
                found[str(spec["file"])] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _read_stack(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PhaseFailed(f"the stack file {path} is missing: run `surefoot deploy` again") from None
    except (OSError, ValueError) as exc:
        raise PhaseFailed(f"the stack file {path} cannot be read ({exc}): run `surefoot deploy` again") from None
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise PhaseFailed(f"the stack file {path} is not a stack file (no services)")
    return data


def _images(data: dict[str, Any]) -> dict[str, list[str]]:
    """Each image of a stack file, with the placement constraints of the services running it
    (an image several services share: none, unless all constrain it the same way)."""
    found: dict[str, list[str]] = {}
    for spec in (data.get("services") or {}).values():
        if not spec.get("image"):
            continue
        constraints = list(((spec.get("deploy") or {}).get("placement") or {}).get("constraints") or [])
        image = str(spec["image"])
        found[image] = constraints if found.get(image, constraints) == constraints else []
    return found


def _deploy(ctx: PhaseContext, swarm: SwarmClient, data: dict[str, Any], path: Path, *, prune: bool) -> None:
    _write(path, data)
    swarm.ship(_images(data), ctx.out)
    swarm.deploy(path, ctx.out, prune=prune)


def _gate(ctx: PhaseContext, swarm: SwarmClient, data: dict[str, Any], *, monitor: float, timeout: float,
          what: str) -> str:
    """Until every service of ``data`` runs its image with every desired task, steady for ``monitor``."""
    wanted = {swarm.service_name(name): spec_digest(spec) for name, spec in (data.get("services") or {}).items()}
    settings = ctx.settings.phases.health_wait
    gate = SwarmGate(wanted, monitor=monitor, pending_limit=settings.pending_timeout)
    try:
        return watch(swarm, gate, timeout=timeout, interval=POLL, clock=ctx.clock, progress=ctx.progress,
                     check=ctx.cancel.check, sleep=ctx.cancel.sleep)
    except SwarmError as exc:
        raise PhaseFailed(f"{what}: {exc}") from None
    finally:
        for state in swarm.states():
            ctx.out(f"  {state.text()} ({state.image})")


# -- database-start -------------------------------------------------------------
def database_start(ctx: PhaseContext) -> PhaseResult:
    settings = ctx.settings.phases.database_start
    services = ctx.facts.database_services()
    if not services:
        return skipped("no database services (phases.database-start.services)")
    swarm = swarm_of(ctx)
    stack = stack_file(ctx, only=services)
    _deploy(ctx, swarm, stack.data, ctx.state_dir / "swarm" / "databases.json", prune=False)
    _gate(ctx, swarm, stack.data, monitor=0.0, timeout=settings.timeout, what="a database service is not ready")
    return done(f"{', '.join(services)} running on the swarm")


# -- database-migrate -------------------------------------------------------------
def migrate(ctx: PhaseContext) -> PhaseResult:
    """The migration as one task on the swarm (restart condition none), its logs streamed and its
    exit code honoured, before any application service is updated."""
    settings = ctx.settings.phases.database_migrate
    if not settings.command or not settings.service:
        return skipped("no migration command configured (phases.database-migrate.command)")
    swarm = swarm_of(ctx)
    stack = stack_file(ctx, only=[settings.service])
    data = migration_service(stack, settings.service, settings.command, settings.entrypoint)
    name = swarm.service_name(MIGRATE_SERVICE)
    left = swarm.remove_service(name)  # a killed attempt's: its task would hold locks
    if left is not None:
        ctx.out(f"removed {name}, left by an earlier attempt; waiting for its task to stop")
        _until_gone(ctx, swarm, left, name)
    _deploy(ctx, swarm, data, ctx.state_dir / "swarm" / "migrate.json", prune=False)
    try:
        with swarm.follow_logs(name, ctx.out):
            code, why = _job_end(ctx, swarm, name, settings.timeout)
            ctx.cancel.sleep(1.0)  # the last lines of its log
    finally:
        swarm.remove_service(name)
    if code != 0:
        raise PhaseFailed(f"migration command exited with code {code}" + (f" ({why})" if why else ""),
                          exit_code=code if code > 0 else None)
    return done()


_ALIVE = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running")


def _until_gone(ctx: PhaseContext, swarm: SwarmClient, service_id: str, name: str, timeout: float = 60.0) -> None:
    """Until no task of the removed service runs (two migrations never overlap)."""
    started = ctx.clock()
    while any(t.get("ServiceID") == service_id and (t.get("Status") or {}).get("State") in _ALIVE
              for t in swarm.tasks()):
        if ctx.clock() - started > timeout:
            raise PhaseFailed(f"the migration task left by an earlier attempt ({name}) did not stop within "
                              f"{format_duration(timeout)}")
        ctx.cancel.sleep(POLL)


def _job_end(ctx: PhaseContext, swarm: SwarmClient, name: str, timeout: float) -> tuple[int, str]:
    """The exit code of the one task of ``name`` and why it ended, once it has."""
    started = ctx.clock()
    pending_since: float | None = None
    while True:
        ours = {s.get("ID") for s in swarm.services() if (s.get("Spec") or {}).get("Name") == name}
        tasks = [t for t in swarm.tasks() if t.get("ServiceID") in ours]
        status = (tasks[0].get("Status") or {}) if tasks else {}
        state = status.get("State")
        if state == "rejected":  # never started: no exit code to honour
            raise PhaseFailed(f"the migration task was rejected by the swarm: {status.get('Err') or 'no reason given'}")
        if state in ("complete", "failed", "shutdown"):
            code = (status.get("ContainerStatus") or {}).get("ExitCode")
            return (int(code) if code is not None else (0 if state == "complete" else -1),
                    str(status.get("Err") or ""))
        if state == "pending":
            pending_since = pending_since if pending_since is not None else ctx.clock()
            if ctx.clock() - pending_since > ctx.settings.phases.health_wait.pending_timeout:
                raise PhaseFailed(f"the migration task cannot be scheduled: {status.get('Err') or 'no node'}")
        if ctx.clock() - started > timeout:
            raise PhaseFailed(f"the migration did not finish within {format_duration(timeout)} "
                              "(phases.database-migrate.timeout)")
        ctx.progress(f"migration task: {state or 'created'}")
        ctx.cancel.sleep(POLL)


# -- services-start ------------------------------------------------------------------
def release_stack(ctx: PhaseContext) -> Path:
    return ctx.state_dir / "releases" / str(ctx.deployment_id) / STACK_FILE


def services_start(ctx: PhaseContext) -> PhaseResult:
    """``docker stack deploy`` of the whole stack (services no longer in the files are removed),
    detached: health-wait watches the rollout."""
    stack = stack_file(ctx)
    for note in stack.notes:
        ctx.out(note)
    _deploy(ctx, swarm_of(ctx), stack.data, release_stack(ctx), prune=True)
    return done(f"{len(stack.services)} services deployed to the swarm")


# -- health-wait -------------------------------------------------------------------
def health_wait(ctx: PhaseContext) -> PhaseResult:
    data = _read_stack(release_stack(ctx))
    swarm = swarm_of(ctx)
    converged = gate_release(ctx, swarm, data, what="the health gate failed")
    return done(f"the swarm converged: {converged}")


def gate_release(ctx: PhaseContext, swarm: SwarmClient, data: dict[str, Any], *, what: str) -> str:
    """The swarm's side of the gate (every task running this release, steady), then the probes."""
    settings = ctx.settings.phases.health_wait
    ctx.out(f"swarm gate: every task of {len(data.get('services') or {})} services running this release, "
            f"steady for {format_duration(settings.monitor)}; a task unplaced for "
            f"{format_duration(settings.pending_timeout)} fails it")
    converged = _gate(ctx, swarm, data, monitor=settings.monitor, timeout=settings.timeout, what=what)
    configured = [p for p in settings.all_probes() if p.type not in ("container", "command")]
    dropped = [p.label for p in settings.all_probes() if p.type in ("container", "command")]
    if dropped:
        ctx.out(f"probes {', '.join(dropped)}: the swarm gate checks the services' tasks instead")
    configured = probes_here(ctx, configured)
    if configured:
        probes = [build_probe(p, ctx, ContainerWatch(ctx.engine)) for p in configured]
        run_probes(ctx, probes, watch=None, what=what)
    return converged


# -- cleanup ----------------------------------------------------------------------------
def cleanup(ctx: PhaseContext) -> PhaseResult:
    """What cleanup does on a server, then on the manager and the nodes: the image references of
    releases no longer kept (past rollback.keep_releases) are untagged."""
    from surefoot.deploy.phases.cleanup import prune

    result = prune(ctx)
    keep: set[str] = set()
    for path in (ctx.state_dir / "releases").glob(f"*/{STACK_FILE}"):
        try:
            keep |= set(_images(json.loads(path.read_text())))
        except (OSError, ValueError):
            return result  # a stack file that cannot be read: keep everything
    removed = swarm_of(ctx).untag_stale(f"surefoot.local/{ctx.settings.project_name}", keep)
    for where, refs in removed.items():
        if refs:
            ctx.out(f"{where}: {len(refs)} image reference(s) of releases past keeping untagged: {', '.join(refs)}")
    count = sum(len(refs) for refs in removed.values())
    notes = [note for note in (result.note, f"{count} old image reference(s) untagged on the swarm" if count else "")
             if note]
    return done("; ".join(notes) or None)


# -- rollback -------------------------------------------------------------------------
def restore(ctx: PhaseContext, release: Release, keeper: ReleaseKeeper, notes: tuple[str, ...]) -> PhaseResult:
    """Every service of the stack back to its spec in the release (its stack file), gated."""
    release_id = release.id
    path = Path(release.files_dir) / STACK_FILE
    if not path.is_file():
        raise PhaseFailed(f"release {release_id} cannot be restored on the swarm: it has no stack file ({path})")
    data = _read_stack(path)
    swarm = swarm_of(ctx)
    absent = [image for image, found in ctx.engine.image_ids(sorted(_images(data))).items() if not found]
    if absent:
        raise PhaseFailed(f"release {release_id} cannot be restored: its images are gone from the manager "
                          f"({', '.join(absent)})")
    ctx.out(f"every service of the stack back to release {release_id}: {', '.join(sorted(data['services']))}")
    swarm.ship(_images(data), ctx.out)
    swarm.deploy(path, ctx.out, prune=True)
    gate_release(ctx, swarm, data, what=f"release {release_id} failed its health gate")
    for note in notes:
        ctx.warn(note)
    return done(f"release {release_id} restored on the swarm and healthy")


# -- verify ----------------------------------------------------------------------------------
def verify(ctx: PhaseContext) -> PhaseResult:
    """verify as everywhere, what runs judged by the swarm's services and tasks."""
    return verify_phase.verify(ctx, swarm_service_checks)


def swarm_service_checks(ctx: PhaseContext, timeout: float) -> list[Check]:
    """On a swarm: every service of the stack has all its desired tasks running its current
    spec, and no update paused or being rolled back (tasks still starting are waited for)."""
    swarm = swarm_of(ctx)
    began = ctx.clock()
    while True:
        states = swarm.states()
        checks = []
        for state in states:
            if state.update_state in ("paused", "rollback_started", "rollback_paused", "updating"):
                checks.append(Check(state.name, "fail", f"update {state.update_state}: {state.update_message}"))
            elif state.desired > 0 and state.running >= state.desired:
                checks.append(Check(state.name, "pass", f"{state.running}/{state.desired} tasks running"))
            else:
                checks.append(Check(state.name, "fail", f"{state.running}/{state.desired} tasks running"))
        if not states:
            checks.append(Check("services", "fail", "the stack has no service on the swarm"))
        if all(c.result == "pass" for c in checks) or ctx.clock() - began > timeout:
            return checks
        ctx.progress("; ".join(f"{c.name}: {c.detail}" for c in checks if c.result != "pass"))
        ctx.cancel.sleep(POLL)
