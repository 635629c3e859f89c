"""The swarm engine: the project as a stack on a Docker Swarm, through its manager.

The manager is a Docker daemon that compose reaches like any server's: the images are built,
pulled, tagged and listed there, and the compose model read, with the compose engine's own
operations (:class:`SwarmEngine` is a :class:`~surefoot.engines.compose.adapter.ComposeEngine`).
What differs is how the stack runs: deployed with ``docker stack deploy``, watched through the
manager's API, its images shipped to the nodes (:class:`~surefoot.engines.swarm.client.Swarm`).
The phases whose work differs on a swarm are the engine's own (:mod:`surefoot.engines.swarm.phases`),
found through the phase table's ``"swarm"`` entries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from surefoot.base.errors import ConfigError
from surefoot.engines.compose.adapter import ComposeEngine, images_from_here
from surefoot.engines.compose.argv import ComposeProject
from surefoot.engines.compose.model import ComposeModel
from surefoot.engines.swarm.checks import swarm_checks
from surefoot.engines.swarm.client import Swarm, SwarmClient
from surefoot.hosts.checks import CheckResult

if TYPE_CHECKING:
    from surefoot.config.settings import Settings
    from surefoot.engines.base import ServerLink


@runtime_checkable
class OnSwarm(Protocol):
    """An engine whose target is a swarm: its phases (:mod:`surefoot.engines.swarm.phases`) ask it."""

    @property
    def swarm(self) -> SwarmClient: ...


class SwarmEngine(ComposeEngine):
    """A stack on a swarm (see the module): the manager's compose engine, and ``swarm``, the swarm
    asked through the manager."""

    kind = "swarm"

    def __init__(self, *args: Any, swarm: SwarmClient, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.swarm = swarm

    @classmethod
    def on_server(cls, project: ComposeProject, link: ServerLink) -> SwarmEngine:
        """The swarm whose manager ``link`` reaches (its nodes beside it, to ship images to)."""
        if link.api is None:
            raise ConfigError(f"{link.site}: the swarm engine reads the manager through its Docker socket, which "
                              f"{link.conn.access().user} may not use: connect as root, or as a user in the "
                              "docker group")
        swarm = Swarm(project.project_name, link.api, link.processes, link.local, link.conn, link.nodes, link.site,
                      registry=link.registry if link.build == "registry" else None, ship=link.ship)
        return cls(project, link.processes, api=link.api, reader=link.local, site=link.site, swarm=swarm,
                   **images_from_here(project, link))

    def with_files(self, project: ComposeProject) -> SwarmEngine:
        builder = self.builder.with_files(project) if self.builder is not None else None
        return SwarmEngine(project, self.runner, api=self.daemon.api, reader=self.reader, site=self.site,
                           builder=builder, delivery=self.delivery, swarm=self.swarm)

    def published_ports(self) -> set[int]:
        """The ports the manager's own containers and the stack's tasks hold (host-mode ports)."""
        return super().published_ports() | self.swarm.published_ports()

    def preflight_checks(self, settings: Settings, model: ComposeModel) -> list[CheckResult]:
        return swarm_checks(self.swarm, settings, model)

    def close(self) -> None:
        self.swarm.close()
