"""Health gates assembled from the configuration, run on behalf of a phase.

Used by database-start, health-wait, verify and rollback: the probes come from
:class:`~surefoot.config.ProbeSettings`, the fail-fast watch from the engine.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, cast

from surefoot.base.errors import NoRunningContainer, PhaseFailed
from surefoot.config.probes import DEFAULT_ANSWER_LIMIT, ProbeSettings
from surefoot.deploy.api import Facts
from surefoot.deploy.gates.probes import (
    GateResult,
    Probe,
    ProbeResult,
    ProbeRun,
    http_probe,
    run_gate,
    tcp_probe,
    tls_context,
)
from surefoot.deploy.gates.watch import ContainerWatch, DockerEvents
from surefoot.engines.base import Engine
from surefoot.engines.compose.model import ComposeModel
from surefoot.hosts.base import Host
from surefoot.proc import CancelToken

WATCH_POLL = 1.0  # seconds between looks at the containers, without the engine's events
WATCH_FALLBACK = 5.0  # the same, when the events wake the watch


class GateSite(Protocol):
    """What a gate needs of whoever runs it (a phase's context satisfies it): the clock and
    the cancel, where its lines go, the engine, the project's folder, model and facts."""

    @property
    def cancel(self) -> CancelToken: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def out(self) -> Callable[[str], None]: ...
    @property
    def progress(self) -> Callable[[str], None]: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def facts(self) -> Facts: ...
    @property
    def project_dir(self) -> Path: ...
    def model(self) -> ComposeModel: ...
    @property
    def host(self) -> Host: ...


def build_probe(settings: ProbeSettings, ctx: GateSite, watch: ContainerWatch,
                container: str | None = None) -> Probe:
    """The probe ``settings`` describe; ``container`` (an id) pins a service's command to it."""
    check = _check_for(settings, ctx, watch, container)

    def guarded() -> ProbeResult:
        ctx.cancel.check()
        return check()

    limit = settings.failure_limit
    return Probe(
        name=settings.label,
        check=guarded,
        consecutive=settings.consecutive,
        interval=settings.interval,
        timeout=settings.timeout,
        grace=settings.grace,
        failure_limit=limit or None,  # 0: turned off
        answer_limit=DEFAULT_ANSWER_LIMIT if limit is None else None,
    )


def _check_for(
    settings: ProbeSettings, ctx: GateSite, watch: ContainerWatch, container: str | None = None
) -> Callable[[], ProbeResult]:
    """The check of a probe: the builder ``_check_<kind>`` of its kind (names.PROBE_KINDS)."""
    builder = globals()[f"_check_{settings.type}"]
    return cast(Callable[[], ProbeResult], builder(settings, ctx, watch, container))


def _check_http(settings: ProbeSettings, ctx: GateSite, watch: ContainerWatch,
                container: str | None) -> Callable[[], ProbeResult]:
    url = reached_url(settings.url or "", ctx.host)
    context = None
    if url.startswith("https://"):
        ca_file = str(ctx.project_dir / settings.ca_file) if settings.ca_file else None
        context = tls_context(settings.insecure, ca_file)
    return lambda: http_probe(url, settings.statuses, settings.expect_body, settings.request_timeout,
                              expect_json=settings.expect_json, context=context)


def _check_tcp(settings: ProbeSettings, ctx: GateSite, watch: ContainerWatch,
               container: str | None) -> Callable[[], ProbeResult]:
    host, port, timeout = settings.host, settings.port or 0, settings.request_timeout
    owner = ctx.model().service_publishing(port, host)
    reached = ctx.host.reach(host, port)
    # Through an SSH forward the local end always accepts: judged as behind a proxy.
    forwarded = reached != (host, port)
    if owner is None:
        return lambda: tcp_probe(*reached, timeout, proxied=forwarded)
    return _published_tcp_check(f"{host}:{port}", reached, timeout, owner, watch)


def _check_container(settings: ProbeSettings, ctx: GateSite, watch: ContainerWatch,
                     container: str | None) -> Callable[[], ProbeResult]:
    return watch.probe(settings.service or "")


def _check_command(settings: ProbeSettings, ctx: GateSite, watch: ContainerWatch,
                   container: str | None) -> Callable[[], ProbeResult]:
    command, service, timeout = list(settings.command or []), settings.service, settings.request_timeout

    def run_command() -> ProbeResult:
        if container or service:  # in a given container, or the service's running one
            try:
                result = ctx.engine.exec_capture(service or "", command, timeout=timeout, container=container)
            except NoRunningContainer as exc:
                return ProbeResult(False, exc.summary)
        else:  # on the host
            result = ctx.host.run(command, cwd=ctx.project_dir, timeout=timeout)
        if result.returncode == 0:
            return ProbeResult(True, "exit 0")
        last = (result.stderr.strip() or result.stdout.strip()).splitlines()
        return ProbeResult(False, f"exit {result.returncode}" + (f": {last[-1]}" if last else ""))

    return run_command


def probes_here(ctx: GateSite, probes: Sequence[ProbeSettings]) -> list[ProbeSettings]:
    """The probes of the services that run on this target (several targets: a probe of a
    port another target's service publishes is that target's to run)."""
    def service_of(probe: ProbeSettings) -> str | None:
        if probe.type in ("container", "command"):
            return probe.service
        if probe.type == "tcp":
            return ctx.model().service_publishing(probe.port or 0, probe.host)
        parts = urllib.parse.urlsplit(probe.url or "")
        if parts.hostname in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
            return ctx.model().service_publishing(parts.port or (443 if parts.scheme == "https" else 80))
        return None

    kept = []
    for probe in probes:
        service = service_of(probe)
        if service is None or ctx.facts.runs(service):
            kept.append(probe)
    return kept


def reached_url(url: str, host: Host) -> str:
    """``url`` as this machine reaches it: a server's own loopback (``http://127.0.0.1:8080``)
    through the connection to it (a forwarded local port), any other address as it is."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or parts.hostname not in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
        return url
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address, local = host.reach(parts.hostname, port)
    if (address, local) == (parts.hostname, port):
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{address}:{local}"))


def _published_tcp_check(
    label: str, reached: tuple[str, int], timeout: float, service: str, watch: ContainerWatch
) -> Callable[[], ProbeResult]:
    """A TCP probe of a port the project publishes. Docker's proxy listens on it, and accepts
    a connection even while nothing listens behind it; so the probe passes only while the
    service's container runs, and the connection is not closed at once by the other end."""

    def check() -> ProbeResult:
        containers = [c for c in watch.snapshot() if c.service == service]
        if not any(c.status == "running" for c in containers):
            state = ", ".join(sorted({c.status for c in containers})) or "no container"
            return ProbeResult(False, f"{label} is published by {service}, whose container is "
                                      f"not running ({state})")
        return tcp_probe(*reached, timeout, proxied=True)

    return check


def run_probes(
    ctx: GateSite,
    probes: Sequence[Probe],
    *,
    watch: ContainerWatch | None,
    what: str,
    events: DockerEvents | None = None,
) -> GateResult:
    """Run a gate with live progress per probe; on failure, show why and fail the phase.
    With ``events``, the engine's news wakes the watch and the container probes at once."""
    latest: dict[str, str] = {}

    def report(run: ProbeRun) -> None:
        text = run.describe()
        ctx.out(text)
        latest[run.probe.name] = text
        ctx.progress("; ".join(latest.values()))

    sleep = events.sleeper(ctx.cancel) if events is not None else ctx.cancel.sleep
    # Woken by the engine's events, the watch's own poll is only a safety net.
    try:
        result = run_gate(probes, clock=ctx.clock, sleep=sleep, report=report, watch=watch,
                          watch_interval=WATCH_FALLBACK if events is not None else WATCH_POLL)
    finally:
        ctx.host.unreach()  # the ports forwarded to a server's loopback for the probes
    if result.passed:
        return result
    if result.service:
        ctx.out(f"--- last log lines of {result.service} ---")
        for line in ctx.engine.logs_tail(result.service, 20):
            ctx.out(line)
    if watch is not None:
        for container in watch.snapshot(fresh=True):
            health = f", {container.health}" if container.health else ""
            ctx.out(f"container {container.name}: {container.status}{health}, "
                    f"{container.restarts} restarts")
    raise PhaseFailed(f"{what}: {result.reason}")
