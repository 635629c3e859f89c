"""The compose engine: docker compose and one Docker daemon, operations in, parsed answers out.

:class:`ComposeEngine` implements :class:`surefoot.engines.base.Engine` for a target whose
containers compose runs: this machine's daemon, or a server's (its commands then run there over
SSH: the runner is :class:`surefoot.hosts.ssh.remote.RemoteProcesses`). Phases call its
operations (``up``, ``build``, ``pull``, ``run_oneoff``, ``logs``, ``events``, ...), never an
argument list: those are built by :mod:`surefoot.engines.compose.argv` (pure), the answers read
by :mod:`surefoot.engines.compose.model` (pure), and the quick questions answered by the daemon's
API socket or its CLI (:mod:`surefoot.engines.compose.daemon`).

Where a target's images are built elsewhere (``build = "control"`` or ``"registry"``), its
``builder`` is this machine's engine and its ``delivery`` says how the images then reach the
server (:mod:`surefoot.engines.compose.delivery`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from surefoot.base.errors import NoRunningContainer, PhaseFailed
from surefoot.base.once import Once
from surefoot.engines.api import DockerApi
from surefoot.engines.base import HERE
from surefoot.engines.compose import argv
from surefoot.engines.compose.argv import ComposeProject, env_file_keys
from surefoot.engines.compose.daemon import Daemon
from surefoot.engines.compose.model import (
    ComposeModel,
    ContainerState,
    edge_processes,
    interrupted_recreates,
    parse_config_hash,
)
from surefoot.hosts.checks import CheckResult
from surefoot.proc import Captured, Processes

if TYPE_CHECKING:
    from surefoot.config.settings import Settings
    from surefoot.engines.base import ServerLink

class Answers(Protocol):
    """Answers to commands asked ahead of time (:class:`surefoot.engines.compose.ahead.AskedAhead`)."""

    def take(self, argv: Sequence[str], cwd: Path | None) -> Captured | None: ...

    def drop(self) -> None: ...


class Delivery(Protocol):
    """How images built on another daemon (this machine's) reach the target's."""

    def deliver(self, images: list[str], on_line: Callable[[str], None]) -> None: ...


class ComposeEngine:
    """docker compose and the daemon of one target (see the module)."""

    kind = "compose"

    def __init__(self, project: ComposeProject, runner: Processes, *, api: DockerApi | None = None,
                 ahead: Answers | None = None, reader: Processes | None = None, site: str = HERE,
                 builder: ComposeEngine | None = None, delivery: Delivery | None = None):
        self.project = project
        self.runner = runner  # runs the commands that reach the daemon (on a server: over SSH)
        # reads the compose files (``compose config``): on this machine, where the files are
        self.reader = reader or runner
        self.ahead = ahead  # answers to commands started before the settings were loaded
        self.site = site  # where its daemon is, for messages ("target web1")
        self.builder = builder  # the engine that builds the images (None: this one)
        self.delivery = delivery  # how the images the builder made reach this daemon
        self.daemon = Daemon(project, runner, api, self.environ_without)

    @classmethod
    def here(cls, project: ComposeProject, runner: Processes, *, ahead: Answers | None = None) -> ComposeEngine:
        """This machine's daemon (its API socket when the plain ``docker`` command reaches it)."""
        return cls(project, runner, api=DockerApi.local(project.docker), ahead=ahead)

    @classmethod
    def on_server(cls, project: ComposeProject, link: ServerLink) -> ComposeEngine:
        """A server's daemon through ``link``: compose runs there, reading the files sent there;
        its images built there, or here and delivered (``build``)."""
        return cls(project, link.processes, api=link.api, reader=link.local, site=link.site,
                   **images_from_here(project, link))

    def with_files(self, project: ComposeProject) -> ComposeEngine:
        """The same engine for other files (a release's model, to restore it)."""
        builder = self.builder.with_files(project) if self.builder is not None else None
        return ComposeEngine(project, self.runner, api=self.daemon.api, reader=self.reader, site=self.site,
                             builder=builder, delivery=self.delivery)

    def build_engine(self) -> ComposeEngine:
        """The engine whose daemon builds the images (itself, unless they are built elsewhere)."""
        return self.builder or self

    def forget_answers(self) -> None:
        """What the answers asked ahead depend on (the env file) has changed."""
        if self.ahead is not None:
            self.ahead.drop()

    def close(self) -> None:
        pass

    def preflight_checks(self, settings: Settings, model: ComposeModel) -> list[CheckResult]:
        return []  # the daemon and compose are preflight's own checks

    # -- plumbing ---------------------------------------------------------------------------
    def environ_without(self) -> frozenset[str]:
        """The variables left out of the environment of every compose and docker command: those
        the env file defines. Compose lets the shell's variables win over ``--env-file``; the
        env file (and the release's copy of it) must be the one source of what runs."""
        return env_file_keys(self.project.env_files)

    def stream(self, args: Sequence[str], on_line: Callable[[str], None], *, timeout: float | None = None,
               echo: bool = True) -> int:
        if echo:
            on_line("$ " + " ".join(args))
        return self.runner.stream(args, on_line, cwd=self.project.project_dir, timeout=timeout,
                                  without=self.environ_without())

    def capture(self, args: Sequence[str], timeout: float | None = 60.0, *, read: bool = False) -> Captured:
        """Run and keep the output; ``read``: a command that only reads the compose files."""
        if self.ahead is not None:
            answer = self.ahead.take(args, self.project.project_dir)
            if answer is not None:
                return answer
        return (self.reader if read else self.runner).capture(
            args, cwd=self.project.project_dir, timeout=timeout, without=self.environ_without())

    def check(self, args: Sequence[str], what: str, timeout: float | None = 60.0, *, read: bool = False) -> str:
        """Capture, and fail the phase with compose's own message when the command fails."""
        result = self.capture(args, timeout, read=read)
        if result.returncode != 0:
            message = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise PhaseFailed(f"{what} failed: {message[-1] if message else 'exit ' + str(result.returncode)}",
                              exit_code=result.returncode, details=result.stderr)
        return result.stdout

    # -- the compose model --------------------------------------------------------------------
    def model(self) -> ComposeModel:
        text = self.check(argv.config_argv(self.project), "docker compose config", read=True)
        return ComposeModel.from_json(self.project.project_name, text)

    def raw_model(self, *, user: bool = False) -> dict[str, Any]:
        """The compose model with extends and include resolved and paths made absolute, but
        ``${VAR}`` left as written (so it holds no value of the env file); ``user``: of the
        user's files alone, without surefoot's override."""
        text = self.check(argv.raw_config_argv(self.project, override=not user), "docker compose config "
                          "--no-interpolate", read=True)
        return dict(json.loads(text))

    def config_hash(self, service: str) -> str:
        """The config hash compose gives the service's containers now (a container labelled
        with another ``com.docker.compose.config-hash`` is out of date). Asked where compose
        runs: the hash covers the bind mounts' absolute paths, which differ on a server."""
        what = f"docker compose config --hash {service}"
        found = parse_config_hash(self.check(argv.config_hash_argv(self.project, service), what), service)
        if found is None:
            raise PhaseFailed(f"{what} printed no hash")
        return found

    # -- images -----------------------------------------------------------------------------
    def build(self, services: Sequence[str] = (), *, on_line: Callable[[str], None]) -> int:
        """``compose build`` of ``services`` (none: all) by the builder; then, built elsewhere,
        the images delivered here."""
        builder = self.builder or self
        if self.builder is not None:  # this machine's engine, for several servers at once: once
            code = built_here(builder.project, tuple(services),
                              lambda: builder.stream(argv.build_argv(builder.project, services), on_line), on_line)
        else:
            code = builder.stream(argv.build_argv(builder.project, services), on_line)
        if code == 0 and self.delivery is not None:
            model = self.model()
            self.delivery.deliver([model.image_name(s) for s in (services or model.build_services())], on_line)
        return code

    def pull(self, services: Sequence[str] = (), *, on_line: Callable[[str], None],
             ignore_buildable: bool = True) -> int:
        return self.stream(argv.pull_argv(self.project, services, ignore_buildable=ignore_buildable), on_line)

    def image_ids(self, images: Sequence[str]) -> dict[str, str | None]:
        return self.daemon.image_ids(images)

    def image_present(self, image: str, *, timeout: float | None = 30) -> bool:
        """Whether the daemon holds ``image`` (a reference, digest-pinned ones included)."""
        return self.capture(argv.image_inspect_id_argv(self.project, image), timeout=timeout).returncode == 0

    def tag(self, image: str, reference: str) -> None:
        self.daemon.tag(image, reference)

    def remove_images(self, images: Sequence[str], *, on_line: Callable[[str], None]) -> int:
        """Untag (and remove, when nothing else uses them) images by reference; the exit code."""
        return self.stream(argv.image_rm_argv(self.project, images), on_line)

    def prune_project_images(self, *, on_line: Callable[[str], None]) -> int:
        """Remove the dangling images compose built for this project (and no one else's)."""
        return self.stream(argv.prune_project_images_argv(self.project), on_line)

    # -- containers -------------------------------------------------------------------------
    def up(self, services: Sequence[str] = (), *, on_line: Callable[[str], None], remove_orphans: bool = False,
           no_build: bool = False, pull_never: bool = False, no_deps: bool = False, force_recreate: bool = False,
           timeout: float | None = None) -> int:
        """``compose up --detach`` of ``services`` (none: all), its output to ``on_line``
        (the command line first); the exit code."""
        args = argv.up_argv(self.project, services, remove_orphans=remove_orphans, no_build=no_build,
                            pull_never=pull_never, no_deps=no_deps, force_recreate=force_recreate)
        return self.stream(args, on_line, timeout=timeout)

    def create_beside(self, service: str, total: int, on_line: Callable[[str], None]) -> int:
        """Create (not start) the service's missing containers beside the running ones (``total``
        in all)."""
        return self.stream(argv.create_beside_argv(self.project, service, total), on_line)

    def start_containers(self, containers: Sequence[str]) -> None:
        if containers:
            self.check(argv.start_argv(self.project, containers), "docker start", timeout=120)

    def connect(self, container: str, network: str, aliases: Sequence[str] = ()) -> None:
        self.check(argv.network_connect_argv(self.project, network, container, aliases), "docker network connect")

    def disconnect(self, container: str, network: str) -> None:
        self.check(argv.network_disconnect_argv(self.project, network, container), "docker network disconnect")

    def user_model(self) -> ComposeModel:
        if self.project.override is None:
            return self.model()
        text = self.check(argv.user_config_argv(self.project), "docker compose config", read=True)
        return ComposeModel.from_json(self.project.project_name, text)

    def start_edge(self, name: str, image: str, config: str, labels: Mapping[str, str]) -> None:
        self.check(argv.edge_run_argv(self.project, name, image, config, labels), "starting the edge", timeout=300)

    def reload_edge(self, name: str, config: str) -> None:
        self.check(argv.edge_reload_argv(self.project, name, config), "reloading the edge", timeout=60)

    def edge_processes(self, name: str) -> list[tuple[int, int]]:
        result = self.capture(argv.edge_workers_argv(self.project, name), 30)
        return edge_processes(result.stdout) if result.returncode == 0 else []

    def stop_containers(self, containers: Sequence[str], timeout: float) -> None:
        """Stop containers side by side: their stop signal, then SIGKILL after ``timeout`` seconds."""
        if containers:
            self.check(argv.stop_argv(self.project, containers, timeout), "docker stop", timeout=timeout + 60)

    def remove_containers(self, names: Sequence[str]) -> None:
        self.daemon.remove_containers(names)

    def ps(self, services: Sequence[str] = (), *, all: bool = True) -> list[ContainerState]:
        return self.daemon.ps(services, all=all)

    def containers(self, services: Sequence[str] = ()) -> list[dict[str, Any]]:
        return self.daemon.containers(services)

    def inspect(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        return self.daemon.inspect(ids)

    def containers_with_label(self, label: str) -> list[str]:
        return self.daemon.containers_with_label(label)

    def published_ports(self) -> set[int]:
        """The host ports the project's own containers hold now."""
        return {port for container in self.ps() for port in container.published}

    def finish_interrupted_recreates(self, out: Callable[[str], None]) -> None:
        """Undo what a killed ``compose up`` left halfway through recreating a container
        (see :func:`~surefoot.engines.compose.model.interrupted_recreates`)."""
        for action, name, container, proper in interrupted_recreates(self.containers(), self.project.project_name):
            if action == "remove":
                out(f"removing {name}, left by an interrupted recreate of {proper}")
                self.remove_containers([container])
            else:
                out(f"renaming {name} to {proper}, left by an interrupted recreate")
                self.daemon.rename(container, proper)

    # -- one-off work, logs and events -------------------------------------------------------
    def run_oneoff(self, service: str, command: Sequence[str], *, name: str, on_line: Callable[[str], None],
                   entrypoint: Sequence[str] | None = None, labels: Mapping[str, str] | None = None) -> None:
        """Start a one-off container of ``service`` named ``name``, detached (follow it with
        :meth:`logs` and :meth:`wait`); fails the phase when it cannot start."""
        args = argv.run_oneoff_argv(self.project, service, command, name=name, entrypoint=entrypoint, labels=labels)
        on_line("$ " + " ".join(args))
        self.check(args, "starting the one-off container")

    def wait(self, container: str) -> int:
        return self.daemon.wait(container)

    def logs(self, container: str, *, on_line: Callable[[str], None], follow: bool = True,
             timeout: float | None = None) -> int:
        """One container's log lines (followed until it stops) to ``on_line``."""
        return self.stream(argv.logs_argv(self.project, container, follow=follow), on_line, timeout=timeout,
                           echo=False)

    def logs_tail(self, service: str, lines: int = 20) -> list[str]:
        result = self.capture(argv.service_logs_argv(self.project, [service], tail=lines))
        return (result.stdout + result.stderr).splitlines()[-lines:]

    def logs_command(self, *, follow: bool = True) -> list[str]:
        """The command an operator runs to see the project's logs (shown, not run)."""
        return argv.service_logs_argv(self.project, follow=follow)

    def _running_container(self, service: str, command: Sequence[str]) -> str:
        running = [c for c in self.ps([service], all=False) if c.id]
        if not running:
            raise NoRunningContainer(f"no running container of {service} to run {' '.join(command)} in")
        return running[0].id

    def exec_stream(self, service: str, command: Sequence[str], *, on_line: Callable[[str], None],
                    timeout: float | None = None) -> int:
        """Run ``command`` in a running container of ``service`` (``docker exec``: the daemon
        reports the command's exit code; compose exec does not on every version)."""
        args = argv.exec_argv(self.project, self._running_container(service, command), command)
        return self.runner.stream(args, on_line, cwd=self.project.project_dir, timeout=timeout)

    def exec_capture(self, service: str, command: Sequence[str], *, timeout: float | None = None,
                     container: str | None = None) -> Captured:
        """As :meth:`exec_stream`, the output kept; ``container`` (an id) names the container itself."""
        args = argv.exec_argv(self.project, container or self._running_container(service, command), command)
        return self.runner.capture(args, cwd=self.project.project_dir, timeout=timeout)

    def exec_to_file(self, service: str, command: Sequence[str], path: Path, *,
                     timeout: float | None = None) -> Captured:
        """``command``'s standard output in ``path`` (created 0600); its stderr is returned."""
        args = argv.exec_argv(self.project, self._running_container(service, command), command)
        return self.runner.to_file(args, path, timeout=timeout)

    @contextmanager
    def events(self, on_event: Callable[[str], None], on_end: Callable[[], None] = lambda: None,
               since: float | None = None) -> Iterator[None]:
        """Follow the daemon's events about the project's containers for the length of the
        block, from ``since`` (default: now), one status a call to ``on_event``."""
        args = argv.events_argv(self.project, time.time() if since is None else since)
        with self.runner.follow(args, on_event, on_end=on_end):
            yield

    # -- the daemon (preflight and prerequisites ask) -----------------------------------------
    def compose_version(self, *, timeout: float | None = 30) -> Captured:
        """``docker compose version --short`` (raises CommandNotFound without docker)."""
        return self.capture(argv.compose_version_argv(self.project), timeout=timeout)

    def server_version(self, *, timeout: float | None = 30) -> Captured:
        """The daemon's version: over its socket when it answers there, else ``docker version``
        (whose error says what is wrong)."""
        known = self.daemon.socket_version()
        if known:
            return Captured(0, known, "")
        return self.capture(argv.server_version_argv(self.project), timeout=timeout)

    def daemon_info(self, *, timeout: float | None = 10) -> Captured:
        """``docker info``'s server version: exit 0 once the daemon answers."""
        return self.capture(argv.daemon_info_argv(self.project), timeout=timeout)

    def engine_clock(self) -> str | None:
        """The daemon's clock (RFC 3339), or None when it does not say."""
        return self.daemon.clock()


_BUILDS: Once[tuple[Any, ...], int] = Once(keep=lambda code: code == 0)  # the builds this process made here


def built_here(project: ComposeProject, services: tuple[str, ...], build: Callable[[], int],
               on_line: Callable[[str], None]) -> int:
    """Build the images of ``services`` on this machine once in this process: a rollout's servers
    prepare side by side, the first builds, the others wait for it and find them built (then each
    ships them at once). A failed build is tried again by the next one."""
    key = (project.project_name, project.project_dir, project.compose_files, project.env_files, services)
    code, made = _BUILDS.get(key, build)
    if not made:
        on_line("images already built on this machine by this run: shipping them")
    return code


def images_from_here(project: ComposeProject, link: ServerLink) -> dict[str, Any]:
    """``builder`` and ``delivery`` when the images are built on this machine (``build = "control"``:
    shipped; ``"registry"``: pushed there, pulled by the server); none when built on the server."""
    from surefoot.engines.compose.delivery import Pushed, Shipped

    if link.build == "target":
        return {}
    builder = ComposeEngine.here(project, link.local)  # this machine's daemon
    if link.build == "registry":
        assert link.registry is not None
        return {"builder": builder, "delivery": Pushed(link.local, link.processes, link.conn, link.registry)}
    return {"builder": builder, "delivery": Shipped(link.local, link.conn, link.ship)}
