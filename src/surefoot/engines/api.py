"""The Docker daemon's API, asked over its unix socket (this machine's, or a server's forwarded here).

Each ``docker`` command costs a process start of the Go CLI (60 ms to 100 ms on these
machines), and a deployment asks the engine small questions many times: which containers
the project has and how they are, which images exist, the engine's version and clock,
and it tags a release's images. Asked over the engine's socket, each is a millisecond.

Only the engine that the plain ``docker`` command would reach from here is asked this way:
no ``DOCKER_HOST`` other than a unix socket, no Docker context other than the default.
Anything else, and any failure to reach the socket, leaves the question to the CLI, which
then also gives the user the engine's own error message. Long-running or streaming work
(compose, exec, logs, wait, events) always goes through the CLI.

The standard library's ``http.client`` does the HTTP; the Docker SDK for Python would do
it too, at 75 ms of imports on every deployment.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from surefoot.proc import trace

DEFAULT_SOCKET = "/var/run/docker.sock"


class ApiUnavailable(Exception):
    """The socket could not be asked, or answered something unexpected: ask the CLI instead."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def local_socket(docker: Sequence[str], environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """The socket the plain ``docker`` command would use here, or None when it would go
    elsewhere (a TCP or SSH ``DOCKER_HOST``, a non-default context, extra CLI options)."""
    if tuple(docker) != ("docker",):
        return None
    context = environ.get("DOCKER_CONTEXT", "")
    if context not in ("", "default"):
        return None
    host = environ.get("DOCKER_HOST", "")
    if host:
        return host.removeprefix("unix://") if host.startswith("unix://") else None
    config = Path(environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        current = json.loads(config.read_text()).get("currentContext", "")
    except (OSError, ValueError, AttributeError):
        current = ""
    return DEFAULT_SOCKET if current in ("", "default") else None


class DockerApi:
    """A client of the engine's API for the few calls surefoot makes often. Thread-safe:
    every request opens its own connection (a unix socket connects in microseconds)."""

    def __init__(self, socket_path: str, timeout: float = 30.0, guard: Callable[[], None] = lambda: None):
        self.socket_path = socket_path
        self.timeout = timeout
        self.guard = guard  # asked before every request (a server's: its deployment lock still ours)

    @classmethod
    def local(cls, docker: Sequence[str]) -> DockerApi | None:
        path = local_socket(docker)
        if path is None or not os.access(path, os.R_OK | os.W_OK):
            return None
        return cls(path)

    def request(self, method: str, path: str, query: dict[str, str] | None = None,
                expect: Sequence[int] = (200,), timeout: float | None = None) -> Any:
        """The JSON the engine answers (None for an empty body, or for a 404 when 404 is
        expected); :class:`ApiUnavailable` for anything else, or past ``timeout``
        (by default the client's)."""
        self.guard()
        url = path + ("?" + urlencode(query) if query else "")
        trace(f"engine {method} {url}")
        connection = _UnixConnection(self.socket_path, timeout or self.timeout)
        try:
            connection.request(method, url, headers={"Host": "docker"})
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as error:
            raise ApiUnavailable(f"{method} {path}: {error}") from error
        finally:
            connection.close()
        if response.status not in expect:
            raise ApiUnavailable(f"{method} {path}: HTTP {response.status}")
        if response.status == 404 or not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError as error:
            raise ApiUnavailable(f"{method} {path}: not JSON") from error

    # -- the calls surefoot makes ------------------------------------------------
    def container_ids(self, labels: Sequence[str], *, all: bool = True) -> list[str]:
        """Ids of the containers carrying every one of ``labels`` (``key`` or ``key=value``)."""
        query = {"filters": json.dumps({"label": list(labels)})}
        if all:
            query["all"] = "1"
        listing = self.request("GET", "/containers/json", query) or []
        return [str(item["Id"]) for item in listing]

    def inspect(self, container: str) -> dict[str, Any] | None:
        """What ``docker inspect`` shows of a container; None when it is gone."""
        found = self.request("GET", f"/containers/{quote(container, safe='')}/json", expect=(200, 404))
        return dict(found) if found is not None else None

    def image_tags(self) -> dict[str, str]:
        """Every ``repository:tag`` the engine knows, and the id of its image."""
        known: dict[str, str] = {}
        for image in self.request("GET", "/images/json") or []:
            for ref in image.get("RepoTags") or []:
                if ref != "<none>:<none>":
                    known[ref] = str(image["Id"])
        return known

    def tag(self, image: str, reference: str) -> None:
        repository, _, tag = reference.rpartition(":")
        self.request("POST", f"/images/{quote(image, safe='')}/tag", {"repo": repository, "tag": tag},
                     expect=(200, 201))

    def wait(self, container: str, timeout: float = 2.0) -> int:
        """The exit code of a container that stops within ``timeout``. A request cannot be
        cancelled, so a longer wait is :class:`ApiUnavailable`, left to ``docker wait``."""
        answer = self.request("POST", f"/containers/{quote(container, safe='')}/wait", timeout=timeout) or {}
        if "StatusCode" not in answer:
            raise ApiUnavailable(f"wait {container}: no exit code in the answer")
        return int(answer["StatusCode"])

    def remove(self, container: str) -> None:
        """Force-remove a container; one already gone is fine."""
        self.request("DELETE", f"/containers/{quote(container, safe='')}", {"force": "1"}, expect=(204, 404))

    def rename(self, container: str, name: str) -> None:
        self.request("POST", f"/containers/{quote(container, safe='')}/rename", {"name": name},
                     expect=(200, 204))

    def info(self) -> dict[str, Any]:
        return dict(self.request("GET", "/info") or {})

    def version(self) -> dict[str, Any]:
        return dict(self.request("GET", "/version") or {})
