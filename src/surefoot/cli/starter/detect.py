"""What ``surefoot init`` infers from a project's compose model: the compose files and env
file to deploy with, the database services, a health probe; and :func:`infer`, which
gathers these and the migration command (``migration.py``) into an :class:`Inference`.

Pure functions over file names, the compose model (``compose config --no-interpolate``
as a dict) and the env file's text, so that they are unit-tested without Docker.
``write.py`` turns the :class:`Inference` into files. Import-light (no pydantic, no rich).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from surefoot.cli.starter.migration import MigrationProposal, propose_migration
from surefoot.config.project import COMPOSE_CANDIDATES, OVERRIDE_CANDIDATES

# An override a user deploying to a server means to use, in order of preference.
PRODUCTION_OVERRIDES = tuple(
    f"{base}.{env}.{ext}"
    for env in ("production", "prod")
    for base in ("compose", "docker-compose")
    for ext in ("yaml", "yml")
)
ENV_FILES = (".env.production", ".env.prod", ".env")

# Database (and other stateful backing) services, recognised by a word in their image
# or healthcheck: the word, and what it is.
DATABASE_WORDS: tuple[tuple[str, str], ...] = (
    ("postgres", "PostgreSQL"), ("postgis", "PostgreSQL"), ("timescale", "PostgreSQL"),
    ("pg_isready", "PostgreSQL"), ("mysqladmin", "MySQL"), ("mysql", "MySQL"), ("mariadb", "MariaDB"),
    ("redis", "Redis"), ("valkey", "Valkey"), ("keydb", "KeyDB"), ("mongo", "MongoDB"),
    ("memcached", "Memcached"), ("rabbitmq", "RabbitMQ"), ("elasticsearch", "Elasticsearch"),
    ("opensearch", "OpenSearch"), ("clickhouse", "ClickHouse"), ("cassandra", "Cassandra"),
    ("cockroach", "CockroachDB"), ("couchdb", "CouchDB"), ("influxdb", "InfluxDB"), ("neo4j", "Neo4j"),
)
# Container ports that usually speak HTTP (443 and 8443: HTTPS).
HTTP_PORTS = (80, 8080, 8000, 3000, 5000, 8081, 8888, 4000, 9000, 1337, 5173, 4200, 8001, 8082)
HTTPS_PORTS = (443, 8443)
DEFAULT_HEALTH_PATH = "/"  # a guess, without a healthcheck to tell: any answer below 400 passes

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})"
)
_HEALTH_URL = re.compile(
    r"https?://(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\]|[A-Za-z0-9_.-]+)(?::(?P<port>\d+))?(?P<path>/[^\s'\"|;&)]*)?"
)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:+alt}``, ``$VAR`` and
    ``$$`` as compose resolves them (a missing required ``${VAR:?}`` becomes empty)."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("plain") or match.group("braced")
        value = env.get(name)
        op, arg = match.group("op"), match.group("arg") or ""
        if op in (":-", "-"):
            unset = value is None or (op == ":-" and value == "")
            return interpolate(arg, env) if unset else str(value)
        if op in (":+", "+"):
            present = value is not None and (op == "+" or value != "")
            return interpolate(arg, env) if present else ""
        return value or ""

    return _VARIABLE.sub(replace, text)


def choose_compose_files(names: Iterable[str]) -> list[str]:
    """The base compose file and the override to deploy with: one named for production
    (``compose.production.yaml``, ``docker-compose.prod.yml``, ...), else compose's own
    override file. Empty when there is no base file."""
    present = set(names)
    base = next((name for name in COMPOSE_CANDIDATES if name in present), None)
    if base is None:
        return []
    override = next((name for name in PRODUCTION_OVERRIDES + OVERRIDE_CANDIDATES if name in present), None)
    return [base, override] if override else [base]


def choose_env_file(names: Iterable[str]) -> str | None:
    present = set(names)
    return next((name for name in ENV_FILES if name in present), None)


def _healthcheck_text(service: Mapping[str, Any]) -> str:
    check = service.get("healthcheck") or {}
    if not isinstance(check, Mapping) or check.get("disable"):
        return ""
    test = check.get("test") or []
    if isinstance(test, str):
        return test
    return " ".join(str(part) for part in test if part not in ("CMD", "CMD-SHELL", "NONE"))


def database_kind(service: Mapping[str, Any]) -> str | None:
    """What database a service is, from its image's name or its healthcheck command."""
    image = str(service.get("image") or "").lower().rsplit("/", 1)[-1].split(":")[0].split("@")[0]
    check = _healthcheck_text(service).lower()
    for word, kind in DATABASE_WORDS:
        if word in image or word in check:
            return kind
    return None


@dataclass(frozen=True)
class Published:
    host_ip: str
    port: int  # on the host
    target: int  # in the container


def published_ports(service: Mapping[str, Any], env: Mapping[str, str]) -> list[Published]:
    """The host ports a service publishes (short or long syntax), variables resolved."""
    result = []
    for item in service.get("ports") or []:
        if isinstance(item, Mapping):
            host_ip = interpolate(str(item.get("host_ip") or ""), env)
            published = interpolate(str(item.get("published") or ""), env)
            target = interpolate(str(item.get("target") or ""), env)
        else:
            text = interpolate(str(item), env).split("/")[0].strip()
            host_ip = ""
            if text.startswith("["):
                host_ip, _, text = text[1:].partition("]")
                text = text.lstrip(":")
            parts = text.split(":")
            if len(parts) == 3:
                host_ip, published, target = parts
            elif len(parts) == 2:
                published, target = parts
            else:
                continue  # only a container port: the host port is chosen at random
        published, target = published.split("-")[0], target.split("-")[0]
        if published.isdigit() and target.isdigit() and int(published) > 0:
            result.append(Published(host_ip, int(published), int(target)))
    return result


def healthcheck_url(service: Mapping[str, Any]) -> tuple[int | None, str] | None:
    """The container port and path an HTTP healthcheck (curl, wget, ...) asks, if any."""
    match = _HEALTH_URL.search(_healthcheck_text(service))
    if match is None:
        return None
    port = match.group("port")
    return (int(port) if port else None), (match.group("path") or "/")


@dataclass(frozen=True)
class HealthProposal:
    service: str
    why: str
    url: str | None = None  # an HTTP probe; None: the service's container state
    insecure: bool = False
    guessed: bool = False  # no healthcheck named the path: / is probed, any answer below 400 passes

    def with_path(self, path: str) -> HealthProposal:
        if self.url is None:
            return self
        base = re.match(r"https?://[^/]+", self.url)
        assert base is not None
        path = path.strip() or "/"
        return HealthProposal(self.service, self.why, base.group(0) + ("" if path.startswith("/") else "/") + path,
                              self.insecure, guessed=False)  # the operator said so

    @property
    def path(self) -> str | None:
        if self.url is None:
            return None
        match = re.match(r"https?://[^/]+(/.*)?$", self.url)
        return (match.group(1) if match else None) or "/"


def _host(ip: str) -> str:
    if ip in ("", "0.0.0.0", "::", "*"):
        return "127.0.0.1"
    return f"[{ip}]" if ":" in ip else ip


def propose_health(services: Mapping[str, Mapping[str, Any]], env: Mapping[str, str],
                   databases: Iterable[str] = ()) -> HealthProposal | None:
    """An HTTP probe on a published HTTP port (the path from the service's HTTP
    healthcheck, else /health), else the state of a service with a healthcheck."""
    skip = set(databases)
    apps = [(name, service) for name, service in services.items() if name not in skip]
    for secure in (False, True):
        for name, service in apps:
            ports = published_ports(service, env)
            checked = healthcheck_url(service)
            for published in ports:
                http = published.target in (HTTPS_PORTS if secure else HTTP_PORTS)
                if not http and not (checked and checked[0] == published.target):
                    continue
                path = checked[1] if checked and checked[0] in (None, published.target) else DEFAULT_HEALTH_PATH
                scheme = "https" if secure else "http"
                why = (f"{name} publishes its port {published.target} on {_host(published.host_ip)}:"
                       f"{published.port}")
                guessed = not (checked and path == checked[1])
                why += "; no healthcheck names a path: / is a guess" if guessed else f"; its healthcheck asks {path}"
                return HealthProposal(name, why, f"{scheme}://{_host(published.host_ip)}:{published.port}{path}",
                                      insecure=secure, guessed=guessed)
    for name, service in apps:
        if _healthcheck_text(service):
            return HealthProposal(name, f"{name} has a healthcheck (no published HTTP port found)")
    return None


@dataclass(frozen=True)
class Inference:
    """What surefoot.toml should say (``write.render`` writes it)."""

    project_name: str
    compose_files: list[str]
    env_file: str | None
    databases: dict[str, str] = field(default_factory=dict)  # service: what it is
    health: HealthProposal | None = None
    migrate_service: str | None = None
    resolved_from: list[str] = field(default_factory=list)  # env file keys used for the ports
    migration: MigrationProposal | None = None


def infer(project_name: str, file_names: Iterable[str], model: Mapping[str, Any],
          env_text: str = "", contexts: Mapping[str, tuple[list[str], str]] | None = None) -> Inference:
    """What surefoot.toml should say, from the folder's file names, the compose model
    (uninterpolated), the env file's text and, for the services built here, the files of
    their build context and their Dockerfile's text (``contexts``)."""
    from surefoot.base.secrets import parse_env_text

    names = list(file_names)
    env = parse_env_text(env_text)
    services: Mapping[str, Mapping[str, Any]] = model.get("services") or {}
    databases = {name: kind for name, service in services.items() if (kind := database_kind(service))}
    health = propose_health(services, env, databases)
    apps = [name for name in services if name not in databases]
    migrate = next((name for name in apps if services[name].get("build")), apps[0] if apps else None)
    used = sorted({var for name, service in services.items() for item in service.get("ports") or []
                   for var in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", json.dumps(item)) if var in env})
    migration = None
    if migrate is not None and contexts and migrate in contexts:
        migration = propose_migration(migrate, *contexts[migrate])
    return Inference(project_name, choose_compose_files(names), choose_env_file(names), databases, health,
                     migrate, used, migration)
