"""verify: every service's containers run and are healthy (a one-shot job ran to completion),
the configured URLs pass N times in a row, and TLS certificates are not about to expire.
Ends with a summary table."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, replace

from surefoot.base.errors import PhaseFailed
from surefoot.base.units import format_duration
from surefoot.config.probes import ProbeSettings
from surefoot.deploy.api import PhaseContext, PhaseResult, done
from surefoot.deploy.gates import build_probe, probes_here
from surefoot.deploy.gates.probes import Probe, ProbeRun, run_gate, tls_context
from surefoot.deploy.gates.watch import ContainerHealth, ContainerWatch
from surefoot.engines.compose.model import ComposeModel, replicas


@dataclass(frozen=True)
class Check:
    name: str
    result: str  # pass | warn | fail
    detail: str


def certificate_expiry(url: str, probe: ProbeSettings, timeout: float) -> dt.datetime:
    """When the certificate served at ``url`` expires (verified as the probe would)."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    context = tls_context(probe.insecure, probe.ca_file)
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise ValueError("no certificate")
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as pem:
        pem.write(ssl.DER_cert_to_PEM_cert(der))
        pem.flush()
        decoded = ssl._ssl._test_decode_cert(pem.name)  # type: ignore[attr-defined]
    return dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(decoded["notAfter"]), dt.UTC)


# What runs, judged against what the files ask for, within a timeout: the containers of every
# service (here), or a swarm's services and tasks (the swarm's own verify).
RunningChecks = Callable[[PhaseContext, float], list[Check]]


def run_checks(ctx: PhaseContext, running: RunningChecks | None = None) -> list[Check]:
    settings = ctx.settings.phases.verify
    watch = ContainerWatch(ctx.engine)
    checks: list[Check] = []
    if settings.containers:
        checks += (running or (lambda ctx, timeout: container_checks(ctx, watch, timeout)))(
            ctx, settings.containers_timeout)
    for probe_settings in probes_here(ctx, settings.urls):
        probe = replace(build_probe(probe_settings, ctx, watch), stop_on_permanent=True)
        # Once a check has failed the verdict is certain: a URL is tried once, not waited for.
        if any(c.result == "fail" for c in checks):
            once = probe.check()
            note = "one try, not repeated: an earlier check failed"
            checks.append(Check(probe.name, "pass" if once.ok else "fail", f"{once.detail} ({note})"))
        else:
            checks.append(_url_check(ctx, probe, watch if settings.containers else None))
        url = probe_settings.url or ""
        if url.startswith("https://"):
            checks.append(_tls_check(url, probe_settings, settings.tls_warn_days))
    return checks


def _url_check(ctx: PhaseContext, probe: Probe, watch: ContainerWatch | None) -> Check:
    shown: dict[str, tuple[bool, str, bool]] = {}

    def report(run: ProbeRun) -> None:
        # A line when the answer changes (and at the end); the streak itself is progress.
        text = run.describe()
        if run.last is not None:
            key = (run.last.ok, run.last.detail, run.passed)
            if shown.get(run.probe.name) != key:
                shown[run.probe.name] = key
                ctx.out(text)
        ctx.progress(text)

    result = run_gate([probe], clock=ctx.clock, sleep=ctx.cancel.sleep, report=report, watch=watch)
    run = result.runs[0]
    detail = run.last.detail if run.last else ""
    if result.passed:
        return Check(probe.name, "pass", f"{probe.consecutive}/{probe.consecutive} passes: {detail}")
    reason = result.reason or detail
    return Check(probe.name, "fail", reason.removeprefix(f"{probe.name}: "))


# -- containers -----------------------------------------------------------------------

CONTAINER_POLL = 0.5  # seconds between looks at containers still starting


def one_shot_services(model: ComposeModel) -> set[str]:
    """Services meant to run once and exit 0: another service waits for them to complete
    (``condition: service_completed_successfully``), or their restart policy does not
    restart a container that exits 0 (``restart: "no"`` or ``on-failure``, set explicitly)."""
    found = set()
    for name, spec in model.services.items():
        depends = spec.get("depends_on") or {}
        if isinstance(depends, dict):
            found |= {dep for dep, how in depends.items()
                      if isinstance(how, dict) and how.get("condition") == "service_completed_successfully"}
        restart = str(spec.get("restart") or "")
        policy = str((((spec.get("deploy") or {}).get("restart_policy")) or {}).get("condition") or "")
        if restart == "no" or restart.startswith("on-failure") or policy in ("none", "on-failure"):
            found.add(name)
    return found


def _judge(container: ContainerHealth, one_shot: bool) -> tuple[str, str]:
    """(pass | wait | fail, what the container's state is)."""
    state = container.status + (f", {container.health}" if container.health else "")
    if container.oom_killed:
        return "fail", f"{state}, killed for lack of memory (OOM)"
    if container.status == "running":
        if container.health == "starting":
            return "wait", state
        if container.health == "unhealthy":
            return "fail", f"{state} (its healthcheck fails)"
        return "pass", state
    if container.status == "exited":
        if container.exit_code == 0 and one_shot:
            return "pass", "exited with code 0 (a one-shot service: it ran to completion)"
        if container.exit_code == 0:
            return "fail", ("exited with code 0 (a service meant to stop by itself needs restart: \"no\" "
                            "or a dependant waiting with condition: service_completed_successfully)")
        return "fail", f"exited with code {container.exit_code}"
    if container.status == "created":
        return "fail", "created, never started"
    return "fail", state


def container_checks(ctx: PhaseContext, watch: ContainerWatch, timeout: float) -> list[Check]:
    """Every service of the compose model (those its active profiles enable, less those scaled
    to 0) has its containers, and each runs and is healthy, or ran to completion when the
    service is a one-shot job. Containers whose healthcheck still starts are waited for, up to
    ``timeout``, unless another check has already failed."""
    model = ctx.facts.model()
    expected = {name: replicas(spec) for name, spec in model.services.items()}
    expected = {name: count for name, count in expected.items() if count > 0 and ctx.facts.runs(name)}
    one_shots = one_shot_services(model)
    began = ctx.clock()
    announced = False
    while True:
        containers = watch.snapshot(fresh=True)
        checks: list[Check] = []
        waiting: list[str] = []
        for service, count in expected.items():
            own = [c for c in containers if c.service == service]
            if len(own) < count:
                have = f"{len(own)} of {count} containers" if own else "no container"
                checks.append(Check(f"service {service}", "fail", f"{have} (not created, or removed)"))
            for container in own:
                verdict, detail = _judge(container, service in one_shots)
                if verdict == "wait":
                    waiting.append(container.name)
                    verdict, detail = "fail", f"{detail} (still starting after {format_duration(timeout)})"
                checks.append(Check(f"container {container.name}", verdict, detail))
        failed = len([c for c in checks if c.result == "fail"]) > len(waiting)
        if not waiting or failed or ctx.clock() - began >= timeout:
            return checks
        text = f"containers: waiting for {', '.join(waiting)} (health: starting), " \
               f"{format_duration(ctx.clock() - began)} of {format_duration(timeout)}"
        if not announced:
            ctx.out(text)
            announced = True
        ctx.progress(text)
        ctx.cancel.sleep(min(CONTAINER_POLL, max(0.0, timeout - (ctx.clock() - began))))


def _tls_check(url: str, probe: ProbeSettings, warn_days: int) -> Check:
    name = f"TLS {urllib.parse.urlsplit(url).netloc}"
    try:
        expires = certificate_expiry(url, probe, probe.request_timeout)
    except (OSError, ValueError) as exc:
        return Check(name, "fail", f"cannot read the certificate: {exc}")
    left = expires - dt.datetime.now(dt.UTC)
    when = expires.strftime("%Y-%m-%d")
    if left.total_seconds() <= 0:
        return Check(name, "fail", f"expired on {when}")
    if left.days < warn_days:
        return Check(name, "warn", f"expires in {left.days} days ({when})")
    return Check(name, "pass", f"valid until {when} ({left.days} days)")


def summary_lines(checks: list[Check]) -> list[str]:
    width = max((len(c.name) for c in checks), default=5)
    lines = [f"{'check':<{width}}  result  detail"]
    lines += [f"{c.name:<{width}}  {c.result:<6}  {c.detail}" for c in checks]
    return lines


def verify(ctx: PhaseContext, running: RunningChecks | None = None) -> PhaseResult:
    """Every check against the running stack; ``running`` judges what runs (default: the
    containers of every service)."""
    began = ctx.clock()
    try:
        checks = run_checks(ctx, running)
    finally:
        ctx.host.unreach()
    for line in summary_lines(checks):
        ctx.out(line)
    for check in checks:
        if check.result == "warn":
            ctx.warn(f"{check.name}: {check.detail}")
    failed = [c for c in checks if c.result == "fail"]
    if failed:
        raise PhaseFailed(f"{len(failed)} of {len(checks)} checks failed: "
                          + "; ".join(f"{c.name}: {c.detail}" for c in failed))
    return done(f"{len(checks)} checks passed in {format_duration(ctx.clock() - began)}")
