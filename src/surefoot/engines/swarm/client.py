"""A swarm, asked and changed through its manager (``[targets.NAME] engine = "swarm"``).

The target's host is a swarm manager. The stack is deployed there with ``docker stack deploy``
(detached: it returns as soon as the service specs are written) and watched by surefoot, not by
the CLI: the manager's API, through the connection's forwarded socket, says how each service's
update and tasks stand. :class:`surefoot.engines.swarm.state.SwarmGate` judges those answers: a
release is in service when every desired task runs the release's spec, no task failed during a
monitor window, and no update is paused or rolled back by the swarm; it fails fast on a
rollback, a pause, a crash loop, or a task that cannot be scheduled (naming why).

Images reach the other nodes as they reach a server (``docker save | docker load``, only where
the image id is missing), from the manager to each node declared in ``nodes``; each service runs
under a reference named after its image id (:func:`surefoot.engines.swarm.stackfile.image_ref`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from surefoot.config.address import SshAddress
from surefoot.engines.api import ApiUnavailable, DockerApi
from surefoot.engines.swarm.argv import (
    STACK_LABEL,
    node_id_argv,
    service_logs_argv,
    stack_deploy_argv,
    untag_stale_argv,
)
from surefoot.engines.swarm.state import ServiceState, SwarmError, SwarmGate, service_states
from surefoot.hosts.ssh.args import SshError
from surefoot.hosts.ssh.connection import SshConnection
from surefoot.proc import Processes, ProcessRunner


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


class SwarmClient(Protocol):
    """What the swarm's phases, its gate and its preflight checks ask of a swarm (:class:`Swarm`
    through its manager; a fake one in tests)."""

    registry: str | None  # build = "registry": services run by digest from there

    def service_name(self, service: str) -> str: ...

    def nodes(self) -> list[dict[str, Any]]: ...

    def services(self) -> list[dict[str, Any]]: ...

    def tasks(self) -> list[dict[str, Any]]: ...

    def states(self) -> list[ServiceState]: ...

    def published_ports(self) -> set[int]: ...

    def manager_problem(self) -> str | None: ...

    def deploy(self, stack_file: Path, on_line: Callable[[str], None], *, prune: bool) -> None: ...

    def follow_logs(self, service: str, on_line: Callable[[str], None]) -> AbstractContextManager[None]: ...

    def registry_digest(self, image_id: str, name: str = "") -> str | None: ...

    def remove_service(self, name: str) -> str | None: ...

    def ship(self, images: Mapping[str, Sequence[str]], on_line: Callable[[str], None]) -> None: ...

    def untag_stale(self, prefix: str, keep: set[str]) -> dict[str, list[str]]: ...

    def close(self) -> None: ...


class Swarm:
    """A swarm, asked through its manager: ``api`` its API (the forwarded socket), ``runner``
    its commands (``docker stack deploy``, ``docker service logs``), ``local`` this machine's
    processes (the image streams between the manager and the nodes)."""

    def __init__(self, stack: str, api: DockerApi, runner: Processes, local: ProcessRunner,
                 manager: SshConnection, nodes: Sequence[SshAddress], label: str, registry: str | None = None,
                 ship: str = "layers"):
        self.stack = stack
        self.transfer = ship  # how images go to the nodes: "layers" (only what each lacks) or "images"
        # build = "registry": the nodes pull the images from there (by digest), none is shipped
        self.registry = registry
        self.api = api
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
            return self.api.request("GET", path, query)
        except ApiUnavailable as exc:
            raise SwarmError(f"{self.label}: the manager's daemon did not answer ({exc})") from None

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
        argv = stack_deploy_argv(stack_file, self.stack, prune=prune, registry_auth=self.registry is not None)
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

    @contextmanager
    def follow_logs(self, service: str, on_line: Callable[[str], None]) -> Iterator[None]:
        """A service's log lines (its tasks', standard error too) to ``on_line`` for the block."""
        with self.runner.follow(service_logs_argv(service), on_line):
            yield

    def registry_digest(self, image_id: str, name: str = "") -> str | None:
        """The image as ``REGISTRY/NAME@sha256:...`` when the manager pulled it from the target's
        registry (``build = "registry"``; the one of ``name``, the service's image name, first),
        else from any registry; None when it came from none."""
        found = self._get(f"/images/{quote(image_id, safe='')}/json") or {}
        digests = [str(d) for d in found.get("RepoDigests") or []]
        mine = [d for d in digests if self.registry and d.startswith(self.registry.rstrip("/") + "/")]
        short = name.rsplit("/", 1)[-1].split(":")[0]
        named = [d for d in mine if short and d.split("@")[0].rsplit("/", 1)[-1] == short]
        chosen = named or mine or digests
        return chosen[0] if chosen else None

    def remove_service(self, name: str) -> str | None:
        """Remove the service ``name``; its id, or None when there was none."""
        path = f"/services/{quote(name, safe='')}"
        try:
            found = self.api.request("GET", path, expect=(200, 404))
            if found is None:
                return None
            self.api.request("DELETE", path, expect=(200, 404))
        except ApiUnavailable as exc:
            raise SwarmError(f"{self.label}: removing the service {name} failed ({exc})") from None
        return str(found.get("ID") or name)

    def ship(self, images: Mapping[str, Sequence[str]], on_line: Callable[[str], None]) -> None:
        """Each image (``images``: its placement constraints) to every node that may run it and
        lacks it: ``docker save`` on the manager, ``docker load`` on the node, the stream through
        this machine. A node that may run one but is not declared in ``nodes`` fails it first."""
        from concurrent.futures import ThreadPoolExecutor

        from surefoot.engines.compose.delivery import ship_as_layers, whole_there
        from surefoot.engines.compose.ship import ShipError, describe, local_image_ids, remote_image_ids, ship_images

        images = {image: constraints for image, constraints in images.items() if "@" not in image}
        if not images:
            return  # every image by digest: each node pulls its own from the registry
        try:
            ids = remote_image_ids(self.manager, sorted(images))
        except SshError as exc:
            raise SwarmError(f"{self.label}: asking the manager for its images: {exc}") from None
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

        try:  # built here (build = "control"): the layers go from this machine's engine
            here = local_image_ids(self.local, sorted(images))
        except ShipError:
            here = {}
        source = None if all(here.get(image) == found for image, found in ids.items()) else self.manager

        def one(node_id: str) -> str:
            conn = declared[node_id]
            node = nodes.get(node_id, {})
            wanted = sorted(image for image, constraints in images.items() if may_run(node, constraints))
            if not wanted:
                return f"{conn.target.label}: runs none of these services (placement constraints)"
            if self.transfer == "images" or whole_there(conn, on_line):
                report = ship_images(self.local, conn, wanted, on_line=on_line, local_ids=ids, source=self.manager)
                return f"{conn.target.label}: {describe(report)}"
            return ship_as_layers(self.local, conn, wanted, on_line=on_line, source=source, local_ids=ids)

        if declared:
            with ThreadPoolExecutor(len(declared), thread_name_prefix="ship") as pool:
                for line in pool.map(one, sorted(declared)):
                    on_line(line)

    def untag_stale(self, prefix: str, keep: set[str]) -> dict[str, list[str]]:
        """Remove, on the manager and every declared node, the image-id references under ``prefix``
        (``surefoot.local/PROJECT``) not in ``keep``; a reference a container still uses stays.
        Returns what each machine removed."""
        removed: dict[str, list[str]] = {}
        for conn in [self.manager, *self.node_connections()]:
            try:
                done = conn.run(untag_stale_argv(self.stack, prefix, sorted(keep)), timeout=120)
            except SshError as exc:
                raise SwarmError(f"cleaning up old image references: {exc}") from None
            removed[conn.target.label] = done.stdout.split() if done.returncode == 0 else []
        return removed

    def node_connections(self) -> list[SshConnection]:
        if self._conns is None:
            conns = []
            try:
                for target in self.node_targets:
                    conn = SshConnection(target, cancel=self.local.cancel)
                    conn.open()
                    conns.append(conn)
            except SshError as exc:
                for conn in conns:
                    conn.close()
                raise SwarmError(f"{self.label}: a node listed in nodes cannot be reached: {exc}") from None
            self._conns = conns
        return self._conns

    def _node_id(self, conn: SshConnection) -> str:
        known = self._node_ids.get(conn.target.label)
        if known is not None:
            return known
        try:
            result = conn.run(node_id_argv(), timeout=30)
        except SshError as exc:
            raise SwarmError(f"{conn.target.label}: {exc}") from None
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


def watch(swarm: SwarmClient, gate: SwarmGate, *, timeout: float, interval: float, clock: Callable[[], float],
          progress: Callable[[str], None], check: Callable[[], None] = lambda: None,
          sleep: Callable[[float], None] = time.sleep) -> str:
    """Look at the stack until the gate passes (returns the last progress line), fails, or
    ``timeout`` passes (both raise SwarmError naming why). ``check`` raises when the run is
    cancelled (never a pass); ``sleep`` is woken by a cancel."""
    started = clock()
    last = ""
    while True:
        check()
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
        sleep(interval)
