"""The project's edge during a switch (:mod:`surefoot.engines.compose.edge` says what it is): started when
a listed service first publishes ports through it, its backends replaced by a reload when a
service switches, its ports taken over from the old containers that published them, and removed
when no listed service publishes ports any more."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from surefoot.base.units import format_duration
from surefoot.deploy.api import PhaseContext
from surefoot.engines.base import Engine
from surefoot.engines.compose.edge import (
    ROLE_LABEL,
    Frontend,
    WorkerWatch,
    edge_services,
    forget_state,
    frontends,
    render,
    wait_until,
    write_state,
)
from surefoot.engines.compose.model import ComposeModel

PROJECT_KEY = "surefoot.project"  # not compose's label: compose up --remove-orphans would remove the edge


def edge_name(project: str) -> str:
    return f"{project}-edge"


def _address(item: dict[str, Any]) -> str | None:
    """An address of the container the edge (on the host's network) reaches it at."""
    for spec in ((item.get("NetworkSettings") or {}).get("Networks") or {}).values():
        if (spec or {}).get("IPAddress"):
            return str(spec["IPAddress"])
    return None


def _in_rotation(service: str, item: dict[str, Any]) -> bool:
    running = str((item.get("State") or {}).get("Status", "")) == "running"
    networks = ((item.get("NetworkSettings") or {}).get("Networks") or {}).values()
    return running and any(service in ((spec or {}).get("Aliases") or []) for spec in networks)


class EdgeKeeper:
    """The edge of ``engine``'s project; ``model``: the user's (its ports still on their services)."""

    def __init__(self, ctx: PhaseContext, engine: Engine, model: ComposeModel | None):
        self.ctx, self.engine = ctx, engine
        self.project = ctx.settings.project_name
        self.name = edge_name(self.project)
        listed = ctx.settings.phases.services_start.zero_downtime
        self.services = edge_services(model, listed) if model is not None else []
        self.fronts = frontends(model, self.services) if model is not None else []
        self.drain = ctx.settings.phases.services_start.drain
        self.image = ctx.settings.edge.image
        self.watch: WorkerWatch | None = None
        self.chosen: dict[str, list[dict[str, Any]]] = {}  # a service's backends, while it switches

    def running(self) -> bool:
        found = self.engine.inspect([self.name])
        return bool(found) and str((found[0].get("State") or {}).get("Status")) == "running"

    def exists(self) -> bool:
        return bool(self.engine.inspect([self.name]))

    def _held_elsewhere(self) -> set[int]:
        """Host ports the project's own containers publish now (an old generation, before the
        edge takes them over)."""
        return self.engine.published_ports()

    def bindable(self) -> list[Frontend]:
        held = self._held_elsewhere()
        return [front for front in self.fronts if front.host_port not in held]

    def backends(self) -> dict[str, list[dict[str, Any]]]:
        """Each edge service's containers in rotation (or those chosen for a service in the
        middle of its switch)."""
        chosen = self.chosen
        found: dict[str, list[dict[str, Any]]] = {}
        for service in self.services:
            if service in chosen:
                found[service] = list(chosen[service])
            else:
                found[service] = [item for item in self.engine.containers([service]) if _in_rotation(service, item)]
        return found

    def apply(self, overrides: Mapping[str, Sequence[dict[str, Any]]] | None = None) -> None:
        """Start the edge, or reload it with the ports it can bind and each service's backends."""
        self.chosen.update({service: list(items) for service, items in (overrides or {}).items()})
        backends = self.backends()
        fronts = self.bindable()
        servers = {service: [(str(item["Id"])[:12], address) for item in items
                             if (address := _address(item)) is not None]
                   for service, items in backends.items()}
        config = render(fronts, servers, self.drain)
        listed = self.engine.edge_processes(self.name) if self.running() else []
        if not listed:
            if self.exists():  # stopped, or left by a cut run: started anew from this configuration
                self.engine.remove_containers([self.name])
            self.ctx.out(f"starting the edge {self.name} ({self.image}): "
                         f"{', '.join(front.label for front in fronts) or 'no port yet'}")
            self.engine.start_edge(self.name, self.image, config, {PROJECT_KEY: self.project, ROLE_LABEL: "1"})
            self.watch = WorkerWatch([])
        else:
            self.watch = WorkerWatch(listed)
            self.engine.reload_edge(self.name, config)
        wait_until(lambda: self.watch is not None and self.watch.started(self.engine.edge_processes(self.name)),
                   30, "its new worker did not start", self.ctx.cancel.sleep, self.ctx.clock)
        write_state(self.ctx.state_dir, self.image, fronts,
                    {service: [str(item["Id"]) for item in items] for service, items in backends.items()})

    def drained(self) -> bool:
        """The workers from before the last reload are gone: the old backends hold nothing."""
        return self.watch is None or self.watch.drained(self.engine.edge_processes(self.name))

    def take_over(self, service: str, stopped_at: float) -> None:
        """The old containers of ``service`` stopped and freed their ports: bind them now, and say
        how long they were unbound (a port cannot be held by two processes at once)."""
        missing = [front for front in self.fronts if front.service == service and front not in self.bindable()]
        before = {front.host_port for front in self.fronts if front.service == service}
        self.apply()
        gap = time.monotonic() - stopped_at
        ports = ", ".join(str(port) for port in sorted(before))
        if missing:
            self.ctx.warn(f"{service}: port(s) {ports} still held by another container: the edge cannot bind them")
        else:
            self.ctx.out(f"{service}: port(s) {ports} moved to the edge; unbound for {format_duration(gap)}")

    def retire(self) -> float | None:
        """No listed service publishes ports any more: remove the edge (before compose up gives the
        ports back to their services). When it was removed."""
        if not self.exists():
            forget_state(self.ctx.state_dir)
            return None
        self.ctx.out(f"removing the edge {self.name}: its ports go back to their services")
        self.engine.remove_containers([self.name])
        forget_state(self.ctx.state_dir)
        return time.monotonic()
