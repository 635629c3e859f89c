"""What the phases, the gates, the releases and rollback need of an engine: :class:`Engine`.

An engine is what runs a target's containers: :class:`~surefoot.engines.compose.adapter.ComposeEngine`
(docker compose and one daemon) or :class:`~surefoot.engines.swarm.engine.SwarmEngine` (a stack on
a swarm, through its manager). ``[targets.NAME] engine`` chooses one; ``kind`` is the key of the
phase table's per-engine entries (:data:`surefoot.base.names.PHASES`), which map a phase whose
work differs to the engine's own function. Every other phase is written once, against this
protocol, and never asks which engine it has.

Where a method's answer depends on Docker's own vocabulary (containers, images, the compose
model), it is Docker's: every engine here runs on Docker daemons. A test's ``FakeEngine``
implements the same protocol (mypy checks it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from surefoot.base.names import ENGINES
from surefoot.config.address import SshAddress
from surefoot.engines.api import DockerApi
from surefoot.engines.compose.argv import ComposeProject
from surefoot.engines.compose.model import ComposeModel, ContainerState
from surefoot.hosts.checks import CheckResult
from surefoot.hosts.ssh.connection import SshConnection
from surefoot.proc import Captured, Processes, ProcessRunner

if TYPE_CHECKING:
    from surefoot.config.settings import Settings

HERE = "this machine"  # an engine's site when its daemon is this machine's


class Engine(Protocol):
    kind: str  # "compose", "swarm": the phase table's key
    project: ComposeProject  # the project's files, as compose is handed them
    site: str  # where its daemon is, for messages: "this machine", "target web1"

    def build_engine(self) -> Engine:
        """The engine whose daemon builds the images: this one, unless they are built on this
        machine and then delivered (``build = "control"`` or ``"registry"``)."""
        ...

    def with_files(self, project: ComposeProject) -> Engine:
        """The same engine for other files (a release's, to restore it)."""
        ...

    def forget_answers(self) -> None:
        """The env file changed: answers asked ahead of time no longer hold."""
        ...

    def close(self) -> None: ...

    def preflight_checks(self, settings: Settings, model: ComposeModel) -> list[CheckResult]:
        """Preflight's checks of the engine itself, beyond the daemon's (a swarm: its manager
        and nodes, what the stack file cannot carry)."""
        ...

    # -- the compose model --------------------------------------------------------------------
    def model(self) -> ComposeModel: ...

    def raw_model(self, *, user: bool = False) -> dict[str, Any]:
        """The model with ``${VAR}`` left as written (what a release keeps); ``user``: of the
        user's compose files alone (without surefoot's override)."""
        ...

    def config_hash(self, service: str) -> str: ...

    # -- images -----------------------------------------------------------------------------
    def build(self, services: Sequence[str] = (), *, on_line: Callable[[str], None]) -> int: ...

    def pull(self, services: Sequence[str] = (), *, on_line: Callable[[str], None],
             ignore_buildable: bool = True) -> int: ...

    def image_ids(self, images: Sequence[str]) -> dict[str, str | None]: ...

    def image_present(self, image: str, *, timeout: float | None = 30) -> bool: ...

    def tag(self, image: str, reference: str) -> None: ...

    def remove_images(self, images: Sequence[str], *, on_line: Callable[[str], None]) -> int: ...

    def prune_project_images(self, *, on_line: Callable[[str], None]) -> int: ...

    # -- containers -------------------------------------------------------------------------
    def up(self, services: Sequence[str] = (), *, on_line: Callable[[str], None], remove_orphans: bool = False,
           no_build: bool = False, pull_never: bool = False, no_deps: bool = False, force_recreate: bool = False,
           timeout: float | None = None) -> int: ...

    def create_beside(self, service: str, total: int, on_line: Callable[[str], None]) -> int:
        """Create (not start) the service's missing containers beside the running ones."""
        ...

    def start_containers(self, containers: Sequence[str]) -> None: ...

    def connect(self, container: str, network: str, aliases: Sequence[str] = ()) -> None:
        """Join ``network`` under ``aliases`` (none: the container is not reached by the
        service's name there)."""
        ...

    def disconnect(self, container: str, network: str) -> None: ...

    def user_model(self) -> ComposeModel:
        """The model as the user's own compose files make it: without surefoot's override (the
        ports the edge holds are still on their services here)."""
        ...

    def start_edge(self, name: str, image: str, config: str, labels: Mapping[str, str]) -> None: ...

    def reload_edge(self, name: str, config: str) -> None:
        """Replace the edge's configuration and reload it (a bad one fails, changing nothing)."""
        ...

    def edge_processes(self, name: str) -> list[tuple[int, int]]:
        """``(pid, start)`` of the edge's HAProxy processes (none: it is not running)."""
        ...

    def stop_containers(self, containers: Sequence[str], timeout: float) -> None: ...

    def remove_containers(self, names: Sequence[str]) -> None: ...

    def ps(self, services: Sequence[str] = (), *, all: bool = True) -> list[ContainerState]: ...

    def containers(self, services: Sequence[str] = ()) -> list[dict[str, Any]]: ...

    def inspect(self, ids: Sequence[str]) -> list[dict[str, Any]]: ...

    def containers_with_label(self, label: str) -> list[str]: ...

    def published_ports(self) -> set[int]:
        """The host ports the project's own containers (or tasks) hold now."""
        ...

    def finish_interrupted_recreates(self, out: Callable[[str], None]) -> None: ...

    # -- one-off work, logs and events -------------------------------------------------------
    def run_oneoff(self, service: str, command: Sequence[str], *, name: str, on_line: Callable[[str], None],
                   entrypoint: Sequence[str] | None = None, labels: Mapping[str, str] | None = None) -> None: ...

    def wait(self, container: str) -> int: ...

    def logs(self, container: str, *, on_line: Callable[[str], None], follow: bool = True,
             timeout: float | None = None) -> int: ...

    def logs_tail(self, service: str, lines: int = 20) -> list[str]: ...

    def logs_command(self, *, follow: bool = True) -> list[str]: ...

    def exec_stream(self, service: str, command: Sequence[str], *, on_line: Callable[[str], None],
                    timeout: float | None = None) -> int: ...

    def exec_capture(self, service: str, command: Sequence[str], *, timeout: float | None = None,
                     container: str | None = None) -> Captured: ...

    def exec_to_file(self, service: str, command: Sequence[str], path: Path, *,
                     timeout: float | None = None) -> Captured: ...

    def events(self, on_event: Callable[[str], None], on_end: Callable[[], None] = ...,
               since: float | None = None) -> AbstractContextManager[None]: ...

    # -- the daemon -------------------------------------------------------------------------
    def compose_version(self, *, timeout: float | None = 30) -> Captured: ...

    def server_version(self, *, timeout: float | None = 30) -> Captured: ...

    def daemon_info(self, *, timeout: float | None = 10) -> Captured: ...

    def engine_clock(self) -> str | None: ...


@dataclass(frozen=True)
class ServerLink:
    """What an engine on a server is handed: the connection, the commands that run there, this
    machine's processes (which read the compose files, and build the images when they are built
    here), the daemon's API through the connection, and the target's settings an engine reads."""

    conn: SshConnection
    processes: Processes  # run on the server
    local: ProcessRunner  # run on this machine
    api: DockerApi | None  # the server's daemon, its socket forwarded here (None: the CLI only, through sudo)
    site: str  # "target web1", for messages
    build: str = "target"  # where images are built: "target", "control" (shipped), "registry"
    registry: str | None = None  # build = "registry": through which registry
    nodes: tuple[SshAddress, ...] = ()  # a swarm's other nodes
    ship: str = "layers"  # how images built here travel: "layers" or "images" (whole)


class ServerEngine(Protocol):
    """An engine class that can run on a server (names.ENGINES names one per kind)."""

    @classmethod
    def on_server(cls, project: ComposeProject, link: ServerLink) -> Engine: ...


def engine_class(kind: str) -> type[ServerEngine]:
    """The class of the engine ``kind`` (``[targets.NAME] engine``), from names.ENGINES."""
    module, _, name = ENGINES[kind].partition(":")
    return cast("type[ServerEngine]", getattr(importlib.import_module(f"surefoot.engines.{module}"), name))
