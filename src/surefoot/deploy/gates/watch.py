"""The containers' own state, read from the engine: the gate's fail-fast watch and container probes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from surefoot.deploy.gates.probes import ProbeResult, WatchAlarm
from surefoot.engines.base import Engine
from surefoot.proc import CancelToken


@dataclass(frozen=True)
class ContainerHealth:
    service: str
    name: str
    status: str  # running, exited, restarting, dead, created, paused
    health: str  # healthy, unhealthy, starting, or ""
    exit_code: int
    restarts: int
    oom_killed: bool

    @property
    def ready(self) -> bool:
        return self.status == "running" and self.health in ("", "healthy")


def parse_inspect(items: Sequence[dict[str, Any]]) -> list[ContainerHealth]:
    """The fields the gate needs from ``docker inspect`` output; one-off containers left out."""
    result = []
    for item in items:
        labels = (item.get("Config") or {}).get("Labels") or {}
        if labels.get("com.docker.compose.oneoff") == "True" or "io.surefoot.oneoff" in labels:
            continue
        state = item.get("State") or {}
        result.append(
            ContainerHealth(
                service=labels.get("com.docker.compose.service", ""),
                name=str(item.get("Name", "")).lstrip("/"),
                status=str(state.get("Status", "")),
                health=str((state.get("Health") or {}).get("Status", "")),
                exit_code=int(state.get("ExitCode") or 0),
                restarts=int(item.get("RestartCount") or 0),
                oom_killed=bool(state.get("OOMKilled")),
            )
        )
    return result


def alarm_for(container: ContainerHealth, baseline_restarts: int | None) -> str | None:
    """What is wrong with a container that waiting will not cure, or None."""
    if container.oom_killed:
        return "was killed for lack of memory (OOM)"
    if container.status in ("restarting", "dead"):
        return f"is {container.status} (last exit code {container.exit_code})"
    if container.status == "exited" and container.exit_code != 0:
        return f"exited with code {container.exit_code}"
    if baseline_restarts is not None and container.restarts > baseline_restarts:
        return f"restarted {container.restarts - baseline_restarts} time(s) during the wait"
    if container.health == "unhealthy":
        return "turned unhealthy (its compose healthcheck fails)"
    return None


class ContainerWatch:
    """Reads the project's containers; raises an alarm for one that exits, restarts or sickens."""

    # A look at the engine serves every check made within this many seconds of it: the
    # watch and each container probe of one round of a gate share one `ps` and `inspect`.
    SHARED_FOR = 0.1

    def __init__(self, engine: Engine, services: Sequence[str] | None = None,
                 clock: Callable[[], float] = time.monotonic, events: DockerEvents | None = None,
                 containers: Sequence[str] | None = None):
        self.engine = engine
        self.services = list(services) if services is not None else None
        self.only = list(containers) if containers is not None else None  # these containers alone (ids)
        self._baseline: dict[str, int] | None = None
        self._clock = clock
        self._events = events
        self._last: tuple[float, int, list[ContainerHealth]] | None = None

    def snapshot(self, fresh: bool = False) -> list[ContainerHealth]:
        """The containers' state; one taken in the last ``SHARED_FOR`` seconds unless ``fresh``,
        or unless the engine has reported a change since (then the old look is stale)."""
        news = self._events.seen if self._events is not None else 0
        if not fresh and self._last is not None:
            taken, news_then, containers = self._last
            if news_then == news and self._clock() - taken < self.SHARED_FOR:
                return containers
        if self.only is not None:
            found = parse_inspect(self.engine.inspect(self.only))
        else:
            found = parse_inspect(self.engine.containers(self.services or ()))
        if self.services is not None:
            found = [c for c in found if c.service in self.services]
        self._last = (self._clock(), news, found)
        return found

    def __call__(self) -> WatchAlarm | None:
        containers = self.snapshot()
        if self._baseline is None:
            self._baseline = {c.name: c.restarts for c in containers}
        for container in containers:
            problem = alarm_for(container, self._baseline.get(container.name))
            if problem:
                return WatchAlarm(container.service, problem)
        return None

    def probe(self, service: str) -> Callable[[], ProbeResult]:
        """A container probe: the service's containers run, are healthy, are not
        OOM-killed, and do not restart (their restart count does not rise)."""
        first_seen: dict[str, int] = {}

        def check() -> ProbeResult:
            containers = [c for c in self.snapshot() if c.service == service]
            if not containers:
                return ProbeResult(False, "no container")
            for c in containers:
                baseline = first_seen.setdefault(c.name, c.restarts)
                if c.oom_killed:
                    return ProbeResult(False, "OOM-killed")
                if c.restarts > baseline:
                    return ProbeResult(False, f"restarted {c.restarts - baseline} time(s)")
                if not c.ready:
                    return ProbeResult(False, f"{c.status}" + (f", {c.health}" if c.health else ""))
            c = containers[0]
            return ProbeResult(True, "running" + (f", {c.health}" if c.health else ""))

        return check


class DockerEvents:
    """The engine's news about the project's containers (`docker events`), used to wake a
    gate: a container that starts, dies, is OOM-killed or changes health is looked at at
    once, instead of at the next poll."""

    # Should the stream end early (`docker events` died), the sleeps fall back to this poll.
    POLL = 0.5

    def __init__(self, engine: Engine):
        self.engine = engine
        self._news = threading.Event()
        self.seen = 0  # events received (for the log, the tests, and to tell a stale look)
        self.ended = False  # the stream stopped before the block ended

    @contextmanager
    def following(self) -> Iterator[DockerEvents]:
        """Follow the events for the length of the block. Events from the moment the block
        starts are replayed (``--since``), so none is lost while the stream connects."""
        with self.engine.events(self._on_event, on_end=self._on_end, since=time.time()):
            yield self

    def _on_end(self) -> None:
        self.ended = True
        self._news.set()

    def _on_event(self, line: str) -> None:
        self.seen += 1
        self._news.set()

    def sleeper(self, cancel: CancelToken) -> Callable[[float], bool]:
        """A gate's sleep: True when cut short by an event. A cancel stops the stream, which wakes it."""

        def sleep(seconds: float) -> bool:
            if self.ended:  # no news will come: look again every POLL seconds instead
                cancel.sleep(min(seconds, self.POLL))
                return True
            woke = self._news.wait(seconds) if seconds > 0 else self._news.is_set()
            self._news.clear()
            cancel.check()
            return woke

        return sleep
