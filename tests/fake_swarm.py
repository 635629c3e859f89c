"""A swarm that is not there: :class:`FakeSwarm` answers a swarm's phases as a manager's API would
(services and tasks in the API's shape, made from each stack file deployed), with scripted
misfortunes: a service whose tasks fail, one the swarm rolls back, one that cannot be placed, a
migration's exit code. :class:`FakeSwarmEngine` is a FakeEngine on it. mypy checks that
FakeSwarm is a SwarmClient (the assignment at the end)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fakes import FakeEngine, Script
from surefoot.engines.swarm.stackfile import MIGRATE_SERVICE
from surefoot.engines.swarm.state import ServiceState, service_states

NOW = "2026-12-06T10:00:00.000000000Z"


class FakeSwarm:
    def __init__(self, stack: str = "shop", registry: str | None = None) -> None:
        self.stack = stack
        self.registry = registry
        self._services: dict[str, dict[str, Any]] = {}  # swarm name -> service
        self._tasks: list[dict[str, Any]] = []
        self.deployed: list[dict[str, Any]] = []  # each stack file's data, in order
        self.shipped: list[dict[str, list[str]]] = []
        self.removed: list[str] = []
        self.broken: set[str] = set()  # services whose tasks of a new spec fail (a crash loop)
        self.rolls_back: set[str] = set()  # services the swarm rolls back when they are updated
        self.unplaced: dict[str, str] = {}  # service -> why its tasks cannot be placed
        self.migration_exit = 0
        self.migration_log = ["applying 2 migrations", "done"]
        self.manager = True
        self.node_states = {"manager1": "ready", "worker1": "ready"}
        self.untagged: dict[str, list[str]] = {}

    def service_name(self, service: str) -> str:
        return f"{self.stack}_{service}"

    # -- what the API answers -------------------------------------------------------------
    def nodes(self) -> list[dict[str, Any]]:
        return [{"ID": name, "Description": {"Hostname": name}, "Status": {"State": state},
                 "Spec": {"Role": "manager" if name.startswith("manager") else "worker", "Availability": "active"}}
                for name, state in self.node_states.items()]

    def services(self) -> list[dict[str, Any]]:
        return list(self._services.values())

    def tasks(self) -> list[dict[str, Any]]:
        return list(self._tasks)

    def states(self) -> list[ServiceState]:
        return service_states(self.services(), self.tasks())

    def published_ports(self) -> set[int]:
        return set()

    def manager_problem(self) -> str | None:
        return None if self.manager else "target cluster is a worker of its swarm, not a manager"

    # -- what changes it --------------------------------------------------------------------
    def deploy(self, stack_file: Path, on_line: Callable[[str], None], *, prune: bool) -> None:
        data = json.loads(stack_file.read_text())
        self.deployed.append(data)
        on_line(f"$ docker stack deploy {self.stack} ({len(data['services'])} services)")
        for name, spec in data["services"].items():
            self._apply(name, spec)
        if prune:
            keep = {self.service_name(name) for name in data["services"]}
            for gone in [name for name in self._services if name not in keep]:
                self.remove_service(gone)

    def _apply(self, name: str, spec: dict[str, Any]) -> None:
        full = self.service_name(name)
        deploy = spec.get("deploy") or {}
        template = {"ContainerSpec": {"Image": spec.get("image", ""), "Args": spec.get("command")}}
        before = self._services.get(full)
        rolled_back = before is not None and name in self.rolls_back
        if rolled_back:
            assert before is not None
            template = before["Spec"]["TaskTemplate"]
        service: dict[str, Any] = {"ID": f"id-{full}", "UpdatedAt": NOW,
                   "Spec": {"Name": full, "Labels": dict(deploy.get("labels") or {}), "TaskTemplate": template,
                            "Mode": {"Replicated": {"Replicas": int(deploy.get("replicas", 1))}}},
                   "UpdateStatus": {"State": "rollback_completed" if rolled_back else "completed"} if before else None}
        if rolled_back:
            assert before is not None
            service["Spec"]["Labels"] = before["Spec"]["Labels"]
        self._services[full] = service
        self._tasks = [t for t in self._tasks if t["ServiceID"] != service["ID"]]
        once = (deploy.get("restart_policy") or {}).get("condition") == "none"
        for index in range(int(deploy.get("replicas", 1))):
            status: dict[str, Any] = {"State": "running"}
            if once:  # a migration: it ran and ended
                exit_code = self.migration_exit if name == MIGRATE_SERVICE else 0
                status = {"State": "complete" if exit_code == 0 else "failed",
                          "ContainerStatus": {"ExitCode": exit_code}, "Err": "" if exit_code == 0 else "exit"}
            elif name in self.unplaced:
                status = {"State": "pending", "Err": self.unplaced[name]}
            self._tasks.append({"ID": f"{full}.{index}", "ServiceID": service["ID"], "NodeID": "manager1",
                                "DesiredState": "shutdown" if once else "running", "Status": status,
                                "Spec": template, "CreatedAt": NOW})
        if name in self.broken and not rolled_back:
            self._tasks = [t for t in self._tasks if t["ServiceID"] != service["ID"]]
            self._tasks += [{"ID": f"{full}.failed{n}", "ServiceID": service["ID"], "NodeID": "manager1",
                             "DesiredState": "shutdown", "Spec": template, "CreatedAt": NOW,
                             "Status": {"State": "failed", "Err": "task: non-zero exit (1)"}} for n in range(3)]

    @contextmanager
    def follow_logs(self, service: str, on_line: Callable[[str], None]) -> Iterator[None]:
        for line in self.migration_log:
            on_line(line)
        yield

    def registry_digest(self, image_id: str, name: str = "") -> str | None:
        if self.registry is None:
            return None
        return f"{self.registry}/{name.rsplit('/', 1)[-1].split(':')[0]}@sha256:{image_id.removeprefix('sha256:')}"

    def remove_service(self, name: str) -> str | None:
        service = self._services.pop(name, None)
        if service is None:
            return None
        self.removed.append(name)
        self._tasks = [t for t in self._tasks if t["ServiceID"] != service["ID"]]
        return str(service["ID"])

    def ship(self, images: Mapping[str, Sequence[str]], on_line: Callable[[str], None]) -> None:
        self.shipped.append({image: list(constraints) for image, constraints in images.items()})

    def untag_stale(self, prefix: str, keep: set[str]) -> dict[str, list[str]]:
        return self.untagged

    def close(self) -> None:
        pass


class FakeSwarmEngine(FakeEngine):
    """A FakeEngine (the manager's daemon) whose target is a swarm."""

    kind = "swarm"

    def __init__(self, swarm: FakeSwarm, script: Script | None = None, project_name: str = "shop",
                 project_dir: Path = Path("/srv/shop")) -> None:
        super().__init__(script, project_name, project_dir)
        self.swarm = swarm


if TYPE_CHECKING:  # mypy: FakeSwarm is what the swarm's phases ask; FakeSwarmEngine an engine on a swarm
    from surefoot.engines.base import Engine
    from surefoot.engines.swarm.client import SwarmClient
    from surefoot.engines.swarm.engine import OnSwarm

    _swarm: SwarmClient = FakeSwarm()
    _engine: Engine = FakeSwarmEngine(FakeSwarm())
    _on_swarm: OnSwarm = FakeSwarmEngine(FakeSwarm())
