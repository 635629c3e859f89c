"""``surefoot init``: a commented ``surefoot.toml`` inferred from a project's compose files.

Pure functions over file names, the compose model (``compose config --no-interpolate``
as a dict) and the env file's text, so that they are unit-tested without Docker; the
CLI reads the files, asks the operator, and writes the result. Import-light (no
pydantic, no rich).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from surefoot.project import COMPOSE_CANDIDATES, OVERRIDE_CANDIDATES

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
DEFAULT_HEALTH_PATH = "/health"

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

    def with_path(self, path: str) -> HealthProposal:
        if self.url is None:
            return self
        base = re.match(r"https?://[^/]+", self.url)
        assert base is not None
        path = path.strip() or "/"
        return HealthProposal(self.service, self.why, base.group(0) + ("" if path.startswith("/") else "/") + path,
                              self.insecure)

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
                if checked and path == checked[1]:
                    why += f"; its healthcheck asks {path}"
                return HealthProposal(name, why, f"{scheme}://{_host(published.host_ip)}:{published.port}{path}",
                                      insecure=secure)
    for name, service in apps:
        if _healthcheck_text(service):
            return HealthProposal(name, f"{name} has a healthcheck (no published HTTP port found)")
    return None


# Markers of a framework's migration command in a build context: the file, the command
# (run from the image's WORKDIR), and the framework.
MIGRATION_MARKERS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("manage.py", ("python", "manage.py", "migrate", "--noinput"), "Django"),
    ("alembic.ini", ("alembic", "upgrade", "head"), "Alembic"),
    ("bin/rails", ("bin/rails", "db:migrate"), "Rails"),
    ("artisan", ("php", "artisan", "migrate", "--force"), "Laravel"),
    ("prisma/schema.prisma", ("npx", "prisma", "migrate", "deploy"), "Prisma"),
)
MIGRATION_SCRIPTS = ("migrate.py", "migrate.sh", "migrate.js")
_INSTRUCTION = re.compile(r"^\s*(COPY|ADD|WORKDIR|ENTRYPOINT|CMD)\s+(.*)$", re.IGNORECASE)


def _dockerfile_lines(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the lines this module reads, continuations joined."""
    joined = re.sub(r"\\\s*\n", " ", text)
    found = []
    for line in joined.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            found.append((match.group(1).upper(), match.group(2).strip()))
    return found


def _words(arguments: str) -> list[str]:
    if arguments.startswith("["):
        try:
            value = json.loads(arguments)
        except ValueError:
            return []
        return [str(word) for word in value] if isinstance(value, list) else []
    return [word for word in arguments.split() if not word.startswith("--")]


def image_path(dockerfile: str, relative: str) -> str | None:
    """Where a file of the build context lands in the image (simple COPY/ADD forms), or None."""
    workdir = "/"
    found = None
    for instruction, arguments in _dockerfile_lines(dockerfile):
        if instruction == "WORKDIR":
            target = arguments.strip("\"'")
            workdir = target if target.startswith("/") else workdir.rstrip("/") + "/" + target
            continue
        if instruction not in ("COPY", "ADD") or "--from" in arguments:
            continue
        words = _words(arguments)
        if len(words) < 2:
            continue
        *sources, dest = words
        if not dest.startswith("/"):
            dest = workdir.rstrip("/") + "/" + ("" if dest in (".", "./") else dest.removeprefix("./"))
        for source in sources:
            source = source.removeprefix("./").rstrip("/")
            if source in ("", "."):
                found = dest.rstrip("/") + "/" + relative
            elif relative == source:
                found = dest + relative.rsplit("/", 1)[-1] if dest.endswith("/") or len(sources) > 1 else dest
            elif relative.startswith(source + "/"):
                found = dest.rstrip("/") + "/" + relative[len(source) + 1:]
    return found


@dataclass(frozen=True)
class MigrationProposal:
    service: str
    command: tuple[str, ...]
    why: str


def propose_migration(service: str, context_files: Iterable[str], dockerfile: str) -> MigrationProposal | None:
    """A migration command for an application service, from what its build context holds:
    a framework's marker (manage.py, alembic.ini, ...) or a migrate script the Dockerfile
    copies into the image. None when unsure, or when the image has an ENTRYPOINT (the
    command would become its arguments)."""
    lines = _dockerfile_lines(dockerfile)
    if any(instruction == "ENTRYPOINT" for instruction, _ in lines):
        return None
    files = set(context_files)
    for marker, command, framework in MIGRATION_MARKERS:
        if marker in files:
            return MigrationProposal(service, command, f"{framework}: {marker} in {service}'s build context")
    cmd = next((_words(arguments) for instruction, arguments in reversed(lines) if instruction == "CMD"), [])
    python = next((word for word in cmd if re.fullmatch(r"(/\S*/)?python[0-9.]*", word)), "python3")
    for relative in sorted(files, key=lambda f: (f.count("/"), f)):
        name = relative.rsplit("/", 1)[-1]
        if name not in MIGRATION_SCRIPTS:
            continue
        inside = image_path(dockerfile, relative)
        if inside is None:
            continue
        runner = {"migrate.py": python, "migrate.sh": "sh", "migrate.js": "node"}[name]
        return MigrationProposal(service, (runner, inside), f"{relative} in {service}'s build context, "
                                                            f"copied to {inside}")
    return None


@dataclass(frozen=True)
class Inference:
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
    from surefoot.secrets import parse_env_text

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


__all__ = ["Inference", "infer", "render", "replace"]


def context_files(folder: Path, depth: int = 3, limit: int = 5000) -> list[str]:
    """The files of a build context (relative, '/'-separated), a few levels deep, skipping
    hidden folders and dependency folders."""
    found: list[str] = []
    skip = {"node_modules", "vendor", "__pycache__", "venv"}

    def walk(path: Path, prefix: str, level: int) -> None:
        try:
            entries = sorted(path.iterdir())
        except OSError:
            return
        for entry in entries:
            if len(found) >= limit:
                return
            name = prefix + entry.name
            if entry.is_dir() and not entry.is_symlink():
                if level < depth and not entry.name.startswith(".") and entry.name not in skip:
                    walk(entry, name + "/", level + 1)
            elif entry.is_file():
                found.append(name)

    walk(folder, "", 1)
    return found


def build_contexts(services: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[list[str], str]]:
    """For each service built from a local folder: its files and its Dockerfile's text."""
    result = {}
    for name, service in services.items():
        build = service.get("build")
        if not isinstance(build, Mapping) or not build.get("context"):
            continue
        folder = Path(str(build["context"]))
        dockerfile = folder / str(build.get("dockerfile") or "Dockerfile")
        if not folder.is_dir():
            continue
        try:
            text = dockerfile.read_text() if not build.get("dockerfile_inline") else str(build["dockerfile_inline"])
        except (OSError, UnicodeDecodeError):
            continue
        result[name] = (context_files(folder), text)
    return result


def _toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a TOML basic string


def render(inference: Inference) -> str:
    """The commented surefoot.toml."""
    lines = [
        "# surefoot.toml, written by `surefoot init` from the compose files: review it, then",
        "# `surefoot deploy`. Every key is optional; the README lists them all.",
        "",
        "[project]",
        f"name = {_toml(inference.project_name)}                 # the compose project name",
        "compose_files = [" + ", ".join(_toml(f) for f in inference.compose_files) + "]",
    ]
    if inference.env_file:
        lines.append(f"env_file = {_toml(inference.env_file)}        # given to compose as --env-file")
    else:
        lines.append('# env_file = ".env.production"   # given to compose as --env-file (none found)')
    lines += ["", "[phases.database-start]"]
    if inference.databases:
        found = ", ".join(f"{name} ({kind})" for name, kind in inference.databases.items())
        lines += [
            f"# recognised by image or healthcheck: {found}",
            "services = [" + ", ".join(_toml(name) for name in inference.databases) + "]",
            'timeout = "120s"                # until each is healthy (or running, without a healthcheck)',
        ]
    else:
        lines += ["# no database service recognised: list them to start them first and wait for them",
                  '# services = ["db"]']
    service = inference.migrate_service or "app"
    lines += [
        "",
        "# The migration runs in a one-off container of the service, after the databases",
        "# and before the new release starts (its command follows the image's ENTRYPOINT).",
    ]
    if inference.migration is not None:
        migration = inference.migration
        lines += [
            f"# found: {migration.why}",
            "[phases.database-migrate]",
            f"service = {_toml(migration.service)}",
            "command = [" + ", ".join(_toml(word) for word in migration.command) + "]",
            'timeout = "10m"',
            "# other frameworks:",
        ]
    else:
        lines += ["# Uncomment and pick the command:", "# [phases.database-migrate]", f"# service = {_toml(service)}"]
    lines += [
        '# command = ["python3", "manage.py", "migrate"]         # Django',
        '# command = ["alembic", "upgrade", "head"]              # SQLAlchemy / Alembic',
        '# command = ["bundle", "exec", "rails", "db:migrate"]   # Rails',
        '# command = ["npx", "prisma", "migrate", "deploy"]      # Prisma',
        '# command = ["php", "artisan", "migrate", "--force"]    # Laravel',
    ]
    if inference.migration is None:
        lines.append('# timeout = "10m"')
    lines += [
        "",
        "[phases.health-wait]",
    ]
    health = inference.health
    if health is None:
        lines += [
            "# nothing found to probe: without a probe nothing checks that the application answers",
            '# url = "http://127.0.0.1:8080/health"',
        ]
    elif health.url is not None:
        lines.append(f"# proposed: {health.why}")
        if inference.resolved_from:
            lines.append(f"# (the port read from {inference.env_file}: {', '.join(inference.resolved_from)})")
        lines += [
            f"url = {_toml(health.url)}",
            "expect_status = 200",
            "# expect_body = '\"status\":\"ok\"'      # a substring the body must contain",
        ]
        if health.insecure:
            lines.append("insecure = true                 # accept a self-signed certificate on this port")
        lines += [
            "consecutive = 3                 # passes in a row",
            'interval = "1s"',
            'timeout = "2m"',
        ]
    else:
        lines += [
            f"# proposed: {health.why}; its compose healthcheck must say healthy",
            '# url = "http://127.0.0.1:8080/health"   # better: an HTTP probe on a published port',
            "[[phases.health-wait.probes]]",
            f"service = {_toml(health.service)}",
            'timeout = "2m"',
        ]
    lines += [
        "",
        "# [rollback]",
        "# automatic = true               # restore the previous release when the rollout fails",
        "",
    ]
    return "\n".join(lines)


def dockerignores_with_state(services: Mapping[str, Mapping[str, Any]], state_dir: Path) -> dict[Path, str]:
    """The ignore files to write (path -> new text) so that no build context sends ``state_dir``
    to the builder (``build`` refuses to run while one would): ``/<its path in the context>``
    added to the ignore file the builder reads for each context that holds it."""
    from surefoot import dockerignore

    updates: dict[Path, str] = {}
    for service in services.values():
        build = service.get("build")
        if not isinstance(build, Mapping) or not build.get("context") or build.get("dockerfile_inline"):
            continue
        context = Path(str(build["context"]))
        dockerfile = context / str(build.get("dockerfile") or "Dockerfile")
        matcher, ignore = dockerignore.load(context, dockerfile)
        if not context.is_dir() or not dockerignore.state_exposed(context, matcher, state_dir):
            continue
        path = ignore or context / dockerignore.IGNORE_FILE
        entry = "/" + Path(os.path.realpath(state_dir)).relative_to(os.path.realpath(context)).as_posix()
        text = updates.get(path) or (path.read_text() if path.is_file() else "")
        if text and not text.endswith("\n"):
            text += "\n"
        updates[path] = text + "# surefoot's state: the env file's copies and backups never go into an image\n" \
            + entry + "\n"
    return updates


def gitignore_with_state(text: str | None, entry: str = ".surefoot/") -> str | None:
    """The .gitignore with ``entry`` added, or None when it already ignores the folder."""
    bare = entry.strip("/")
    for line in (text or "").splitlines():
        if line.strip() in (bare, f"{bare}/", f"/{bare}", f"/{bare}/", f"{bare}/*", f"/{bare}/*"):
            return None
    prefix = text or ""
    if prefix and not prefix.endswith("\n"):
        prefix += "\n"
    return prefix + "# surefoot's state: it holds copies of the env file\n" + entry + "\n"
