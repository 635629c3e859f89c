"""The stack file a swarm deploys, made from the compose model compose itself resolved.

``docker stack deploy`` reads neither ``--env-file`` nor most of what compose v2 prints: it
takes the version 3 file format. So the file is made from ``docker compose config``'s output
(the project's files merged, every ``${VAR}`` interpolated with the env file's values): what
is deployed is exactly what ``compose config`` shows, less what a swarm has no use for, with
each service's image pinned by surefoot (never a tag a rebuild could move). The file is kept
in the release (``stack.json``) and is what a rollback deploys again.

Pure functions, no I/O: :func:`render` and :func:`problems` are unit-tested on their own.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STACK_VERSION = "3.9"
MIGRATE_SERVICE = "surefoot-migrate"  # the one-off task of database-migrate, in the stack
# A service label holding a digest of the service's spec as surefoot deployed it: the gate knows
# a service the swarm rolled back by it (even when only the environment changed), and an
# unchanged service keeps it (a service label is not part of the tasks: nothing restarts).
SPEC_LABEL = "io.surefoot.spec"
# Keys of a compose service that a swarm ignores or refuses, and what surefoot does instead.
_DROPPED = {
    "depends_on": "a swarm starts services in any order (database-start deploys the databases first)",
    "build": None,  # built by the build phase: the stack runs the image it made
    "pull_policy": "the image is pinned by surefoot",
    "container_name": "a swarm names its tasks itself",
    "profiles": "a stack deploys every service",
    "links": "services find each other by name on the stack's networks",
    "external_links": "services find each other by name on the stack's networks",
    "platform": "a swarm places tasks by the nodes' platforms (deploy.placement)",
    "env_file": None,  # compose config has read it into environment already
}
_RESTART = {"no": "none", "always": "any", "unless-stopped": "any", "on-failure": "on-failure"}


@dataclass
class StackFile:
    """The stack file's content and what the conversion said (one line each)."""

    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def services(self) -> list[str]:
        return sorted(self.data.get("services") or {})


def image_ref(project: str, service: str, image_id: str) -> str:
    """The reference a service runs under: named after its image id, so an unchanged image keeps
    its reference from one release to the next (the swarm leaves the service be) and a rebuilt
    tag cannot change what a release runs."""
    safe = "".join(c if c.isalnum() or c in "_.-" else "-" for c in service.lower()).strip("-.") or "service"
    return f"surefoot.local/{project}/{safe}:id-{image_id.removeprefix('sha256:')[:12]}"


def render(model: Mapping[str, Any], images: Mapping[str, str], *, only: Sequence[str] | None = None,
           failure_action_default: str = "rollback", stack: str = "",
           file_digests: Mapping[str, str] | None = None) -> StackFile:
    """The stack file of ``model`` (``compose config --format json``), each service running
    ``images[service]``; ``only``: just these services (database-start deploys the databases
    alone, the rest of the stack untouched). A swarm's secrets and configs cannot change in
    place: one made from a file is named ``STACK_NAME_<digest>`` after its content
    (``file_digests``: a digest of each such file), so a changed file is a new one."""
    notes: list[str] = []
    services: dict[str, Any] = {}
    for name, spec in sorted((model.get("services") or {}).items()):
        if only is not None and name not in only:
            continue
        services[name] = _service(name, dict(copy.deepcopy(spec)), images.get(name), notes, failure_action_default)
    used_networks = {n for s in services.values() for n in (s.get("networks") or {})}
    used_volumes = {str(v.get("source")) for s in services.values() for v in s.get("volumes") or []
                    if isinstance(v, dict) and v.get("type") == "volume" and v.get("source")}
    data: dict[str, Any] = {"version": STACK_VERSION, "services": services}
    networks = {name: _top(spec) for name, spec in (model.get("networks") or {}).items() if name in used_networks}
    if networks:
        data["networks"] = networks
    volumes = {name: _top(spec) for name, spec in (model.get("volumes") or {}).items() if name in used_volumes}
    if volumes:
        data["volumes"] = volumes
    for kind in ("secrets", "configs"):
        used = {(ref.get("source") if isinstance(ref, dict) else ref) for s in services.values()
                for ref in s.get(kind) or []}
        kept = {name: _top(spec) for name, spec in (model.get(kind) or {}).items() if name in used}
        for name, spec in kept.items():
            digest = (file_digests or {}).get(str(spec.get("file") or ""))
            if digest and stack and not spec.get("external"):
                spec["name"] = f"{stack}_{name}_{digest[:12]}"
        if kept:
            data[kind] = kept
    return StackFile(data, notes)


def _top(raw: Any) -> dict[str, Any]:
    """A top-level network, volume, secret or config: the stack names its own (``STACK_NAME``);
    an external one keeps its name."""
    spec: dict[str, Any] = dict(raw or {})
    if not spec.get("external"):
        spec.pop("name", None)
    if spec.get("ipam") == {}:
        spec.pop("ipam")
    return spec


def _service(name: str, spec: dict[str, Any], image: str | None, notes: list[str],
             failure_action_default: str) -> dict[str, Any]:
    for key, why in _DROPPED.items():
        if key in spec:
            value = spec.pop(key)
            if why and value:
                notes.append(f"{name}: {key} left out ({why})")
    for key in ("entrypoint", "command"):
        if key in spec and spec[key] is None:
            del spec[key]
    if spec.get("entrypoint") == [] and spec.get("command"):
        # An empty entrypoint is "the image's" on a swarm, not "none": the command takes its place.
        spec["entrypoint"] = spec.pop("command")
    scale = spec.pop("scale", None)
    if scale is not None and "replicas" not in (spec.get("deploy") or {}):
        spec.setdefault("deploy", {})["replicas"] = int(scale)
    hosts = spec.get("extra_hosts")
    if isinstance(hosts, dict):
        hosts = [f"{host}={address}" for host, address in hosts.items()]
    if isinstance(hosts, list):  # compose prints HOST=IP; the stack file takes HOST:IP
        spec["extra_hosts"] = [str(entry).replace("=", ":", 1) for entry in hosts]
    if image is not None:
        spec["image"] = image
    deploy = spec.setdefault("deploy", {})
    for key in ("resources", "placement"):
        if deploy.get(key) == {}:
            del deploy[key]
    restart = spec.pop("restart", None)
    if restart and "restart_policy" not in deploy:
        condition = _RESTART.get(str(restart).split(":")[0])
        if condition:
            deploy["restart_policy"] = {"condition": condition}
    for kind in ("limits", "reservations"):  # compose prints a number; the stack file takes a string
        held = (deploy.get("resources") or {}).get(kind) or {}
        if "cpus" in held:
            held["cpus"] = str(held["cpus"])
    limits: dict[str, Any] = {}
    for key, limit in (("mem_limit", "memory"), ("cpus", "cpus")):
        if key in spec:
            limits[limit] = str(spec.pop(key))
    if limits:
        resources = deploy.setdefault("resources", {})
        resources["limits"] = {**limits, **(resources.get("limits") or {})}
        notes.append(f"{name}: {', '.join(sorted(limits))} set as deploy.resources.limits")
    if deploy.get("mode", "replicated") in ("replicated", "global"):
        update = deploy.setdefault("update_config", {})
        update.setdefault("failure_action", failure_action_default)
    networks = spec.get("networks")
    if isinstance(networks, dict):
        spec["networks"] = {key: value or {} for key, value in networks.items()}
    ports = []
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port = dict(port)
            if port.pop("host_ip", None):
                notes.append(f"{name}: port {port.get('published')} is published on every address of a node "
                             "(a swarm cannot bind one address)")
            if port.get("published") not in (None, ""):
                port["published"] = int(str(port["published"]).split("-")[0])
            else:
                port.pop("published", None)
        ports.append(port)
    if ports:
        spec["ports"] = ports
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    labels = deploy.get("labels")
    if isinstance(labels, list):
        labels = dict(item.split("=", 1) if "=" in item else (item, "") for item in labels)
    deploy["labels"] = {**(labels or {}), SPEC_LABEL: digest}
    return spec


def spec_digest(service: Mapping[str, Any]) -> str:
    """The digest :func:`render` labelled a service of a stack file with."""
    return str(((service.get("deploy") or {}).get("labels") or {}).get(SPEC_LABEL, ""))


def escape(text: str) -> str:
    """A word of ours as the stack file must hold it: ``docker stack deploy`` interpolates
    ``$VAR`` again, so a ``$`` is written ``$$`` (what compose config prints is escaped already)."""
    return text.replace("$", "$$")


def migration_service(stack: StackFile, service: str, command: Sequence[str],
                      entrypoint: Sequence[str] | None) -> dict[str, Any]:
    """The stack file of the migration: one task of ``service``'s spec running ``command`` once
    (restart condition none), with the service's networks, environment and placement."""
    spec = copy.deepcopy(stack.data["services"][service])
    for key in ("ports", "healthcheck"):
        spec.pop(key, None)
    spec["command"] = [escape(word) for word in command]
    if entrypoint is not None:
        spec["entrypoint"] = [escape(word) for word in entrypoint]
    if spec.get("entrypoint") == []:  # none: the command alone (an empty one is the image's on a swarm)
        spec["entrypoint"] = spec.pop("command")
    deploy = spec.get("deploy") or {}
    spec["deploy"] = {"mode": "replicated", "replicas": 1, "restart_policy": {"condition": "none"},
                      **({"placement": deploy["placement"]} if deploy.get("placement") else {})}
    data = {key: value for key, value in stack.data.items() if key != "services"}
    data["services"] = {MIGRATE_SERVICE: spec}
    return data


def problems(stack: StackFile) -> list[str]:
    """What a swarm can never run as written (preflight refuses it): each names the service."""
    found = []
    for name, spec in sorted((stack.data.get("services") or {}).items()):
        if spec.get("network_mode"):
            found.append(f"{name}: network_mode {spec['network_mode']} has no equivalent in a stack (use its "
                         "networks; for the host's network: an external network named host)")
        deploy = spec.get("deploy") or {}
        order = (deploy.get("update_config") or {}).get("order")
        host_ports = [p.get("published") for p in spec.get("ports") or []
                      if isinstance(p, dict) and p.get("mode") == "host" and p.get("published")]
        if order == "start-first" and host_ports:
            found.append(f"{name}: update_config.order start-first with the host-mode port "
                         f"{host_ports[0]}: the new task can never bind the port the old one holds, so the "
                         "update never ends (use stop-first, or publish the port through the routing mesh)")
    return found
