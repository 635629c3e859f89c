"""The Docker adapter's core: plumbing, the operations phases call, the queries (see
:mod:`surefoot.compose`, which adds the start-first and preflight questions).

The Docker adapter: operations in, parsed answers out.

Everything surefoot asks of Docker goes through :class:`Compose` (``ctx.docker``), which is
handed a :class:`Target` (today the local engine; later a Docker context over SSH). Phases
call its operations (``up``, ``build``, ``pull``, ``run_oneoff``, ``logs``, ``events``, ...),
never an argument list. Inside: the pure argument builders (:mod:`surefoot.dockerargs`), the
models and parsers (:mod:`surefoot.dockermodel`), and this executor, which runs them through the
:class:`~surefoot.proc.ProcessRunner` and asks the quick questions of the local engine over
its socket (:mod:`surefoot.engine`) or takes the answers asked ahead (:mod:`surefoot.ahead`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from surefoot import dockerargs
from surefoot.dockerargs import (
    PROJECT_LABEL,
    Target,
    compose_args,
    config_argv,
    env_file_keys,
    raw_config_argv,
)
from surefoot.dockermodel import (
    ComposeModel,
    ContainerState,
    interrupted_recreates,
    normalize_image,
    parse_image_ls,
    parse_ps,
    states_from_inspect,
)
from surefoot.engine import Engine, EngineUnavailable
from surefoot.errors import PhaseFailed
from surefoot.proc import Captured, ProcessRunner

if TYPE_CHECKING:
    from surefoot.swarm import Swarm

T = TypeVar("T")
HERE = "this machine"


class NoRunningContainer(PhaseFailed):
    """A command was to run in a service's container, and none of them runs."""


class Answers(Protocol):
    """Answers to commands asked ahead of time (:class:`surefoot.ahead.AskedAhead`)."""

    def take(self, argv: Sequence[str], cwd: Path | None) -> Captured | None: ...

    def drop(self) -> None: ...


class ComposeCore:
    """Docker compose and docker engine operations for one target. The engine's quick questions
    (containers, images, tags) go over its API socket when it is the local engine, else, or when
    the socket fails, through the ``docker`` CLI; ``engine=False`` always uses the CLI."""

    def __init__(self, target: Target, runner: ProcessRunner, *, engine: bool | Engine = True,
                 ahead: Answers | None = None, reader: ProcessRunner | None = None):
        self.target = target
        self.runner = runner  # runs the commands that reach the engine (on a server: over SSH)
        # reads the compose files (``compose config``): on this machine, where the files are
        self.reader = reader or runner
        self.engine = engine if isinstance(engine, Engine) else Engine.local(target.docker) if engine else None
        self.ahead = ahead  # answers to commands started before the settings were loaded
        self.site = HERE  # where its engine is, for messages ("target web1")
        # Several targets: the services this one runs (declared, or every service the others
        # do not declare; None: all) and whether the migration runs here (once a release).
        self.services_spec: tuple[tuple[str, ...] | None, tuple[str, ...]] = (None, ())
        self.migrates = True
        self.swarm: Swarm | None = None  # engine = "swarm": the swarm whose manager this engine is

    def runs(self, service: str) -> bool:
        """Whether ``service`` runs on this target."""
        only = self.only()
        return only is None or service in only

    def only(self) -> frozenset[str] | None:
        declared, claimed = self.services_spec
        if declared is not None:
            return frozenset(declared)
        if not claimed:
            return None
        return frozenset(name for name in self.model().services if name not in claimed)

    def mine(self, services: Sequence[str], every: Callable[[ComposeModel], Sequence[str]]) -> list[str] | None:
        """``services`` (none: ``every`` of the model) narrowed to those that run here; None
        when all do (the model is not read then)."""
        only = self.only()
        if only is None:
            return None
        return [name for name in (services or every(self.model())) if name in only]

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

    def capture(self, args: Sequence[str], timeout: float | None = 60.0, *, read: bool = False) -> Captured:
        """Run and keep the output; ``read``: a command that only reads the compose files."""
        if self.ahead is not None:
            answer = self.ahead.take(args, self.target.project_dir)
            if answer is not None:
                return answer
        return (self.reader if read else self.runner).capture(
            args, cwd=self.target.project_dir, timeout=timeout, without=self.environ_without())

    def check(self, args: Sequence[str], what: str, timeout: float | None = 60.0, *, read: bool = False) -> str:
        """Capture, and fail the phase with compose's own message when the command fails."""
        result = self.capture(args, timeout, read=read)
        if result.returncode != 0:
            message = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise PhaseFailed(
                f"{what} failed: {message[-1] if message else 'exit ' + str(result.returncode)}",
                exit_code=result.returncode,
                details=result.stderr,
            )
        return result.stdout

    # -- operations (what phases call) -------------------------------------------
    def up(self, services: Sequence[str] = (), *, on_line: Callable[[str], None], remove_orphans: bool = False,
           no_build: bool = False, pull_never: bool = False, no_deps: bool = False, force_recreate: bool = False,
           timeout: float | None = None) -> int:
        """``compose up --detach`` of ``services`` (none: all), its output to ``on_line``
        (the command line first); the exit code."""
        here = self.mine(services, lambda model: list(model.services))
        if here is not None:  # several targets: this one's services, their dependencies elsewhere
            if not here:
                on_line("no service of the project runs on this target")
                return 0
            services, no_deps = here, True
        argv = dockerargs.up_argv(self.target, services, remove_orphans=remove_orphans, no_build=no_build,
                                  pull_never=pull_never, no_deps=no_deps, force_recreate=force_recreate)
        return self.stream(argv, on_line, timeout=timeout)

    def build(self, services: Sequence[str] = (), *, on_line: Callable[[str], None]) -> int:
        here = self.mine(services, lambda model: model.build_services())
        if here is not None:
            if not here:
                on_line("no image to build for the services of this target")
                return 0
            services = here
        return self.stream(dockerargs.build_argv(self.target, services), on_line)

    def pull(self, services: Sequence[str] = (), *, on_line: Callable[[str], None],
             ignore_buildable: bool = True) -> int:
        here = self.mine(services, lambda model: list(model.services))
        if here is not None:
            if not here:
                on_line("no image to pull for the services of this target")
                return 0
            services = here
        return self.stream(dockerargs.pull_argv(self.target, services, ignore_buildable=ignore_buildable), on_line)

    def run_oneoff(self, service: str, command: Sequence[str], *, name: str, on_line: Callable[[str], None],
                   entrypoint: Sequence[str] | None = None, labels: Mapping[str, str] | None = None) -> None:
        """Start a one-off container of ``service`` named ``name``, detached (follow it with
        :meth:`logs` and :meth:`wait`); fails the phase when it cannot start."""
        argv = dockerargs.run_oneoff_argv(self.target, service, command, name=name, entrypoint=entrypoint,
                                          labels=labels)
        on_line("$ " + " ".join(argv))
        self.check(argv, "starting the one-off container")

    def logs(self, container: str, *, on_line: Callable[[str], None], follow: bool = True,
             timeout: float | None = None) -> int:
        """One container's log lines (followed until it stops) to ``on_line``."""
        return self.stream(dockerargs.logs_argv(self.target, container, follow=follow), on_line,
                           timeout=timeout, echo=False)

    def logs_command(self, *, follow: bool = True) -> list[str]:
        """The command an operator runs to see the project's logs (shown, not run)."""
        return dockerargs.service_logs_argv(self.target, follow=follow)

    def _running_container(self, service: str, command: Sequence[str]) -> str:
        running = [c for c in self.ps([service], all=False) if c.id]
        if not running:
            raise NoRunningContainer(f"no running container of {service} to run {' '.join(command)} in")
        return running[0].id

    def exec_stream(self, service: str, command: Sequence[str], *, on_line: Callable[[str], None],
                    timeout: float | None = None) -> int:
        """Run ``command`` in a running container of ``service`` (``docker exec``: the engine
        reports the command's exit code; compose exec does not on every version)."""
        argv = dockerargs.exec_argv(self.target, self._running_container(service, command), command)
        return self.runner.stream(argv, on_line, cwd=self.target.project_dir, timeout=timeout)

    def exec_capture(self, service: str, command: Sequence[str], *, timeout: float | None = None,
                     container: str | None = None) -> Captured:
        """As :meth:`exec_stream`, the output kept; ``container`` (an id) names the container itself."""
        argv = dockerargs.exec_argv(self.target, container or self._running_container(service, command), command)
        return self.runner.capture(argv, cwd=self.target.project_dir, timeout=timeout)

    def exec_to_file(self, service: str, command: Sequence[str], path: Path, *,
                     timeout: float | None = None) -> Captured:
        """``command``'s standard output in ``path`` (created 0600); its stderr is returned."""
        argv = dockerargs.exec_argv(self.target, self._running_container(service, command), command)
        return self.runner.to_file(argv, path, timeout=timeout)

    def remove_images(self, images: Sequence[str], *, on_line: Callable[[str], None]) -> int:
        """Untag (and remove, when nothing else uses them) images by reference; the exit code."""
        return self.stream(dockerargs.image_rm_argv(self.target, images), on_line)

    def prune_project_images(self, *, on_line: Callable[[str], None]) -> int:
        """Remove the dangling images compose built for this project (and no one else's)."""
        return self.stream(dockerargs.prune_project_images_argv(self.target), on_line)

    @contextmanager
    def events(self, on_event: Callable[[str], None], on_end: Callable[[], None] = lambda: None,
               since: float | None = None) -> Iterator[None]:
        """Follow the engine's events about the project's containers for the length of the
        block, from ``since`` (default: now), one status a call to ``on_event``."""
        argv = dockerargs.events_argv(self.target, time.time() if since is None else since)
        with self.runner.follow(argv, on_event, on_end=on_end):
            yield

    # -- queries ----------------------------------------------------------------
    def model(self) -> ComposeModel:
        text = self.check(config_argv(self.target), "docker compose config", read=True)
        return ComposeModel.from_json(self.target.project_name, text)

    def raw_model(self) -> dict[str, Any]:
        """The compose model with extends and include resolved and paths made absolute, but
        ``${VAR}`` left as written (so it holds no value of the env file)."""
        text = self.check(raw_config_argv(self.target), "docker compose config --no-interpolate", read=True)
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
        result = self.capture(dockerargs.service_logs_argv(self.target, [service], tail=lines))
        return (result.stdout + result.stderr).splitlines()[-lines:]

    def image_ids(self, images: Sequence[str]) -> dict[str, str | None]:
        """Current image id of each named image (None when absent), in one engine call (none for no image)."""
        if not images:
            return {}

        def cli() -> dict[str, str]:
            return parse_image_ls(self.check(dockerargs.image_ls_argv(self.target), "docker image ls"))

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
        """Undo what a killed ``compose up`` left halfway through recreating a container
        (see :func:`~surefoot.dockermodel.interrupted_recreates`)."""
        for action, name, container, proper in interrupted_recreates(self.containers(), self.target.project_name):
            if action == "remove":
                out(f"removing {name}, left by an interrupted recreate of {proper}")
                self.remove_containers([container])
            else:
                out(f"renaming {name} to {proper}, left by an interrupted recreate")
                self.rename_container(container, proper)
