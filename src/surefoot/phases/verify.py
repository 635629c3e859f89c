"""verify: the configured URLs pass N times in a row, TLS certificates are not about to
expire, and every service's containers run and are healthy. Ends with a summary table."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import tempfile
import urllib.parse
from dataclasses import dataclass

from surefoot.config import ProbeSettings
from surefoot.errors import PhaseFailed
from surefoot.gates import build_probe
from surefoot.health import run_gate, tls_context
from surefoot.pipeline import PhaseContext, PhaseResult, done
from surefoot.units import format_duration
from surefoot.watch import ContainerWatch


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


def run_checks(ctx: PhaseContext) -> list[Check]:
    settings = ctx.settings.phases.verify
    watch = ContainerWatch(ctx.compose)
    checks: list[Check] = []
    for probe_settings in settings.urls:
        probe = build_probe(probe_settings, ctx, watch)
        result = run_gate([probe], clock=ctx.clock, sleep=ctx.cancel.sleep,
                          report=lambda run: ctx.out(run.describe()))
        run = result.runs[0]
        detail = run.last.detail if run.last else ""
        if result.passed:
            passes = f"{probe.consecutive}/{probe.consecutive} passes"
            checks.append(Check(probe.name, "pass", f"{passes}: {detail}"))
        else:
            checks.append(Check(probe.name, "fail", result.reason or detail))
        url = probe_settings.url or ""
        if url.startswith("https://"):
            checks.append(_tls_check(url, probe_settings, settings.tls_warn_days))
    if settings.containers:
        for container in watch.snapshot(fresh=True):
            state = container.status + (f", {container.health}" if container.health else "")
            checks.append(Check(f"container {container.name}", "pass" if container.ready else "fail", state))
    return checks


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


def verify(ctx: PhaseContext) -> PhaseResult:
    began = ctx.clock()
    checks = run_checks(ctx)
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
