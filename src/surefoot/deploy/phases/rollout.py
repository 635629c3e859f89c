"""Start-first updates (and rollbacks) of the services in ``phases.services-start.zero_downtime``,
invisible to any proxy that finds the service by Docker's DNS, retries or not.

For each listed service whose image, config or env changed (compose's config hash, or the image
id, differs from what its running containers carry):

1. **Out of rotation until gated**: the new containers are created (not started) beside the old
   ones, taken off their networks and put back without the service's aliases, then started: no
   proxy can resolve them while they start, or while a release that never turns healthy fails.
   They are gated on their own (container state and health, and the service's command probes
   inside each).
2. **Into rotation**: each joins its networks again under the service's aliases (Docker cannot
   add an alias to a live endpoint: the connections a new container opened during its gate are
   reset once, before it serves anyone).
3. **Out of rotation before it stops**: every new connection to an old container's address is
   steered to a new container on the engine's host (:mod:`surefoot.hosts.steering`), while the
   old container finishes what it holds (up to ``drain``); then it is stopped with the service's
   own stop grace period and removed; the steering stays ``drain`` more (proxies' DNS caches),
   then goes. Where rules cannot be written, the old container leaves its networks first (its
   DNS entry goes; what it was answering then is cut), then ``drain``, stop, remove.

A failed gate removes the new containers; the old ones never stopped serving. The switch is
idempotent, so a resume after ``kill -9`` finishes it: containers whose config hash is the
current one are "new", every other one is "old"; a new one without the service's alias was
never in rotation and is gated (again) before it gets it; old ones left stopped are removed,
and steering rules a cut run left are removed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from surefoot.base.errors import ConfigError, PhaseFailed, StackUntouched
from surefoot.base.units import format_duration, parse_duration
from surefoot.config.probes import ProbeSettings
from surefoot.config.settings import Settings
from surefoot.deploy.api import PhaseContext
from surefoot.deploy.gates import build_probe, run_probes
from surefoot.deploy.gates.watch import ContainerWatch, DockerEvents
from surefoot.deploy.phases.edging import EdgeKeeper
from surefoot.engines.base import Engine
from surefoot.engines.compose.edge import unsupported_ports
from surefoot.engines.compose.model import ComposeModel
from surefoot.hosts.steering import Steering

KEY = "phases.services-start.zero_downtime"
HASH_LABEL = "com.docker.compose.config-hash"
IMAGE_LABEL = "com.docker.compose.image"


def check_zero_downtime(settings: Settings, model: ComposeModel, user: ComposeModel | None = None) -> None:
    """Refuse, before any change, a listed service that is unknown, has a ``container_name`` or
    shares another's network stack: two containers of it cannot run side by side; and ports the
    edge cannot hold (``user``: the user's model, its ports still there): UDP, ranges (exit 2)."""
    where = settings.config_path or Path(settings.project_dir) / "surefoot.toml"
    for service in settings.phases.services_start.zero_downtime:
        spec = model.services.get(service)
        if spec is None:
            raise ConfigError(f"{where}: {KEY}: no service {service!r} in the compose files "
                              f"(services: {', '.join(model.services)})")
        if spec.get("container_name"):
            raise ConfigError(
                f"{where}: {KEY}: {service} has container_name {spec['container_name']!r}, which its old "
                f"and new containers cannot both hold; remove container_name, or take {service} out of "
                "zero_downtime")
        if spec.get("network_mode"):
            raise ConfigError(
                f"{where}: {KEY}: {service} has network_mode {spec['network_mode']!r}: its old and new "
                f"containers would share one network stack; remove network_mode, or take {service} out "
                "of zero_downtime")
    problems = unsupported_ports(user, settings.phases.services_start.zero_downtime) if user is not None else []
    if problems:
        raise ConfigError(f"{where}: {KEY}: the edge that holds the listed services' ports cannot hold "
                          f"{'; '.join(problems)}; take the service out of zero_downtime")


def roll_out(ctx: PhaseContext, *, engine: Engine | None = None, model: ComposeModel | None = None) -> float | None:
    """Switch each listed service start-first, one after another, each gated, through the edge
    for those that publish ports. ``engine`` and ``model``: a release being restored (a
    rollback), else the deployment's. Returns when the edge let go of ports that go back to
    their services (no listed service publishes ports any more), else None."""
    settings = ctx.settings.phases.services_start
    engine = engine or ctx.engine
    if not settings.zero_downtime:
        return EdgeKeeper(ctx, engine, None).retire()
    model = model or ctx.facts.model()
    user = ctx.engine.user_model()  # the edge's ports: the user's files (a release's model has none)
    check_zero_downtime(ctx.settings, model, user)
    edge = EdgeKeeper(ctx, engine, user)
    released = edge.retire() if not edge.services else None
    switch = Switch(ctx, engine, model, settings.drain, edge)
    switch.forget_stale_steering()
    switched = False  # a service switched in this run: a later failure leaves a changed stack
    for service in settings.zero_downtime:
        try:
            switched = switch.service(service) or switched
        except StackUntouched as exc:
            if switched:
                raise PhaseFailed(exc.summary, exit_code=exc.command_exit_code) from None
            raise
    return released


def settle_edge(ctx: PhaseContext, engine: Engine | None = None) -> None:
    """After compose up: the edge holds every port it can and forwards to every container in
    rotation (a first deploy's, which compose up just created, too)."""
    if not ctx.settings.phases.services_start.zero_downtime:
        return
    edge = EdgeKeeper(ctx, engine or ctx.engine, ctx.engine.user_model())
    if edge.services:
        edge.apply()


def _name(item: dict[str, Any]) -> str:
    return str(item.get("Name", "")).lstrip("/")


def _running(item: dict[str, Any]) -> bool:
    return str((item.get("State") or {}).get("Status", "")) in ("running", "restarting")


def _replicas(model: ComposeModel, service: str) -> int:
    spec = model.services[service]
    replicas = (spec.get("deploy") or {}).get("replicas") or spec.get("scale") or 1
    return max(1, int(replicas))


def _networks(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict((item.get("NetworkSettings") or {}).get("Networks") or {})


def service_networks(model: ComposeModel, service: str) -> dict[str, list[str]]:
    """The networks the service joins (their engine names) and the aliases its compose file
    gives it on each, besides its own name."""
    declared = model.data.get("networks") or {}
    joined = model.services[service].get("networks") or {"default": None}
    found = {}
    for key, spec in joined.items():
        name = str((declared.get(key) or {}).get("name") or f"{model.project_name}_{key}")
        found[name] = [str(alias) for alias in ((spec or {}).get("aliases") or [])]
    return found


def stop_grace(model: ComposeModel, service: str) -> float:
    """The service's own ``stop_grace_period`` (compose's default: 10 s)."""
    try:
        return parse_duration(model.services[service].get("stop_grace_period") or "10s")
    except ValueError:
        return 10.0


class Switch:
    """One run's switches (see the module)."""

    def __init__(self, ctx: PhaseContext, engine: Engine, model: ComposeModel, drain: float, edge: EdgeKeeper):
        self.ctx, self.engine, self.model, self.drain, self.edge = ctx, engine, model, drain, edge
        self.steering = Steering(ctx.host, model.project_name)
        self.why_not_steered = self.steering.unavailable()

    def forget_stale_steering(self) -> None:
        """Rules a cut run left for old containers that no longer run."""
        if self.why_not_steered is not None:
            return
        running = [str(item["Id"]) for item in self.engine.containers(list(self.ctx.settings.phases.services_start
                                                                           .zero_downtime)) if _running(item)]
        removed = self.steering.forget_except(running)
        if removed:
            self.ctx.out(f"removed {removed} steering rule(s) an interrupted switch left")

    def in_rotation(self, service: str, item: dict[str, Any]) -> bool:
        """Whether the container is reached by the service's name (gated, once, to get it)."""
        return any(service in ((spec or {}).get("Aliases") or []) for spec in _networks(item).values())

    def service(self, service: str) -> bool:
        """Switch one service start-first; True when old containers were replaced."""
        ctx, engine = self.ctx, self.engine
        desired = engine.config_hash(service)
        image = self.model.image_name(service)
        image_id = engine.image_ids([image]).get(image)

        def current(item: dict[str, Any]) -> bool:
            labels = (item.get("Config") or {}).get("Labels") or {}
            if labels.get(HASH_LABEL) != desired:
                return False
            return image_id is None or labels.get(IMAGE_LABEL) in (None, image_id)

        found = engine.containers([service])
        new = [item for item in found if current(item)]
        old = [item for item in found if not current(item)]
        if not old:
            waiting = [item for item in new if not self.in_rotation(service, item)]
            if waiting:  # cut after the old ones went, before these got the service's name
                self._gate_and_join(service, waiting, [])
            ctx.out(f"{service}: up to date" if new else f"{service}: no container yet (compose up creates it)")
            return bool(waiting)
        if not any(_running(item) for item in old):
            if new:  # a switch cut short after the old ones stopped: they serve nothing
                self._gate_and_join(service, [item for item in new if not self.in_rotation(service, item)], [])
                ctx.out(f"{service}: removing {', '.join(map(_name, old))}, stopped by an interrupted switch")
                engine.remove_containers([str(item["Id"]) for item in old])
            else:
                ctx.out(f"{service}: no old container running: compose up replaces it in place")
            return bool(new)

        waiting = [item for item in new if not self.in_rotation(service, item)]
        total = len(old) + max(_replicas(self.model, service), len(new))
        ctx.out(f"{service}: starting the new version beside {', '.join(map(_name, old))}, out of rotation"
                + (f" (found {', '.join(map(_name, new))} from an interrupted switch)" if new else ""))
        existing = {str(item.get("Id")) for item in new}
        code = engine.create_beside(service, total, ctx.out)
        created = [item for item in engine.containers([service]) if current(item)
                   and str(item.get("Id")) not in existing]
        if code != 0 or (not created and not new):
            engine.remove_containers([str(item["Id"]) for item in created])
            raise StackUntouched(f"{service}: the new container could not be created beside the old one "
                                 f"(docker compose up exit {code}); the old one keeps serving", exit_code=code)
        self._gate_and_join(service, [*waiting, *created], old)
        self._retire(service, old)
        return True

    def _gate_and_join(self, service: str, items: list[dict[str, Any]], old: list[dict[str, Any]]) -> None:
        """Start ``items`` without the service's aliases, gate them, then give them the aliases;
        a failed gate removes them (``old`` keep serving)."""
        if not items:
            return
        ctx, engine = self.ctx, self.engine
        networks = service_networks(self.model, service)
        ids = [str(item["Id"]) for item in items]
        for item in items:
            self._rejoin(item, networks, aliases=None)
        engine.start_containers(ids)
        try:
            self._gate(service, ids)
        except PhaseFailed as exc:
            serving = ", ".join(map(_name, old)) or "nothing else"
            ctx.out(f"{service}: removing the new container(s) {', '.join(map(_name, items))} (never in rotation); "
                    f"{serving} keep(s) serving")
            engine.remove_containers(ids)
            raise StackUntouched(f"{service}: the new version failed its gate, the old one keeps serving: "
                                 f"{exc.summary}") from None
        for item in engine.inspect(ids):
            self._rejoin(item, networks, aliases=[service, _name(item)])
        ctx.out(f"{service}: {', '.join(map(_name, items))} gated, now reached as {service}")
        if service in self.edge.services:
            self.edge.apply({service: engine.inspect(ids)})
            ctx.out(f"{service}: the edge sends new connections to {', '.join(map(_name, items))}")

    def _rejoin(self, item: dict[str, Any], networks: dict[str, list[str]], aliases: list[str] | None) -> None:
        """Leave each of the service's networks (where joined) and join it again, under the
        service's aliases, or (``aliases`` None) under none."""
        container = str(item["Id"])
        joined = _networks(item)
        for network, extra in networks.items():
            if network in joined:
                self.engine.disconnect(container, network)
            self.engine.connect(container, network, [] if aliases is None else [*aliases, *extra])

    def _retire(self, service: str, old: list[dict[str, Any]]) -> None:
        ctx, engine = self.ctx, self.engine
        old_ids = [str(item["Id"]) for item in old]
        names = ", ".join(map(_name, old))
        grace = stop_grace(self.model, service)
        new = [item for item in engine.containers([service]) if self.in_rotation(service, item)
               and str(item["Id"]) not in old_ids]
        if self.why_not_steered is None and new:
            for item in engine.inspect(old_ids):
                self.steering.steer(str(item["Id"]), _pairs(item, new[0]))
            ctx.out(f"{service}: new connections to {names} go to {_name(new[0])}; waiting for what "
                    f"{names} hold(s) (up to {format_duration(self.drain)})")
            self._wait_idle(engine.inspect(old_ids), service)
            ctx.out(f"{service}: stopping {names} (grace {format_duration(grace)})")
            engine.stop_containers(old_ids, grace)
            stopped = time.monotonic()
            engine.remove_containers(old_ids)
            self._take_over(service, old, stopped)
            ctx.cancel.sleep(self.drain)  # proxies that cached the old addresses
            for old_id in old_ids:
                self.steering.forget(old_id)
        else:
            ctx.warn(f"{service}: requests in flight to {names} when it leaves its networks are cut: "
                     f"{self.why_not_steered or 'no new container to steer to'} (see docs/zero-downtime.md)")
            for item in engine.inspect(old_ids):
                for network in _networks(item):
                    engine.disconnect(str(item["Id"]), network)
            ctx.out(f"{service}: {names} out of rotation; waiting {format_duration(self.drain)} (drain)")
            self._wait_idle([], service, at_least=self.drain)
            engine.stop_containers(old_ids, grace)
            stopped = time.monotonic()
            engine.remove_containers(old_ids)
            self._take_over(service, old, stopped)
        ctx.out(f"{service}: switched to {', '.join(map(_name, new)) or 'the new version'}")

    def _wait_idle(self, old: list[dict[str, Any]], service: str, at_least: float = 0.0) -> None:
        """Until the old containers hold no connection they accepted and the edge's workers from
        before its reload are gone, or ``drain`` passed (``at_least``: wait that long anyway)."""
        pids = [int((item.get("State") or {}).get("Pid") or 0) for item in old]
        began = self.ctx.clock()
        edged = service in self.edge.services
        while self.ctx.clock() < began + self.drain:
            held = [self.steering.in_flight(pid) for pid in pids if pid]
            if self.ctx.clock() >= began + at_least and all(count == 0 for count in held) \
                    and (not edged or self.edge.drained()):
                return
            self.ctx.cancel.sleep(0.1)

    def _take_over(self, service: str, old: list[dict[str, Any]], stopped: float) -> None:
        """Ports the old containers published (before the edge held them) go to the edge."""
        published = any((item.get("NetworkSettings") or {}).get("Ports") and any(
            bindings for bindings in ((item.get("NetworkSettings") or {}).get("Ports") or {}).values())
            for item in old)
        if service in self.edge.services and published:
            self.edge.take_over(service, stopped)

    def _gate(self, service: str, ids: list[str]) -> None:
        """The new containers alone: running, healthy when they have a healthcheck, not restarting;
        and each of the service's command probes passes inside each of them."""
        ctx = self.ctx
        health = ctx.settings.phases.health_wait
        with DockerEvents(self.engine).following() as events:
            watch = ContainerWatch(self.engine, [service], events=events, containers=ids)
            probes = [build_probe(ProbeSettings(name=f"{service} (new)", service=service, consecutive=2,
                                                interval=1.0, timeout=health.timeout), ctx, watch)]
            for settings in health.all_probes():
                if settings.service != service or settings.type != "command":
                    continue
                for container in ids:
                    named = settings.model_copy(update={"name": f"{settings.label} in {container[:12]}"})
                    probes.append(build_probe(named, ctx, watch, container=container))
            run_probes(ctx, probes, watch=watch, what=f"{service}: the new container failed its gate",
                       events=events)


def _pairs(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str]]:
    """(the old container's address, the new one's) on each network both are on."""
    theirs = _networks(new)
    return [(str(spec.get("IPAddress")), str(theirs[network].get("IPAddress")))
            for network, spec in _networks(old).items()
            if spec.get("IPAddress") and network in theirs and theirs[network].get("IPAddress")]
