"""The compose engine's models and parsers: what ``compose ps``, ``docker inspect`` and
``compose config`` answer, read into plain values. Pure; no process runs here."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from surefoot.engines.compose.argv import ONEOFF


@dataclass(frozen=True)
class ContainerState:
    name: str
    service: str
    state: str  # running, exited, restarting, created, ...
    health: str  # healthy, unhealthy, starting, or "" without a healthcheck
    exit_code: int
    id: str = ""
    published: tuple[int, ...] = ()  # host ports this container publishes

    @property
    def ready(self) -> bool:
        return self.state == "running" and self.health in ("", "healthy")

    @property
    def broken(self) -> bool:
        return self.state in ("exited", "dead", "restarting") or self.health == "unhealthy"

    def describe(self) -> str:
        if self.state == "exited":
            return f"exited with code {self.exit_code}"
        if self.health:
            return f"{self.state}, {self.health}"
        return self.state


def parse_ps(text: str) -> list[ContainerState]:
    """Parse ``compose ps --format json``: one object per line (older releases: one array).
    One-off containers (``compose run``, which newer releases list too) are left out."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        items: list[Any] = json.loads(text)
    else:
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [
        ContainerState(
            name=item.get("Name", ""),
            service=item.get("Service", ""),
            state=item.get("State", "").lower(),
            health=item.get("Health", "").lower(),
            exit_code=int(item.get("ExitCode") or 0),
            id=item.get("ID", ""),
            published=tuple(
                sorted({int(p["PublishedPort"]) for p in item.get("Publishers") or [] if p.get("PublishedPort")})
            ),
        )
        for item in items
        if ONEOFF not in str(item.get("Labels") or "").split(",")
    ]


def states_from_inspect(items: Sequence[dict[str, Any]]) -> list[ContainerState]:
    """What ``compose ps`` says of containers, read from ``docker inspect`` output."""
    result = []
    for item in items:
        state = item.get("State") or {}
        ports = (item.get("NetworkSettings") or {}).get("Ports") or {}
        published = {int(binding["HostPort"]) for bindings in ports.values() for binding in bindings or []
                     if str(binding.get("HostPort") or "").isdigit()}
        result.append(ContainerState(
            name=str(item.get("Name", "")).lstrip("/"),
            service=((item.get("Config") or {}).get("Labels") or {}).get("com.docker.compose.service", ""),
            state=str(state.get("Status", "")).lower(),
            health=str((state.get("Health") or {}).get("Status", "")).lower(),
            exit_code=int(state.get("ExitCode") or 0),
            id=str(item.get("Id", "")),
            published=tuple(sorted(published)),
        ))
    return result


@dataclass(frozen=True)
class ComposeModel:
    """The project as ``compose config --format json`` resolves it."""

    project_name: str
    services: dict[str, dict[str, Any]]
    digest: str = field(compare=False)
    data: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # the whole model

    @classmethod
    def from_json(cls, project_name: str, text: str) -> ComposeModel:
        data = json.loads(text)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return cls(
            project_name=project_name,
            services=dict(data.get("services") or {}),
            digest=hashlib.sha256(canonical.encode()).hexdigest(),
            data=data,
        )

    @property
    def secrets(self) -> dict[str, dict[str, Any]]:
        """The top-level ``secrets:``."""
        return dict(self.data.get("secrets") or {})

    def env_files(self) -> list[Path]:
        """The services' ``env_file:`` files (values the containers get)."""
        found: list[Path] = []
        for spec in self.services.values():
            for item in spec.get("env_file") or []:
                path = item.get("path") if isinstance(item, dict) else item
                if path and Path(str(path)) not in found:
                    found.append(Path(str(path)))
        return found

    def secret_files(self) -> list[Path]:
        """The files the ``secrets:`` are made from."""
        return [Path(str(spec["file"])) for spec in self.secrets.values()
                if isinstance(spec, dict) and spec.get("file")]

    def build_services(self) -> list[str]:
        return [name for name, spec in self.services.items() if spec.get("build")]

    def image_name(self, service: str) -> str:
        """The image a service runs: its ``image:``, or compose's default for built services."""
        spec = self.services[service]
        image = spec.get("image") or f"{self.project_name}-{service}"
        return str(image)

    def published_ports(self) -> list[tuple[str, int]]:
        """(host address, port) of every port the project publishes on the host."""
        found = []
        for spec in self.services.values():
            for port in spec.get("ports") or []:
                if isinstance(port, dict) and port.get("published"):
                    published = str(port["published"]).split("-")[0]
                    if published.isdigit():
                        found.append((str(port.get("host_ip") or ""), int(published)))
        return sorted(set(found))

    def database_services(self) -> list[str]:
        """The services that run a well-known database image (postgres, mysql, redis, ...),
        with at least one container (not scaled to 0)."""
        found = []
        for name, spec in self.services.items():
            if not spec.get("image") or replicas(spec) == 0:
                continue
            repository = str(spec["image"]).split("@")[0].rsplit("/", 1)[-1].split(":")[0].lower()
            if repository in DATABASE_IMAGES:
                found.append(name)
        return found

    def service_publishing(self, port: int, host: str = "127.0.0.1") -> str | None:
        """The service that publishes ``port`` on the host address ``host`` (or on every address)."""
        host = "127.0.0.1" if host == "localhost" else host
        best: str | None = None
        for name, spec in self.services.items():
            for entry in spec.get("ports") or []:
                if not isinstance(entry, dict) or not entry.get("published"):
                    continue
                low, _, high = str(entry["published"]).partition("-")
                if not low.isdigit() or not int(low) <= port <= int(high if high.isdigit() else low):
                    continue
                bound = str(entry.get("host_ip") or "")
                if bound == host:
                    return name
                if bound in ("", "0.0.0.0", "::") and best is None:
                    best = name
        return best

    def pulled_images(self) -> list[str]:
        """Images of services that are not built here: they come from a registry."""
        return sorted({str(s["image"]) for s in self.services.values() if s.get("image") and not s.get("build")})

    def build_context(self, service: str) -> Path | None:
        build = self.services[service].get("build")
        if not build:
            return None
        context = build.get("context") if isinstance(build, dict) else build
        if not context or re.match(r"^[a-z]+://", str(context)):
            return None
        return Path(context)

    def dockerfile(self, service: str) -> Path | None:
        """The Dockerfile a built service uses (None: none on disk, e.g. ``dockerfile_inline``)."""
        build = self.services[service].get("build")
        context = self.build_context(service)
        if context is None or not isinstance(build, dict) or build.get("dockerfile_inline"):
            return None
        return context / str(build.get("dockerfile") or "Dockerfile")


# Images (the repository's last part) that database-start recognises when its services are not set.
DATABASE_IMAGES = frozenset({
    "postgres", "postgresql", "postgis", "timescaledb", "timescaledb-ha", "pgvector", "mysql", "mariadb",
    "percona", "percona-server", "redis", "redis-stack", "redis-stack-server", "valkey", "keydb",
    "dragonfly", "mongo", "mongodb", "mongodb-community-server", "memcached", "couchdb", "cassandra",
    "clickhouse-server", "influxdb", "neo4j",
})


def replicas(spec: dict[str, Any]) -> int:
    """How many containers the compose model asks of a service (``scale``, ``deploy.replicas``)."""
    for value in (spec.get("scale"), (spec.get("deploy") or {}).get("replicas")):
        if value is not None:
            return int(value)
    return 1


# The lines of compose's output that say why a command failed ("dependency failed to start: ...",
# "Error response from daemon: ...", " db Error ...").
_REASON = re.compile(r"dependency failed|\berror\b", re.IGNORECASE)


def compose_reason(lines: Sequence[str]) -> str | None:
    """Compose's own reason for a failed ``up``: the last line of its output that names one."""
    found = [line.strip() for line in lines if _REASON.search(line) and line.strip()]
    return found[-1] if found else None


def normalize_image(name: str) -> str:
    """``redis`` -> ``redis:latest``; a digest or explicit tag is kept."""
    last = name.rsplit("/", 1)[-1]
    if "@" in name or ":" in last:
        return name
    return name + ":latest"


# The temporary name compose gives a container while it recreates it: "<12 hex>_<name>".
_TEMPORARY_NAME = re.compile(r"^[0-9a-f]{12}_(.+)$")


def interrupted_recreates(items: Sequence[dict[str, Any]], project_name: str) -> list[tuple[str, str, str, str]]:
    """What a killed ``compose up`` left halfway through recreating a container, and what
    to do about it: ``(remove | rename, temporary name, container id, proper name)``.

    Compose recreates a container by creating the new one as ``<12 hex>_<name>``, then
    stopping and removing the old one, then renaming the new one to ``<name>`` (older
    releases renamed the old one to ``<12 hex>_<name>`` first). Killed in between, it
    leaves a container under that temporary name, which the next ``up`` keeps as it is
    (a proxy may still point at the old one). So: where the proper name is taken, the
    temporary container goes (the next ``up`` recreates the other if it is out of
    date); where it is free, the temporary container takes it back (keeping any
    volumes it inherited). ``items`` is ``docker inspect`` of the project's containers."""
    found = []
    for item in items:
        labels = (item.get("Config") or {}).get("Labels") or {}
        name, container = str(item.get("Name", "")).lstrip("/"), str(item.get("Id", ""))
        match = _TEMPORARY_NAME.match(name)
        # The rest must be compose's name for the replica ("PROJECT-SERVICE-N", or the
        # container_name that newer releases record in the "replace" label): a container
        # the operator named "<12 hex>_x" is left alone.
        replaced = labels.get("com.docker.compose.replace", "")
        proper_names = {"-".join((project_name, labels.get("com.docker.compose.service", ""),
                                  labels.get("com.docker.compose.container-number", "")))}
        if replaced:
            proper_names |= {replaced, f"{project_name}-{replaced}"}
        ours = match is not None and match.group(1) in proper_names
        found.append((name, container, match.group(1) if match and ours else None))
    taken = {name for name, _, _ in found}
    plan = []
    for name, container, proper in sorted(found):
        if proper is None or not container:
            continue
        if proper in taken:
            plan.append(("remove", name, container, proper))
        else:
            plan.append(("rename", name, container, proper))
            taken.add(proper)
        taken.discard(name)
    return plan


def parse_config_hash(text: str, service: str) -> str | None:
    """``service``'s hash in ``compose config --hash`` output (``name hash`` lines); None if absent."""
    for line in text.splitlines():
        name, _, digest = line.strip().partition(" ")
        if name == service and digest.strip():
            return digest.strip()
    return None


def parse_image_ls(text: str) -> dict[str, str]:
    """``repository:tag`` -> image id, from ``docker image ls --format '{{.Repository}}:{{.Tag}} {{.ID}}'``."""
    known: dict[str, str] = {}
    for line in text.splitlines():
        ref, _, image_id = line.rpartition(" ")
        known[ref] = image_id
    return known


def edge_processes(text: str) -> list[tuple[int, int]]:
    """``(pid, start)`` of each HAProxy process of the edge, as ``edge_workers_argv`` lists them."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            found.append((int(fields[0]), int(fields[1])))
    return found
