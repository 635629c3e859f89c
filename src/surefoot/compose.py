"""The Docker adapter: operations in, parsed answers out.

Everything surefoot asks of Docker goes through :class:`Compose` (``ctx.docker``), which is
handed a :class:`Target` (the project's files) and a process runner (this machine's, or one
that runs each command on a server over SSH: :mod:`surefoot.remote`). Phases call its
operations (``up``, ``build``, ``pull``, ``run_oneoff``, ``logs``, ``events``, ...), never an
argument list. Inside: the pure argument builders (:mod:`surefoot.dockerargs`), the models and
parsers (:mod:`surefoot.dockermodel`), and the executor (:mod:`surefoot.compose_core`: the
plumbing, the operations and the queries), which asks the engine's quick questions over its
API socket (:mod:`surefoot.engine`) or takes the answers asked ahead (:mod:`surefoot.ahead`).
This module adds the start-first and preflight questions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from surefoot import dockerargs
from surefoot.compose_core import HERE, Answers, ComposeCore, NoRunningContainer
from surefoot.dockerargs import (
    ONEOFF,
    PROJECT_LABEL,
    Target,
    compose_args,
    config_argv,
    env_file_keys,
    env_values,
    shadowing,
)
from surefoot.dockermodel import (
    DATABASE_IMAGES,
    ComposeModel,
    ContainerState,
    compose_reason,
    normalize_image,
    parse_config_hash,
    parse_ps,
    replicas,
    states_from_inspect,
)
from surefoot.engine import EngineUnavailable
from surefoot.errors import PhaseFailed
from surefoot.proc import Captured

__all__ = [
    "DATABASE_IMAGES", "HERE", "ONEOFF", "PROJECT_LABEL", "Answers", "Compose", "ComposeModel", "ContainerState",
    "NoRunningContainer", "Target", "compose_args", "compose_reason", "config_argv", "env_file_keys", "env_values",
    "normalize_image", "parse_ps", "replicas", "shadowing", "states_from_inspect",
]


class Compose(ComposeCore):
    """Docker compose and docker engine operations for one target (see the module)."""

    def builder(self) -> Compose:
        """The adapter whose engine builds the images (itself, unless they are built elsewhere
        and shipped)."""
        return self

    def for_target(self, target: Target) -> Compose:
        """The same engine, for other files (a release's model, to restore it)."""
        return self.twin(Compose(target, self.runner, engine=self.engine or False, reader=self.reader))

    def twin(self, other: Compose) -> Compose:
        """``other`` told where it is and what runs there, as this adapter is."""
        other.site, other.services_spec, other.migrates = self.site, self.services_spec, self.migrates
        other.swarm = self.swarm
        return other

    # -- start-first updates (phases/rollout.py) ----------------------------------
    def config_hash(self, service: str) -> str:
        """The config hash compose gives the service's containers now (a container labelled
        with another ``com.docker.compose.config-hash`` is out of date)."""
        what = f"docker compose config --hash {service}"
        found = parse_config_hash(self.check(dockerargs.config_hash_argv(self.target, service), what, read=True),
                                  service)
        if found is None:
            raise PhaseFailed(f"{what} printed no hash")
        return found

    def start_beside(self, service: str, total: int, on_line: Callable[[str], None]) -> int:
        """Create the service's missing containers beside the running ones (``total`` in all)."""
        return self.stream(dockerargs.start_beside_argv(self.target, service, total), on_line)

    def stop_containers(self, containers: Sequence[str], timeout: float) -> None:
        """Stop containers side by side: their stop signal, then SIGKILL after ``timeout`` seconds."""
        if containers:
            self.check(dockerargs.stop_argv(self.target, containers, timeout), "docker stop", timeout=timeout + 60)

    def containers_with_label(self, label: str) -> list[str]:
        """Ids of the project's containers, one-off ones included, that carry ``label``."""
        def cli() -> list[str]:
            return self.capture(dockerargs.label_ids_argv(self.target, label)).stdout.split()

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
        """The engine's version asked over its socket; None when it cannot be asked that way."""
        if self.engine is None:
            return None
        try:
            version = self.engine.version().get("Version")
        except EngineUnavailable:
            return None
        return str(version) if version else None

    # -- what preflight and prerequisites ask ----------------------------------------
    def compose_version(self, *, timeout: float | None = 30) -> Captured:
        """``docker compose version --short`` (raises CommandNotFound without docker)."""
        return self.capture(dockerargs.compose_version_argv(self.target), timeout=timeout)

    def server_version(self, *, timeout: float | None = 30) -> Captured:
        """The engine's version: over its socket when it answers there, else ``docker version``
        (whose error says what is wrong)."""
        known = self.socket_server_version()
        if known:
            return Captured(0, known, "")
        return self.capture(dockerargs.server_version_argv(self.target), timeout=timeout)

    def daemon_info(self, *, timeout: float | None = 10) -> Captured:
        """``docker info``'s server version: exit 0 once the daemon answers."""
        return self.capture(dockerargs.daemon_info_argv(self.target), timeout=timeout)

    def image_present(self, image: str, *, timeout: float | None = 30) -> bool:
        """Whether the engine holds ``image`` (a reference, digest-pinned ones included)."""
        return self.capture(dockerargs.image_inspect_id_argv(self.target, image), timeout=timeout).returncode == 0
