"""The Docker adapter: argument lists in, parsed JSON out.

Everything surefoot asks of Docker goes through :class:`Compose`, which is handed
a :class:`Target` (today the local engine; later a Docker context over SSH).
The argument builders are pure functions and unit-tested; :class:`Compose`
runs them through the :class:`~surefoot.proc.ProcessRunner`, and asks the quick
questions of the local engine over its socket (:mod:`surefoot.engine`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from surefoot.engine import Engine, EngineUnavailable
from surefoot.errors import PhaseFailed
from surefoot.proc import Captured, ProcessRunner

if TYPE_CHECKING:
    from surefoot.ahead import AskedAhead

T = TypeVar("T")
PROJECT_LABEL = "com.docker.compose.project"
ONEOFF = "com.docker.compose.oneoff=True"  # the label of `compose run` containers
# The temporary name compose gives a container while it recreates it: "<12 hex>_<name>".
_TEMPORARY_NAME = re.compile(r"^[0-9a-f]{12}_(.+)$")


@dataclass(frozen=True)
class Target:
    project_name: str
    project_dir: Path
    compose_files: tuple[Path, ...]
    env_file: Path | None = None
    docker: tuple[str, ...] = ("docker",)  # e.g. ("docker", "--context", "prod") one day
    earlier_env_files: tuple[Path, ...] = ()  # passed before env_file (which wins over them)

    @property
    def env_files(self) -> tuple[Path, ...]:
        return (*self.earlier_env_files, *((self.env_file,) if self.env_file is not None else ()))


def compose_args(target: Target, *args: str) -> list[str]:
    """``docker compose`` with the project name, every compose file and the env file."""
    argv = [*target.docker, "compose", "--ansi", "never", "--progress", "plain"]
    argv += ["--project-name", target.project_name, "--project-directory", str(target.project_dir)]
    for file in target.compose_files:
        argv += ["--file", str(file)]
    for env_file in target.env_files:
        argv += ["--env-file", str(env_file)]
    return [*argv, *args]


def env_values(paths: Path | Sequence[Path] | None) -> dict[str, str]:
    """The values env files define, as compose reads them in order (a later file wins); an
    absent or unreadable file defines none."""
    from surefoot.secrets import parse_env_text

    values: dict[str, str] = {}
    for path in [paths] if isinstance(paths, Path) else paths or []:
        try:
            values.update(parse_env_text(path.read_text(encoding="utf-8", errors="replace")))
        except OSError:
            continue
    return values


def env_file_keys(paths: Path | Sequence[Path] | None) -> frozenset[str]:
    """The keys env files define (none when absent or unreadable)."""
    return frozenset(env_values(paths))


def shadowing(paths: Path | Sequence[Path] | None, environ: Mapping[str, str]) -> list[str]:
    """Names of the variables ``environ`` sets to another value than the env files do: compose
    would let them win; surefoot leaves them out (see :meth:`Compose.environ_without`)."""
    values = env_values(paths)
    return sorted(key for key, value in values.items() if key in environ and environ[key] != value)


def config_argv(target: Target) -> list[str]:
    """``compose config`` as JSON: the command that reads the project's compose model."""
    return compose_args(target, "config", "--format", "json")


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


class Compose:
    """Docker compose and docker engine operations for one target.

    The engine's quick questions (containers, images, tags) go over its API socket when it
    is the local engine (:mod:`surefoot.engine`), else, or when the socket fails, through
    the ``docker`` CLI; ``engine=False`` always uses the CLI.
    """

    def __init__(self, target: Target, runner: ProcessRunner, *, engine: bool = True,
                 ahead: AskedAhead | None = None):
        self.target = target
        self.runner = runner
        self.engine = Engine.local(target.docker) if engine else None
        self.ahead = ahead  # answers to commands started before the settings were loaded

    def _ask(self, engine_way: Callable[[Engine], T], cli_way: Callable[[], T]) -> T:
        """The engine's answer over its socket; the CLI's when the socket cannot answer
        (the CLI then also reports the engine's error in its own words)."""
        if self.engine is not None:
            self.runner.cancel.check()
            try:
                return engine_way(self.engine)
            except EngineUnavailable:
                pass
        return cli_way()

    def _project_container_ids(self, engine: Engine, *labels: str, all: bool = True) -> list[str]:
        return engine.container_ids([f"{PROJECT_LABEL}={self.target.project_name}", *labels], all=all)

    # -- plumbing ---------------------------------------------------------------
    def argv(self, *args: str) -> list[str]:
        return compose_args(self.target, *args)

    def docker_argv(self, *args: str) -> list[str]:
        return [*self.target.docker, *args]

    def environ_without(self) -> frozenset[str]:
        """The variables left out of the environment of every compose and docker command: those
        the env file defines. Compose lets the shell's variables win over ``--env-file``; the
        env file (and the release's copy of it) must be the one source of what runs."""
        return env_file_keys(self.target.env_files)

    def stream(
        self,
        args: Sequence[str],
        on_line: Callable[[str], None],
        *,
        timeout: float | None = None,
        echo: bool = True,
    ) -> int:
        if echo:
            on_line("$ " + " ".join(args))
        return self.runner.stream(args, on_line, cwd=self.target.project_dir, timeout=timeout,
                                  without=self.environ_without())

    def capture(self, args: Sequence[str], timeout: float | None = 60.0) -> Captured:
        if self.ahead is not None:
            answer = self.ahead.take(args, self.target.project_dir)
            if answer is not None:
                return answer
        return self.runner.capture(args, cwd=self.target.project_dir, timeout=timeout,
                                   without=self.environ_without())

    def check(self, args: Sequence[str], what: str, timeout: float | None = 60.0) -> str:
        """Capture, and fail the phase with compose's own message when the command fails."""
        result = self.capture(args, timeout)
        if result.returncode != 0:
            message = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise PhaseFailed(
                f"{what} failed: {message[-1] if message else 'exit ' + str(result.returncode)}",
                exit_code=result.returncode,
                details=result.stderr,
            )
        return result.stdout

    # -- queries ----------------------------------------------------------------
    def model(self) -> ComposeModel:
        text = self.check(config_argv(self.target), "docker compose config")
        return ComposeModel.from_json(self.target.project_name, text)

    def raw_model(self) -> dict[str, Any]:
        """The compose model with extends and include resolved and paths made absolute, but
        ``${VAR}`` left as written (so it holds no value of the env file)."""
        text = self.check(self.argv("config", "--no-interpolate", "--format", "json"),
                          "docker compose config --no-interpolate")
        return dict(json.loads(text))

    def ps(self, services: Sequence[str] = (), *, all: bool = True) -> list[ContainerState]:
        """The project's containers (of ``services``, or all), one-off ones left out, as ``compose ps``."""
        def cli() -> list[ContainerState]:
            args = ["ps", "--format", "json"] + (["--all"] if all else []) + list(services)
            return parse_ps(self.check(self.argv(*args), "docker compose ps"))

        return self._ask(lambda engine: states_from_inspect(self._containers(engine, services, all)), cli)

    def containers(self, services: Sequence[str] = ()) -> list[dict[str, Any]]:
        """``docker inspect`` of the project's containers (of ``services``, or all), one-off ones left out."""
        def cli() -> list[dict[str, Any]]:
            return self.inspect([c.id for c in self.ps(services) if c.id])

        return self._ask(lambda engine: self._containers(engine, services, True), cli)

    def _containers(self, engine: Engine, services: Sequence[str], all: bool) -> list[dict[str, Any]]:
        found = []
        for container in self._project_container_ids(engine, all=all):
            item = engine.inspect(container)
            labels = ((item or {}).get("Config") or {}).get("Labels") or {}
            if item is None or labels.get("com.docker.compose.oneoff") == "True":
                continue
            if not services or labels.get("com.docker.compose.service") in services:
                found.append(item)
        return sorted(found, key=lambda item: str(item.get("Name", "")))

    def logs_tail(self, service: str, lines: int = 20) -> list[str]:
        result = self.capture(self.argv("logs", "--no-color", "--tail", str(lines), service))
        return (result.stdout + result.stderr).splitlines()[-lines:]

    def image_ids(self, images: Sequence[str]) -> dict[str, str | None]:
        """Current image id of each named image (None when absent), in one engine call (none for no image)."""
        if not images:
            return {}

        def cli() -> dict[str, str]:
            listing = self.check(
                self.docker_argv("image", "ls", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"),
                "docker image ls",
            )
            known: dict[str, str] = {}
            for line in listing.splitlines():
                ref, _, image_id = line.rpartition(" ")
                known[ref] = image_id
            return known

        known = self._ask(lambda engine: engine.image_tags(), cli)
        return {image: known.get(normalize_image(image)) for image in images}

    def tag(self, image: str, reference: str) -> None:
        """Tag an image (by id) as ``reference`` (``repository:tag``)."""
        def cli() -> None:
            self.check(self.docker_argv("tag", image, reference), f"docker tag {reference}")

        self._ask(lambda engine: engine.tag(image, reference), cli)

    def wait(self, container: str) -> int:
        """Wait for a container to stop and return its exit code, as the engine reports it."""
        def cli() -> int:
            text = self.check(self.docker_argv("wait", container), f"docker wait {container}", None)
            return int(text.strip().splitlines()[-1])

        return self._ask(lambda engine: engine.wait(container), cli)

    def inspect(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """``docker inspect`` of containers; ones that vanished meanwhile are left out."""
        if not ids:
            return []

        def cli() -> list[dict[str, Any]]:
            result = self.capture(self.docker_argv("inspect", *ids))
            try:
                return list(json.loads(result.stdout or "[]"))
            except ValueError:
                return []

        return self._ask(lambda engine: [item for item in map(engine.inspect, ids) if item is not None], cli)

    def exec_argv(self, service: str, command: Sequence[str]) -> list[str]:
        """``docker exec`` of ``command`` in a running container of ``service`` (the engine's
        exec reports the command's exit code; compose exec does not on every version)."""
        running = [c for c in self.ps([service], all=False) if c.id]
        if not running:
            raise PhaseFailed(f"no running container of {service} to run {' '.join(command)} in")
        return self.docker_argv("exec", running[0].id, *command)

    def remove_containers(self, names: Sequence[str]) -> None:
        """Force-remove containers by name; missing ones are fine. Runs even when cancelled."""
        if not names:
            return
        if self.engine is not None:
            try:
                for name in names:
                    self.engine.remove(name)
                return
            except EngineUnavailable:
                pass
        self.runner.capture(self.docker_argv("rm", "--force", *names), cancellable=False,
                            without=self.environ_without())

    def rename_container(self, container: str, name: str) -> None:
        def cli() -> None:
            self.check(self.docker_argv("rename", container, name), f"docker rename {name}")

        self._ask(lambda engine: engine.rename(container, name), cli)

    def finish_interrupted_recreates(self, out: Callable[[str], None]) -> None:
        """Undo what a killed ``compose up`` left halfway through recreating a container.

        Compose recreates a container by creating the new one as ``<12 hex>_<name>``, then
        stopping and removing the old one, then renaming the new one to ``<name>`` (older
        releases renamed the old one to ``<12 hex>_<name>`` first). Killed in between, it
        leaves a container under that temporary name, which the next ``up`` keeps as it is
        (a proxy may still point at the old one). So: where the proper name is taken, the
        temporary container goes (the next ``up`` recreates the other if it is out of
        date); where it is free, the temporary container takes it back (keeping any
        volumes it inherited)."""
        found = []
        for item in self.containers():
            labels = (item.get("Config") or {}).get("Labels") or {}
            name, container = str(item.get("Name", "")).lstrip("/"), str(item.get("Id", ""))
            match = _TEMPORARY_NAME.match(name)
            # The rest must be compose's name for the replica ("PROJECT-SERVICE-N", or the
            # container_name that newer releases record in the "replace" label): a container
            # the operator named "<12 hex>_x" is left alone.
            replaced = labels.get("com.docker.compose.replace", "")
            proper_names = {"-".join((self.target.project_name, labels.get("com.docker.compose.service", ""),
                                      labels.get("com.docker.compose.container-number", "")))}
            if replaced:
                proper_names |= {replaced, f"{self.target.project_name}-{replaced}"}
            ours = match is not None and match.group(1) in proper_names
            found.append((name, container, match.group(1) if match and ours else None))
        taken = {name for name, _, _ in found}
        for name, container, proper in sorted(found):
            if proper is None or not container:
                continue
            if proper in taken:
                out(f"removing {name}, left by an interrupted recreate of {proper}")
                self.remove_containers([container])
            else:
                out(f"renaming {name} to {proper}, left by an interrupted recreate")
                self.rename_container(container, proper)
                taken.add(proper)
            taken.discard(name)

    # -- start-first updates (phases/rollout.py) ----------------------------------
    def config_hash(self, service: str) -> str:
        """The config hash compose gives the service's containers now (their label
        ``com.docker.compose.config-hash``): a container with another one is out of date."""
        text = self.check(self.argv("config", "--hash", service), f"docker compose config --hash {service}")
        for line in text.splitlines():
            name, _, digest = line.strip().partition(" ")
            if name == service and digest.strip():
                return digest.strip()
        raise PhaseFailed(f"docker compose config --hash {service} printed no hash")

    def start_beside(self, service: str, total: int, on_line: Callable[[str], None]) -> int:
        """Create the service's missing containers from the current model beside the ones
        running, which stay as they are (``up --no-recreate --scale``): ``total`` in all."""
        return self.stream(self.argv("up", "--detach", "--no-deps", "--no-recreate",
                                     "--scale", f"{service}={total}", service), on_line)

    def stop_containers(self, containers: Sequence[str], timeout: float) -> None:
        """Stop containers side by side: their stop signal, then SIGKILL after ``timeout`` seconds."""
        if not containers:
            return
        seconds = str(max(0, math.ceil(timeout)))
        self.check(self.docker_argv("stop", "--time", seconds, *containers), "docker stop",
                   timeout=timeout + 60)

    def containers_with_label(self, label: str) -> list[str]:
        """Ids of the project's containers, one-off ones included, that carry ``label``."""
        def cli() -> list[str]:
            result = self.capture(
                self.docker_argv(
                    "ps", "--all", "--quiet",
                    "--filter", f"label={PROJECT_LABEL}={self.target.project_name}",
                    "--filter", f"label={label}",
                )
            )
            return result.stdout.split()

        return self._ask(lambda engine: self._project_container_ids(engine, label), cli)

    def engine_clock(self) -> str | None:
        """The engine's clock (RFC 3339), or None when it does not say."""
        def cli() -> Any:
            result = self.capture(self.docker_argv("info", "--format", "{{json .SystemTime}}"), timeout=30)
            try:
                return json.loads(result.stdout)
            except ValueError:
                return None

        clock = self._ask(lambda engine: engine.info().get("SystemTime"), cli)
        return str(clock) if clock else None

    def socket_server_version(self) -> str | None:
        """The engine's version asked over its socket; None when it cannot be asked that way
        (then ``docker version`` asks, and says what is wrong)."""
        if self.engine is None:
            return None
        try:
            version = self.engine.version().get("Version")
        except EngineUnavailable:
            return None
        return str(version) if version else None
