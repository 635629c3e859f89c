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


def _current(task: Mapping[str, Any], service: Mapping[str, Any]) -> bool:
    """Whether ``task`` was made from the service's spec as it is now (its container spec)."""
    template = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
    made = ((task.get("Spec") or {}).get("ContainerSpec")) or {}
    return json.dumps(made, sort_keys=True) == json.dumps(template, sort_keys=True)


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
    finds every service converged starts the
    monitor window, one that does not ends it; a task pending past ``pending_limit`` seconds,
    a rollback or pause of an update, or a crash loop fail at once."""

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
        text = ", ".join(s.text() for s in states if s.name in self.wanted)
        if held >= self.monitor:
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

    def ship(self, images: Sequence[str], on_line: Callable[[str], None]) -> None:
        """The images to every declared node lacking them (``docker save`` on the manager,
        ``docker load`` on the node, through this machine), then a check that each node of the
        swarm either was declared or already has them all."""
        from concurrent.futures import ThreadPoolExecutor

        from surefoot.imageship import describe, remote_image_ids, ship_images

        images = sorted(set(images))
        if not images:
            return
        ids = remote_image_ids(self.manager, images)
        missing = [image for image, found in ids.items() if not found]
        if missing:
            raise SwarmError(f"{self.label}: the manager lacks {', '.join(missing)}")
        conns = self.node_connections()

        def one(conn: SshConnection) -> str:
            report = ship_images(self.local, conn, images, on_line=on_line, local_ids=ids, source=self.manager)
            return f"{conn.target.label}: {describe(report)}"

        if conns:
            with ThreadPoolExecutor(len(conns), thread_name_prefix="ship") as pool:
                for line in pool.map(one, conns):
                    on_line(line)
        reached = {self.info().get("Swarm", {}).get("NodeID")} | {self._node_id(conn) for conn in conns}
        others = [n for n in self.nodes() if n.get("ID") not in reached
                  and (n.get("Status") or {}).get("State") == "ready"
                  and (n.get("Spec") or {}).get("Availability") == "active"]
        if others:
            names = ", ".join(str((n.get("Description") or {}).get("Hostname") or n.get("ID")) for n in others)
            raise SwarmError(f"{self.label}: the node(s) {names} cannot receive this release's images: list them "
                             "in the target's nodes (ssh addresses), or drain them "
                             "(docker node update --availability drain)")

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
        result = conn.run(["docker", "info", "--format", "{{.Swarm.NodeID}}"], timeout=30)
        node = result.stdout.strip()
        if result.returncode != 0 or not node:
            raise SwarmError(f"{conn.target.label} is listed in nodes but is not a node of a swarm "
                             f"({(result.stderr or result.stdout).strip() or 'no node id'})")
        return node

    def close(self) -> None:
        for conn in self._conns or []:
            conn.close()
        self._conns = None


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
