"""What a swarm says of a stack, and the gate's judgement of it: pure functions of the
manager's API answers (services and tasks as ``/services`` and ``/tasks`` give them), plus
the one command ``status`` runs there. :mod:`surefoot.engines.swarm.client` asks, this module judges.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from surefoot.base.errors import PhaseFailed
from surefoot.engines.swarm.argv import stack_status_argv
from surefoot.engines.swarm.stackfile import SPEC_LABEL

if TYPE_CHECKING:
    from surefoot.hosts.ssh.connection import SshConnection

CRASH_LOOP = 3  # failed tasks of one service's current spec: a crash loop, no use waiting
_ROLLED_BACK = ("rollback_started", "rollback_paused", "rollback_completed")


class SwarmError(PhaseFailed):
    """The swarm cannot do what was asked: one line saying why and what to do."""


def _spec_image(service: Mapping[str, Any]) -> str:
    return str(((service.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec", {}).get("Image", ""))


def _name(service: Mapping[str, Any]) -> str:
    return str((service.get("Spec") or {}).get("Name", ""))


def desired_replicas(service: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]]) -> int:
    mode = (service.get("Spec") or {}).get("Mode") or {}
    if "Replicated" in mode:
        return int((mode["Replicated"] or {}).get("Replicas", 1))
    # global: one task a node it may run on; the swarm makes those tasks (pending when it cannot place one)
    return len({t.get("NodeID") or t.get("ID") for t in tasks if t.get("DesiredState") == "running"})


# Container spec keys the engine fills in on its own on one side and not the other (a service
# that a rollback or an update without changes went through shows them; its tasks may not).
_DEFAULTED = frozenset({"StopGracePeriod", "DNSConfig", "Isolation", "Privileges"})


def _essential(spec: Any) -> str:
    if isinstance(spec, Mapping):
        spec = {key: value for key, value in spec.items() if key not in _DEFAULTED and value not in (None, {}, [], "")}
    return json.dumps(spec, sort_keys=True)


# Task template parts every task carries; the others (RestartPolicy, LogDriver, Runtime...) are
# compared when the task shows them. Placement and ForceUpdate are not the task's content.
_ALWAYS = ("ContainerSpec", "Resources", "Networks")
_NOT_CONTENT = frozenset({"Placement", "ForceUpdate"})


def _current(task: Mapping[str, Any], service: Mapping[str, Any]) -> bool:
    """Whether ``task`` was made from the service's spec as it is now (what its container runs:
    image, command, environment, mounts, healthcheck, resources, networks...)."""
    template = (service.get("Spec") or {}).get("TaskTemplate") or {}
    made = task.get("Spec") or {}
    keys = set(_ALWAYS) | (set(template) & set(made)) - _NOT_CONTENT
    return all(_essential(made.get(key) or {}) == _essential(template.get(key) or {}) for key in keys)


def when(text: Any) -> dt.datetime | None:
    """An engine timestamp (``2026-11-27T17:14:15.264250923Z``; nanoseconds cut to micro)."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", str(text or ""))
    if match is None:
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = match.group(3) or "Z"
    try:
        return dt.datetime.fromisoformat(match.group(1) + fraction + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None


@dataclass
class ServiceState:
    """One service as the gate sees it (also ``status --json``'s ``services``)."""

    name: str
    image: str
    spec: str  # the digest surefoot labelled the service's spec with (stackfile.SPEC_LABEL)
    desired: int
    running: int  # tasks running the current spec (healthy, where a healthcheck is set)
    update_state: str | None  # the swarm's UpdateStatus.State (None: never updated)
    update_message: str = ""
    pending: dict[str, str] = field(default_factory=dict)  # task id -> why it is not placed
    failed: dict[str, str] = field(default_factory=dict)  # task id -> why that task of the current spec failed

    def row(self) -> dict[str, Any]:
        return {"name": self.name, "image": self.image, "desired": self.desired, "running": self.running,
                "update_state": self.update_state}

    def text(self) -> str:
        state = f", {self.update_state}" if self.update_state else ""
        return f"{self.name} {self.running}/{self.desired}{state}"


def service_states(services: Sequence[Mapping[str, Any]], tasks: Sequence[Mapping[str, Any]]) -> list[ServiceState]:
    by_service: dict[str, list[Mapping[str, Any]]] = {}
    for task in tasks:
        by_service.setdefault(str(task.get("ServiceID")), []).append(task)
    states = []
    for service in sorted(services, key=_name):
        mine = by_service.get(str(service.get("ID")), [])
        current = [t for t in mine if _current(t, service)]
        running = [t for t in current if t.get("DesiredState") == "running"
                   and (t.get("Status") or {}).get("State") == "running"]
        pending = {str(t.get("ID")): str((t.get("Status") or {}).get("Err") or (t.get("Status") or {}).get("Message")
                                         or "not placed yet")
                   for t in mine if t.get("DesiredState") == "running"
                   and (t.get("Status") or {}).get("State") == "pending"}
        # The failures of this spec since it was last deployed (``docker stack deploy`` updates
        # every service: an earlier deployment's failed tasks are older than that).
        since = when(service.get("UpdatedAt"))
        failed = {str(t.get("ID")): str((t.get("Status") or {}).get("Err") or (t.get("Status") or {}).get("Message")
                                        or "failed")
                  for t in current if (t.get("Status") or {}).get("State") in ("failed", "rejected")
                  and (since is None or (when(t.get("CreatedAt")) or since) >= since)}
        update = service.get("UpdateStatus") or {}
        labels = (service.get("Spec") or {}).get("Labels") or {}
        desired = desired_replicas(service, mine)
        mode = (service.get("Spec") or {}).get("Mode") or {}
        if desired == 0 and "Global" in mode:  # the swarm made no task: no node may run it
            pending[f"service {_name(service)}"] = "no node meets its placement constraints"
        states.append(ServiceState(_name(service), _spec_image(service), str(labels.get(SPEC_LABEL, "")),
                                   desired, len(running), update.get("State"), str(update.get("Message") or ""),
                                   pending, failed))
    return states


@dataclass
class Verdict:
    converged: bool
    failure: str | None
    progress: str


@dataclass
class SwarmGate:
    """Judges the stack's services, one look at a time (:meth:`look`): ``wanted`` is each
    service's spec digest in the release (:func:`surefoot.engines.swarm.stackfile.spec_digest`); a look that
    finds every service converged starts the monitor window, one that does not ends it; a task
    pending past ``pending_limit`` seconds, a rollback or pause of an update, or a crash loop
    fail at once."""

    wanted: Mapping[str, str]  # swarm service name -> spec digest
    monitor: float
    pending_limit: float
    converged_since: float | None = None
    _pending_since: dict[str, float] = field(default_factory=dict)
    _failures: int = 0  # failed tasks of the release seen so far

    def look(self, states: Sequence[ServiceState], now: float) -> Verdict:
        found = {state.name: state for state in states}
        failures = sum(len(found[name].failed) for name in self.wanted if name in found)
        if failures > self._failures:  # a task failed (even one replaced since): the window starts again
            self._failures = failures
            self.converged_since = None
        waiting: list[str] = []
        for name, spec in sorted(self.wanted.items()):
            state = found.get(name)
            if state is None:
                waiting.append(f"{name} not created yet")
                continue
            failure = self._failure(state, spec, now)
            if failure is not None:
                return Verdict(False, failure, state.text())
            if state.spec != spec or state.update_state in ("updating",) or state.running < state.desired \
                    or state.pending:
                waiting.append(state.text())
        if waiting:
            self.converged_since = None
            return Verdict(False, None, "; ".join(waiting))
        if self.converged_since is None:
            self.converged_since = now
        held = now - self.converged_since
        mine = [s for s in states if s.name in self.wanted]
        text = ", ".join(s.text() for s in mine)
        # A completed update was watched by the swarm itself (its update_config.monitor after
        # the last batch): no need to wait again; a new service, or one never updated, is.
        if held >= self.monitor or all(s.update_state == "completed" for s in mine):
            return Verdict(True, None, text)
        return Verdict(False, None, f"{text} (steady for {held:.1f}s of {self.monitor:.0f}s)")

    def _failure(self, state: ServiceState, spec: str, now: float) -> str | None:
        message = f": {state.update_message}" if state.update_message else ""
        # ``docker stack deploy`` clears every service's update status: a rollback seen after
        # it is the swarm undoing this release (even one whose spec equals the previous one).
        if state.update_state in _ROLLED_BACK:
            return f"the swarm rolled {state.name} back ({state.update_state}){message}"
        if state.update_state == "paused":
            return f"the update of {state.name} is paused{message}"
        failed = list(state.failed.values())
        if len(failed) >= CRASH_LOOP:
            return f"{state.name}: {len(failed)} tasks of this release failed (a crash loop); the last: {failed[-1]}"
        for task, why in state.pending.items():
            since = self._pending_since.setdefault(task, now)
            if now - since > self.pending_limit:
                return (f"{state.name}: a task cannot be scheduled after {self.pending_limit:.0f}s: {why} "
                        "(check deploy.placement.constraints, the nodes' resources and host-mode ports)")
        return None


def stack_view(conn: SshConnection, stack: str) -> list[dict[str, Any]]:
    """``status --json``'s ``services`` of a swarm target: each service's name, image, desired and
    running tasks and the swarm's update state, and its tasks (node, state, error)."""
    result = conn.run(stack_status_argv(stack), timeout=30)
    parts = [*result.stdout.split("@@\n"), "", "", ""][:3]
    try:
        services = json.loads(parts[0]) if parts[0].strip() else []
        tasks = json.loads(parts[1]) if parts[1].strip() else []
    except ValueError:
        raise SwarmError(f"{conn.target.label}: unexpected answer about the stack: "
                         f"{(result.stderr or result.stdout).strip()[:200]}") from None
    hostnames = dict(line.split(" ", 1) for line in parts[2].splitlines() if " " in line)
    rows = []
    for state, service in zip(service_states(services, tasks), sorted(services, key=_name), strict=True):
        row = state.row()
        row["tasks"] = [{"node": hostnames.get(str(t.get("NodeID")), t.get("NodeID") or "-"),
                         "state": (t.get("Status") or {}).get("State"), "desired_state": t.get("DesiredState"),
                         "image": ((t.get("Spec") or {}).get("ContainerSpec") or {}).get("Image"),
                         "error": (t.get("Status") or {}).get("Err") or None}
                        for t in tasks
                        if t.get("ServiceID") == service.get("ID") and t.get("DesiredState") == "running"]
        rows.append(row)
    return rows


def render_services(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The lines of ``status`` for a swarm's services and their tasks."""
    lines = ["services on the swarm:"]
    for row in rows:
        state = f", {row['update_state']}" if row.get("update_state") else ""
        lines.append(f"  {row['name']}: {row['running']}/{row['desired']} running{state}  ({row['image']})")
        for task in row.get("tasks") or []:
            error = f": {task['error']}" if task.get("error") else ""
            lines.append(f"    {task['node']}: {task['state']}{error}")
    return lines


