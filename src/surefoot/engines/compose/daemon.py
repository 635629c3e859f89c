"""The daemon's quick answers: which containers the project has and how they are, which images
exist, tags, exit codes, the clock, the version.

Each is asked over the daemon's API socket when there is one (a millisecond, where a ``docker``
CLI start costs 60 to 100 ms: :mod:`surefoot.engines.api`), and of the ``docker`` CLI otherwise,
or when the socket does not answer: the CLI then also reports the daemon's error in its own words.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from surefoot.base.errors import PhaseFailed
from surefoot.engines.api import ApiUnavailable, DockerApi
from surefoot.engines.compose import argv
from surefoot.engines.compose.argv import PROJECT_LABEL, ComposeProject
from surefoot.engines.compose.model import (
    ContainerState,
    normalize_image,
    parse_image_ls,
    parse_ps,
    states_from_inspect,
)
from surefoot.proc import Captured, Processes

T = TypeVar("T")


class Daemon:
    """One project's questions to one daemon: ``api`` its socket (None: the CLI only),
    ``runner`` the processes that reach it (this machine's, or a server's over SSH)."""

    def __init__(self, project: ComposeProject, runner: Processes, api: DockerApi | None,
                 without: Callable[[], Collection[str]] = frozenset):
        self.project = project
        self.runner = runner
        self.api = api
        self._without = without  # the variables left out of every command's environment

    def ask(self, api_way: Callable[[DockerApi], T], cli_way: Callable[[], T]) -> T:
        """The daemon's answer over its socket; the CLI's when the socket cannot answer."""
        if self.api is not None:
            self.runner.cancel.check()
            try:
                return api_way(self.api)
            except ApiUnavailable:
                pass
        return cli_way()

    def capture(self, args: Sequence[str], timeout: float | None = 60.0) -> Captured:
        return self.runner.capture(args, cwd=self.project.project_dir, timeout=timeout, without=self._without())

    def check(self, args: Sequence[str], what: str, timeout: float | None = 60.0) -> str:
        """Capture, and fail the phase with docker's own message when the command fails."""
        result = self.capture(args, timeout)
        if result.returncode != 0:
            message = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise PhaseFailed(f"{what} failed: {message[-1] if message else 'exit ' + str(result.returncode)}",
                              exit_code=result.returncode, details=result.stderr)
        return result.stdout

    # -- containers -----------------------------------------------------------------------
    def container_ids(self, api: DockerApi, *labels: str, all: bool = True) -> list[str]:
        return api.container_ids([f"{PROJECT_LABEL}={self.project.project_name}", *labels], all=all)

    def ps(self, services: Sequence[str] = (), *, all: bool = True) -> list[ContainerState]:
        """The project's containers (of ``services``, or all), one-off ones left out, as ``compose ps``."""
        def cli() -> list[ContainerState]:
            args = ["ps", "--format", "json"] + (["--all"] if all else []) + list(services)
            return parse_ps(self.check(argv.compose_args(self.project, *args), "docker compose ps"))

        return self.ask(lambda api: states_from_inspect(self._containers(api, services, all)), cli)

    def containers(self, services: Sequence[str] = ()) -> list[dict[str, Any]]:
        """``docker inspect`` of the project's containers (of ``services``, or all), one-off ones left out."""
        def cli() -> list[dict[str, Any]]:
            return self.inspect([c.id for c in self.ps(services) if c.id])

        return self.ask(lambda api: self._containers(api, services, True), cli)

    def _containers(self, api: DockerApi, services: Sequence[str], all: bool) -> list[dict[str, Any]]:
        found = []
        for container in self.container_ids(api, all=all):
            item = api.inspect(container)
            labels = ((item or {}).get("Config") or {}).get("Labels") or {}
            if item is None or labels.get("com.docker.compose.oneoff") == "True":
                continue
            if not services or labels.get("com.docker.compose.service") in services:
                found.append(item)
        return sorted(found, key=lambda item: str(item.get("Name", "")))

    def inspect(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """``docker inspect`` of containers; ones that vanished meanwhile are left out."""
        if not ids:
            return []

        def cli() -> list[dict[str, Any]]:
            result = self.capture(argv.inspect_argv(self.project, ids))
            try:
                return list(json.loads(result.stdout or "[]"))
            except ValueError:
                return []

        return self.ask(lambda api: [item for item in map(api.inspect, ids) if item is not None], cli)

    def containers_with_label(self, label: str) -> list[str]:
        """Ids of the project's containers, one-off ones included, that carry ``label``."""
        def cli() -> list[str]:
            return self.capture(argv.label_ids_argv(self.project, label)).stdout.split()

        return self.ask(lambda api: self.container_ids(api, label), cli)

    def wait(self, container: str) -> int:
        """Wait for a container to stop and return its exit code, as the daemon reports it."""
        def cli() -> int:
            text = self.check(argv.wait_argv(self.project, container), f"docker wait {container}", None)
            return int(text.strip().splitlines()[-1])

        return self.ask(lambda api: api.wait(container), cli)

    def remove_containers(self, names: Sequence[str]) -> None:
        """Force-remove containers by name; missing ones are fine. Runs even when cancelled."""
        if not names:
            return
        if self.api is not None:
            try:
                for name in names:
                    self.api.remove(name)
                return
            except ApiUnavailable:
                pass
        self.runner.capture(argv.remove_containers_argv(self.project, names), cancellable=False,
                            without=self._without())

    def rename(self, container: str, name: str) -> None:
        def cli() -> None:
            self.check(argv.rename_argv(self.project, container, name), f"docker rename {name}")

        self.ask(lambda api: api.rename(container, name), cli)

    # -- images -----------------------------------------------------------------------------
    def image_ids(self, images: Sequence[str]) -> dict[str, str | None]:
        """Current image id of each named image (None when absent), in one call (none for no image)."""
        if not images:
            return {}

        def cli() -> dict[str, str]:
            return parse_image_ls(self.check(argv.image_ls_argv(self.project), "docker image ls"))

        known = self.ask(lambda api: api.image_tags(), cli)
        return {image: known.get(normalize_image(image)) for image in images}

    def tag(self, image: str, reference: str) -> None:
        """Tag an image (by id) as ``reference`` (``repository:tag``)."""
        def cli() -> None:
            self.check(argv.tag_argv(self.project, image, reference), f"docker tag {reference}")

        self.ask(lambda api: api.tag(image, reference), cli)

    # -- the daemon itself --------------------------------------------------------------------
    def clock(self) -> str | None:
        """The daemon's clock (RFC 3339), or None when it does not say."""
        def cli() -> Any:
            result = self.capture(argv.clock_argv(self.project), timeout=30)
            try:
                return json.loads(result.stdout)
            except ValueError:
                return None

        clock = self.ask(lambda api: api.info().get("SystemTime"), cli)
        return str(clock) if clock else None

    def socket_version(self) -> str | None:
        """The daemon's version asked over its socket; None when it cannot be asked that way."""
        if self.api is None:
            return None
        try:
            version = self.api.version().get("Version")
        except ApiUnavailable:
            return None
        return str(version) if version else None
