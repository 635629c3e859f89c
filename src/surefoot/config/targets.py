"""The settings of where a deployment goes: ``[targets.NAME]`` (:class:`TargetSettings`) and how a
release goes out to several targets (``[rollout]``, :class:`RolloutSection`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from surefoot.base.errors import ConfigError
from surefoot.config.address import parse_target
from surefoot.config.values import Strict


class TargetSettings(Strict):
    """One ``[targets.NAME]`` table."""

    host: str  # ssh://[USER@]HOST[:PORT], or a Host alias of the ssh config
    ssh_config: str | None = None  # passed to ssh as -F (absolute, or relative to the project folder)
    # The project's folder on the target (compose runs there; relative paths resolve there).
    folder: str | None = Field(default=None, pattern=r"^/[^\s]*$")
    # Where images are built: on the target (its engine builds from the files sent there), or
    # on this machine, then shipped (docker save | docker load over the connection, only those
    # the target lacks), or on this machine and pushed to ``registry``, which the target pulls.
    build: Literal["target", "control", "registry"] = "target"
    registry: str | None = Field(default=None, pattern=r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._/-]+)?$")
    # How images built here travel (build = "control", and to a swarm's nodes): only the layers
    # the server lacks, one at a time, resumable ("layers"); or whole, docker save | docker load
    # ("images", the way before; also what a daemon with the containerd image store gets).
    ship: Literal["layers", "images"] = "layers"
    # Only these services run on this target (default: every service no other target claims).
    services: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)
    # What runs the stack there: compose on that server, or Docker Swarm (the host is a manager;
    # the stack is deployed with ``docker stack deploy`` and watched by surefoot's gate).
    engine: Literal["compose", "swarm"] = "compose"
    # engine = "swarm": the other nodes, reached over SSH as the host is (ssh:// URLs or Host
    # aliases), to ship them the images built here or on the manager (none: a registry serves them).
    nodes: list[Annotated[str, Field(min_length=1)]] = []

    @model_validator(mode="after")
    def _check_registry(self) -> TargetSettings:
        if (self.build == "registry") != (self.registry is not None):
            raise ValueError('build = "registry" and registry = "HOST[:PORT][/PATH]" go together')
        if self.nodes and self.engine != "swarm":
            raise ValueError('nodes lists the other nodes of a swarm: only with engine = "swarm"')
        if self.engine == "swarm" and self.services is not None:
            raise ValueError('services: a swarm schedules every service of the stack itself (engine = "swarm")')
        return self

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        try:
            parse_target(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("nodes")
    @classmethod
    def _check_nodes(cls, value: list[str]) -> list[str]:
        for node in value:
            try:
                parse_target(node)
            except ConfigError as exc:
                raise ValueError(f"{node}: {exc}") from None
        return value


class RolloutSection(Strict):
    """Several targets: how many are updated at a time, and what a failure does."""

    batch: Annotated[int, Field(ge=1)] | Annotated[str, Field(pattern=r"^([1-9][0-9]?|100)%$")] = 1
    on_failure: Literal["rollback", "halt"] = "rollback"

    def batch_size(self, targets: int) -> int:
        if isinstance(self.batch, int):
            return min(self.batch, max(targets, 1))
        return max(1, -(-targets * int(self.batch[:-1]) // 100))  # a percentage, rounded up
