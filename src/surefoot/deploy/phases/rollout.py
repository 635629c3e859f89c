"""Start-first updates of the services in ``phases.services-start.zero_downtime``.

For each listed service whose image, config or env changed (compose's config hash, or the
image id, differs from what its running containers carry), the new containers are started
beside the old ones (``compose up --no-recreate --scale``: same networks and aliases, so a
proxy that resolves the service by Docker DNS reaches both), gated on their own (container
state and health, and the service's command probes run inside each new container), and only
then are the old ones stopped with ``drain`` as their stop timeout and removed. A failed gate
removes the new containers and leaves the old ones serving.

The switch is idempotent, so a resume after ``kill -9`` finishes or undoes it: containers
whose config hash is the current one are "new", every other one is "old"; new ones already
there are gated rather than created again, and old ones left stopped are removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from surefoot.base.errors import ConfigError, PhaseFailed, StackUntouched
from surefoot.base.units import format_duration
from surefoot.config.probes import ProbeSettings
from surefoot.config.settings import Settings
from surefoot.deploy.api import PhaseContext
from surefoot.deploy.gates import build_probe, run_probes
from surefoot.deploy.gates.watch import ContainerWatch, DockerEvents
from surefoot.engines.compose.model import ComposeModel

KEY = "phases.services-start.zero_downtime"
HASH_LABEL = "com.docker.compose.config-hash"
IMAGE_LABEL = "com.docker.compose.image"


def check_zero_downtime(settings: Settings, model: ComposeModel) -> None:
    """Refuse, before any change, a listed service that is unknown, publishes a host port or
    has a ``container_name``: two containers of it cannot run side by side (exit 2)."""
    where = settings.config_path or Path(settings.project_dir) / "surefoot.toml"
    for service in settings.phases.services_start.zero_downtime:
        spec = model.services.get(service)
        if spec is None:
            raise ConfigError(f"{where}: {KEY}: no service {service!r} in the compose files "
                              f"(services: {', '.join(model.services)})")
        published = [str(p.get("published")) for p in spec.get("ports") or []
                     if isinstance(p, dict) and p.get("published")]
        if published:
            raise ConfigError(
                f"{where}: {KEY}: {service} publishes host port {published[0]}, which its old and new "
                f"containers cannot both hold; publish the port on a proxy in front of {service} "
                f"(and remove {service}'s ports:), or take {service} out of zero_downtime")
        if spec.get("container_name"):
            raise ConfigError(
                f"{where}: {KEY}: {service} has container_name {spec['container_name']!r}, which its old "
                f"and new containers cannot both hold; remove container_name, or take {service} out of "
                "zero_downtime")


def roll_out(ctx: PhaseContext) -> None:
    """Update each listed service start-first, one after another, each gated."""
    settings = ctx.settings.phases.services_start
    if not settings.zero_downtime:
        return
    model = ctx.facts.model()
    check_zero_downtime(ctx.settings, model)
    switched = False  # a service switched in this run: a later failure leaves a changed stack
    for service in settings.zero_downtime:
        try:
            switched = _roll_out_one(ctx, model, service, settings.drain) or switched
        except StackUntouched as exc:
            if switched:
                raise PhaseFailed(exc.summary, exit_code=exc.command_exit_code) from None
            raise


def _name(item: dict[str, Any]) -> str:
    return str(item.get("Name", "")).lstrip("/")


def _running(item: dict[str, Any]) -> bool:
    return str((item.get("State") or {}).get("Status", "")) in ("running", "restarting")


def _replicas(model: ComposeModel, service: str) -> int:
    spec = model.services[service]
    replicas = (spec.get("deploy") or {}).get("replicas") or spec.get("scale") or 1
    return max(1, int(replicas))


def _roll_out_one(ctx: PhaseContext, model: ComposeModel, service: str, drain: float) -> bool:
    """Switch one service start-first; True when old containers were replaced."""
    desired = ctx.engine.config_hash(service)
    image = model.image_name(service)
    image_id = ctx.engine.image_ids([image]).get(image)

    def current(item: dict[str, Any]) -> bool:
        labels = (item.get("Config") or {}).get("Labels") or {}
        if labels.get(HASH_LABEL) != desired:
            return False
        return image_id is None or labels.get(IMAGE_LABEL) in (None, image_id)

    found = ctx.engine.containers([service])
    new = [item for item in found if current(item)]
    old = [item for item in found if not current(item)]
    if not old:
        ctx.out(f"{service}: up to date" if new else f"{service}: no container yet (compose up creates it)")
        return False
    if not any(_running(item) for item in old):
        if new:  # a switch cut short after the old ones stopped: they serve nothing
            ctx.out(f"{service}: removing {', '.join(map(_name, old))}, stopped by an interrupted switch")
            ctx.engine.remove_containers([str(item["Id"]) for item in old])
        else:
            ctx.out(f"{service}: no old container running: compose up replaces it in place")
        return bool(new)

    existing = {str(item.get("Id")) for item in new}
    total = len(old) + max(_replicas(model, service), len(new))
    ctx.out(f"{service}: starting the new version beside {', '.join(map(_name, old))}"
            + (f" (found {', '.join(map(_name, new))} from an interrupted switch)" if new else ""))
    code = ctx.engine.start_beside(service, total, ctx.out)
    created = [item for item in ctx.engine.containers([service]) if current(item)]
    if code != 0 or not created:
        ctx.engine.remove_containers([str(item["Id"]) for item in created
                                       if str(item.get("Id")) not in existing])
        raise StackUntouched(f"{service}: the new container could not be started beside the old one "
                          f"(docker compose up exit {code}); the old one keeps serving", exit_code=code)
    ids = [str(item["Id"]) for item in created]
    try:
        _gate(ctx, service, ids)
    except PhaseFailed as exc:
        ctx.out(f"{service}: removing the new container(s) {', '.join(map(_name, created))}; "
                f"{', '.join(map(_name, old))} keep(s) serving")
        ctx.engine.remove_containers(ids)
        raise StackUntouched(f"{service}: the new version failed its gate, the old one keeps serving: "
                          f"{exc.summary}") from None
    names = ", ".join(map(_name, old))
    ctx.out(f"{service}: new version healthy; stopping {names} (drain: up to {format_duration(drain)})")
    ctx.engine.stop_containers([str(item["Id"]) for item in old], drain)
    ctx.engine.remove_containers([str(item["Id"]) for item in old])
    ctx.out(f"{service}: switched to {', '.join(map(_name, created))}")
    return True


def _gate(ctx: PhaseContext, service: str, ids: list[str]) -> None:
    """The new containers alone: running, healthy when they have a healthcheck, not restarting;
    and each of the service's command probes passes inside each of them."""
    health = ctx.settings.phases.health_wait
    with DockerEvents(ctx.engine).following() as events:
        watch = ContainerWatch(ctx.engine, [service], events=events, containers=ids)
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
