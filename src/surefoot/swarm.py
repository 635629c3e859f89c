"""Docker Swarm as the engine of a target (``[targets.NAME] engine = "swarm"``).

The target's host is a swarm manager. The stack is deployed there with ``docker stack deploy``
(detached: it returns as soon as the service specs are written) and watched by surefoot, not by
the CLI: the manager's API, through the connection's forwarded socket, says how each service's
update and tasks stand. :class:`SwarmGate` judges those answers: a release is in service when
every desired task runs the release's spec, no task failed during a monitor window, and no
update is paused or rolled back by the swarm; it fails fast on a rollback, a pause, a crash
loop, or a task that cannot be scheduled (naming why).

Images reach the other nodes as they reach a server (``docker save | docker load``, only where
the image id is missing), from the manager to each node declared in ``nodes``; each service runs
under a reference named after its image id (:func:`surefoot.swarmfile.image_ref`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from surefoot.engine import Engine, EngineUnavailable
from surefoot.errors import PhaseFailed
from surefoot.proc import ProcessRunner
from surefoot.remote import RemoteProcesses
from surefoot.ssh import SshConnection, SshError
from surefoot.sshargs import SshTarget
from surefoot.swarmfile import SPEC_LABEL

STACK_LABEL = "com.docker.stack.namespace"
CRASH_LOOP = 3  # failed tasks of one service's current spec: a crash loop, no use waiting
_ROLLED_BACK = ("rollback_started", "rollback_paused", "rollback_completed")


def _hostname(node: Mapping[str, Any]) -> str:
    return str((node.get("Description") or {}).get("Hostname") or node.get("ID"))


def may_run(node: Mapping[str, Any], constraints: Sequence[str]) -> bool:
    """Whether ``node`` (as ``/nodes`` gives it) meets placement ``constraints`` on its role,
    hostname and id; a constraint on anything else (labels, platform) may be met."""
    facts = {"node.role": str((node.get("Spec") or {}).get("Role") or ""), "node.hostname": _hostname(node),
             "node.id": str(node.get("ID") or "")}
    for constraint in constraints:
        for operator in ("==", "!="):
            key, found, value = constraint.partition(operator)
            if found:
                break
        else:
            continue
        key, value = key.strip(), value.strip()
        if key in facts and (facts[key] == value) != (operator == "=="):
            return False
    return True


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


def _essential(spec: Mapping[str, Any]) -> str:
    return json.dumps({key: value for key, value in spec.items()
                       if key not in _DEFAULTED and value not in (None, {}, [], "")}, sort_keys=True)


def _current(task: Mapping[str, Any], service: Mapping[str, Any]) -> bool:
    """Whether ``task`` was made from the service's spec as it is now (what its container runs:
    image, command, environment, mounts, healthcheck...)."""
    template = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
    made = ((task.get("Spec") or {}).get("ContainerSpec")) or {}
    return _essential(made) == _essential(template)


@dataclass
class ServiceState:
    """One service as the gate sees it (also ``status --json``'s ``services``)."""

    name: str
    image: str
    spec: str  # the digest surefoot labelled the service's spec with (swarmfile.SPEC_LABEL)
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
        failed = {str(t.get("ID")): str((t.get("Status") or {}).get("Err") or (t.get("Status") or {}).get("Message")
                                        or "failed")
                  for t in current if (t.get("Status") or {}).get("State") in ("failed", "rejected")}
        update = service.get("UpdateStatus") or {}
        labels = (service.get("Spec") or {}).get("Labels") or {}
        states.append(ServiceState(_name(service), _spec_image(service), str(labels.get(SPEC_LABEL, "")),
                                   desired_replicas(service, mine),
                                   len(running), update.get("State"), str(update.get("Message") or ""),
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
    service's spec digest in the release (:func:`surefoot.swarmfile.spec_digest`); a look that
    finds every service converged starts the monitor window, one that does not ends it; a task
    pending past ``pending_limit`` seconds, a rollback or pause of an update, or a crash loop
    fail at once."""

    wanted: Mapping[str, str]  # swarm service name -> spec digest
    monitor: float
    pending_limit: float
    converged_since: float | None = None
    _pending_since: dict[str, float] = field(default_factory=dict)
    _failed_before: set[str] | None = None  # tasks that had failed before the first look: not ours

    def look(self, states: Sequence[ServiceState], now: float) -> Verdict:
        found = {state.name: state for state in states}
        if self._failed_before is None:
            self._failed_before = {task for state in states for task in state.failed}
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
                    or state.desired == 0:
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
        if state.spec != spec and state.update_state in _ROLLED_BACK:
            return f"the swarm rolled {state.name} back ({state.update_state}){message}"
        if state.update_state in ("paused", "rollback_paused"):
            return f"the update of {state.name} is paused{message}"
        failed = [why for task, why in state.failed.items() if task not in (self._failed_before or set())]
        if len(failed) >= CRASH_LOOP:
            return f"{state.name}: {len(failed)} tasks of this release failed (a crash loop); the last: {failed[-1]}"
        for task, why in state.pending.items():
            since = self._pending_since.setdefault(task, now)
            if now - since > self.pending_limit:
                return (f"{state.name}: a task cannot be scheduled after {self.pending_limit:.0f}s: {why} "
                        "(check deploy.placement.constraints, the nodes' resources and host-mode ports)")
        return None


class Swarm:
    """A swarm, asked through its manager: ``engine`` its API (the forwarded socket), ``runner``
    its commands (``docker stack deploy``, ``docker service logs``), ``local`` this machine's
    processes (the image streams between the manager and the nodes)."""

    def __init__(self, stack: str, engine: Engine, runner: RemoteProcesses, local: ProcessRunner,
                 manager: SshConnection, nodes: Sequence[SshTarget], label: str):
        self.stack = stack
        self.engine = engine
        self.runner = runner
        self.local = local
        self.manager = manager
        self.node_targets = tuple(nodes)
        self.label = label  # "target cluster", for messages
        self._conns: list[SshConnection] | None = None
        self._node_ids: dict[str, str] = {}  # a declared node's ssh label -> its swarm node id

    def service_name(self, service: str) -> str:
        return f"{self.stack}_{service}"

    # -- questions ----------------------------------------------------------------
    def _get(self, path: str, query: dict[str, str] | None = None) -> Any:
        try:
            return self.engine.request("GET", path, query)
        except EngineUnavailable as exc:
            raise SwarmError(f"{self.label}: the manager's engine did not answer ({exc})") from None

    def info(self) -> dict[str, Any]:
        return dict(self._get("/info") or {})

    def nodes(self) -> list[dict[str, Any]]:
        return list(self._get("/nodes") or [])

    def services(self) -> list[dict[str, Any]]:
        filters = json.dumps({"label": [f"{STACK_LABEL}={self.stack}"]})
        return list(self._get("/services", {"filters": filters}) or [])

    def tasks(self) -> list[dict[str, Any]]:
        filters = json.dumps({"label": [f"{STACK_LABEL}={self.stack}"]})
        return list(self._get("/tasks", {"filters": filters}) or [])

    def states(self) -> list[ServiceState]:
        return service_states(self.services(), self.tasks())

    def published_ports(self) -> set[int]:
        """The ports the stack's services publish now (held by its tasks: ours, not another's)."""
        return {int(port["PublishedPort"]) for service in self.services()
                for port in ((service.get("Endpoint") or {}).get("Ports") or []) if port.get("PublishedPort")}

    def manager_problem(self) -> str | None:
        """Why the host cannot deploy a stack (None: it is a manager of an active swarm)."""
        swarm = self.info().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active":
            return (f"{self.label} is not part of a swarm (its state: {swarm.get('LocalNodeState') or 'unknown'}): "
                    "run `docker swarm init` there, or set engine = \"compose\"")
        if not swarm.get("ControlAvailable"):
            return f"{self.label} is a worker of its swarm, not a manager: give a manager's address as host"
        return None

    # -- changes ------------------------------------------------------------------
    def deploy(self, stack_file: Path, on_line: Callable[[str], None], *, prune: bool) -> None:
        """``docker stack deploy`` of ``stack_file`` (which names every image by reference:
        ``--resolve-image never``, the nodes do not ask a registry for what they have)."""
        argv = ["docker", "stack", "deploy", "--resolve-image", "never", *(["--prune"] if prune else []),
                "--compose-file", str(stack_file), self.stack]
        on_line("$ " + " ".join(argv))
        lines: list[str] = []

        def keep(line: str) -> None:
            lines.append(line)
            on_line(line)

        code = self.runner.stream(argv, keep, timeout=300)
        if code != 0:
            last = next((line.strip() for line in reversed(lines) if line.strip()), "")
            raise SwarmError(f"docker stack deploy failed (exit {code})" + (f": {last}" if last else ""),
                             exit_code=code)

    def remove_service(self, name: str) -> None:
        try:
            self.engine.request("DELETE", f"/services/{quote(name, safe='')}", expect=(200, 404))
        except EngineUnavailable as exc:
            raise SwarmError(f"{self.label}: removing the service {name} failed ({exc})") from None

    def ship(self, images: Mapping[str, Sequence[str]], on_line: Callable[[str], None]) -> None:
        """Each image (``images``: its placement constraints) to every node that may run it and
        lacks it: ``docker save`` on the manager, ``docker load`` on the node, the stream through
        this machine. A node that may run one but is not declared in ``nodes`` fails it first."""
        from concurrent.futures import ThreadPoolExecutor

        from surefoot.imageship import describe, remote_image_ids, ship_images

        if not images:
            return
        ids = remote_image_ids(self.manager, sorted(images))
        missing = [image for image, found in ids.items() if not found]
        if missing:
            raise SwarmError(f"{self.label}: the manager lacks {', '.join(missing)}")
        conns = self.node_connections()
        nodes = {str(n.get("ID")): n for n in self.nodes()}
        declared = {self._node_id(conn): conn for conn in conns}
        manager = str((self.info().get("Swarm") or {}).get("NodeID"))
        unreached = [node for node_id, node in nodes.items() if node_id not in declared and node_id != manager
                     and (node.get("Status") or {}).get("State") == "ready"
                     and (node.get("Spec") or {}).get("Availability") == "active"
                     and any(may_run(node, constraints) for constraints in images.values())]
        if unreached:
            names = ", ".join(_hostname(node) for node in unreached)
            raise SwarmError(f"{self.label}: the node(s) {names} may run this release's tasks but cannot receive "
                             "its images: list them in the target's nodes (ssh addresses), or drain them "
                             "(docker node update --availability drain)")

        def one(node_id: str) -> str:
            conn = declared[node_id]
            node = nodes.get(node_id, {})
            wanted = sorted(image for image, constraints in images.items() if may_run(node, constraints))
            if not wanted:
                return f"{conn.target.label}: runs none of these services (placement constraints)"
            report = ship_images(self.local, conn, wanted, on_line=on_line, local_ids=ids, source=self.manager)
            return f"{conn.target.label}: {describe(report)}"

        if declared:
            with ThreadPoolExecutor(len(declared), thread_name_prefix="ship") as pool:
                for line in pool.map(one, sorted(declared)):
                    on_line(line)

    def node_connections(self) -> list[SshConnection]:
        if self._conns is None:
            conns = []
            try:
                for target in self.node_targets:
                    conn = SshConnection(target)
                    conn.open()
                    conns.append(conn)
            except SshError:
                for conn in conns:
                    conn.close()
                raise
            self._conns = conns
        return self._conns

    def _node_id(self, conn: SshConnection) -> str:
        known = self._node_ids.get(conn.target.label)
        if known is not None:
            return known
        result = conn.run(["docker", "info", "--format", "{{.Swarm.NodeID}}"], timeout=30)
        node = result.stdout.strip()
        if result.returncode != 0 or not node:
            raise SwarmError(f"{conn.target.label} is listed in nodes but is not a node of a swarm "
                             f"({(result.stderr or result.stdout).strip() or 'no node id'})")
        self._node_ids[conn.target.label] = node
        return node

    def close(self) -> None:
        for conn in self._conns or []:
            conn.close()
        self._conns = None


# ``status``: the stack's services, tasks and nodes in one command (services and tasks as the
# API gives them; a node per line: its id and hostname), sections split by a line "@@".
_STATUS_SCRIPT = """\
docker service ls -q --filter "label=com.docker.stack.namespace=$1" | xargs -r docker service inspect
echo @@
docker stack ps -q "$1" 2>/dev/null | xargs -r docker inspect
echo @@
docker node ls --format '{{.ID}} {{.Hostname}}' 2>/dev/null
true"""


def stack_view(conn: SshConnection, stack: str) -> list[dict[str, Any]]:
    """``status --json``'s ``services`` of a swarm target: each service's name, image, desired and
    running tasks and the swarm's update state, and its tasks (node, state, error)."""
    result = conn.run(["sh", "-c", _STATUS_SCRIPT, "surefoot", stack], timeout=30)
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


def watch(swarm: Swarm, gate: SwarmGate, *, timeout: float, interval: float, clock: Callable[[], float],
          progress: Callable[[str], None], cancelled: Callable[[], bool] = lambda: False,
          sleep: Callable[[float], None] = time.sleep) -> str:
    """Look at the stack until the gate passes (returns the last progress line), fails, or
    ``timeout`` passes (both raise SwarmError naming why)."""
    started = clock()
    last = ""
    while True:
        verdict = gate.look(swarm.states(), clock())
        if verdict.progress != last:
            progress(verdict.progress)
            last = verdict.progress
        if verdict.failure is not None:
            raise SwarmError(verdict.failure)
        if verdict.converged:
            return verdict.progress
        if clock() - started > timeout:
            raise SwarmError(f"the stack did not converge within {timeout:.0f}s: {verdict.progress}")
        if cancelled():
            return last
        sleep(interval)
