"""Health probes and the gate that runs them.

A gate runs one or more probes side by side. Each probe must pass
``consecutive`` times in a row (a failure resets its streak), after an optional
start ``grace``, within its ``timeout``; a ``failure_limit`` of consecutive
failures ends it early, or (``answer_limit``) a limit of consecutive wrong answers: failures
in which the service answered (an HTTP status other than 502, 503 or 504, a body that does not
match), while a service not answering yet is still starting. A probe may also end its gate at
once on a permanent failure (``stop_on_permanent``: an untrusted TLS certificate). A watch
(the containers' state) can end the whole gate at once: a container that exits, restarts or
turns unhealthy will not get better by waiting.

The gate is pure logic driven by a clock and a sleep passed in, so its timing is
testable without waiting. The probes are small functions returning a
:class:`ProbeResult`.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str  # "HTTP 200, body matched" / "connection refused" / ...
    answered: bool = False  # a failure in which the service answered, wrongly (HTTP 500, a wrong body)
    permanent: bool = False  # a failure that waiting will not cure (an untrusted TLS certificate)


@dataclass
class Streak:
    """Counts consecutive passes and consecutive failures; each resets the other."""

    required: int
    passes: int = 0
    failures: int = 0
    attempts: int = 0
    wrong_answers: int = 0  # the failures since the last pass in which the service answered

    def record(self, ok: bool, answered: bool = False) -> bool:
        """Record one probe; True once ``required`` consecutive passes are in."""
        self.attempts += 1
        if ok:
            self.passes += 1
            self.failures = 0
            self.wrong_answers = 0
        else:
            self.passes = 0
            self.failures += 1
            self.wrong_answers += answered
        return self.done

    @property
    def done(self) -> bool:
        return self.passes >= self.required


@dataclass(frozen=True)
class Probe:
    name: str
    check: Callable[[], ProbeResult]
    consecutive: int = 3
    interval: float = 2.0
    timeout: float = 120.0
    grace: float = 0.0
    failure_limit: int | None = None  # consecutive failures of any kind; None: no such limit
    answer_limit: int | None = None  # wrong answers since the last pass; None: no such limit
    stop_on_permanent: bool = False  # a permanent failure (ProbeResult.permanent) ends the gate at once
    on_events: bool = False  # also checked at once when the engine reports a change (see ``sleep``)


@dataclass
class ProbeRun:
    """One probe's progress through a gate."""

    probe: Probe
    next_due: float
    streak: Streak
    last: ProbeResult | None = None
    elapsed: float = 0.0
    passed: bool = False

    def describe(self) -> str:
        p = self.probe
        from surefoot.base.units import format_duration

        text = (f"{p.name}: {self.streak.passes}/{p.consecutive} passes, "
                f"{format_duration(self.elapsed)} of {format_duration(p.timeout)}")
        if self.last is not None:
            text += f" ({'pass' if self.last.ok else 'fail'}: {self.last.detail})"
        return text


@dataclass(frozen=True)
class GateResult:
    passed: bool
    elapsed: float
    reason: str | None = None  # why it failed
    service: str | None = None  # the container the watch caught, if any
    runs: tuple[ProbeRun, ...] = field(default=())


@dataclass(frozen=True)
class WatchAlarm:
    service: str
    description: str


def run_gate(
    probes: Sequence[Probe],
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], bool | None],
    report: Callable[[ProbeRun], None],
    watch: Callable[[], WatchAlarm | None] | None = None,
    watch_interval: float = 1.0,
) -> GateResult:
    """Run every probe until all pass, one fails, or the watch raises an alarm.

    The first probe goes out at once (after its grace): there is no fixed sleep.
    ``sleep`` returns True when it was cut short by news from the engine (a container
    started, died or changed health): the watch and the ``on_events`` probes then look
    at once instead of at their next interval.
    """
    start = clock()
    runs = [ProbeRun(p, start + p.grace, Streak(p.consecutive)) for p in probes]
    next_watch = start

    def failed(reason: str, service: str | None = None) -> GateResult:
        return GateResult(False, clock() - start, reason, service, tuple(runs))

    while True:
        for run in runs:
            if run.passed or run.next_due > clock():
                continue
            began = clock()
            run.last = run.probe.check()
            run.elapsed = clock() - start
            run.passed = run.streak.record(run.last.ok, run.last.answered)
            report(run)
            probe = run.probe
            if run.passed:
                continue
            if probe.stop_on_permanent and run.last.permanent:
                return failed(f"{probe.name}: {run.last.detail}")
            if probe.failure_limit is not None and run.streak.failures >= probe.failure_limit:
                return failed(
                    f"{probe.name}: {run.streak.failures} consecutive failures "
                    f"(limit {probe.failure_limit}), last: {run.last.detail}"
                )
            if probe.answer_limit is not None and run.streak.wrong_answers >= probe.answer_limit:
                return failed(
                    f"{probe.name}: {run.streak.wrong_answers} wrong answers in a row "
                    f"(limit {probe.answer_limit}), last: {run.last.detail}"
                )
            run.next_due = began + probe.interval
            if run.next_due - start > probe.timeout:
                return failed(
                    f"{probe.name}: {probe.consecutive} passes in a row not reached within "
                    f"{probe.timeout:g}s, last: {run.last.detail}"
                )
        if all(run.passed for run in runs):
            return GateResult(True, clock() - start, None, None, tuple(runs))
        # The watch looks after the probes: a gate whose probes pass at once need not wait for it.
        now = clock()
        if watch is not None and now >= next_watch:
            alarm = watch()
            if alarm is not None:
                return failed(f"{alarm.service} {alarm.description}", alarm.service)
            next_watch = now + watch_interval
        wake = min(run.next_due for run in runs if not run.passed)
        if watch is not None:
            wake = min(wake, next_watch)
        if sleep(max(0.0, wake - clock())):
            now = clock()
            next_watch = now
            for run in runs:
                if run.probe.on_events and not run.passed:
                    run.next_due = max(min(run.next_due, now), start + run.probe.grace)


# -- probes -------------------------------------------------------------------------

STARTING_STATUSES = (502, 503, 504)  # HTTP statuses that mean "not ready yet", not "broken"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def tls_context(insecure: bool = False, ca_file: str | None = None) -> ssl.SSLContext:
    """The default verification; or trust ``ca_file`` too; or (``insecure``) accept any certificate."""
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=ca_file)


def json_field(document: Any, path: str) -> Any:
    """``a.b.0.c`` in parsed JSON; KeyError when absent."""
    value = document
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise KeyError(path)
    return value


def http_probe(
    url: str,
    expect_status: int | tuple[int, int] = 200,
    expect_body: str | None = None,
    timeout: float = 5.0,
    *,
    expect_json: dict[str, Any] | None = None,
    context: ssl.SSLContext | None = None,
) -> ProbeResult:
    """GET ``url``: a pass is the expected status, body substring and JSON field values."""
    request = urllib.request.Request(url, headers={"User-Agent": "surefoot-health"})
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout) as response:
            status, body = response.status, response.read(65536)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(65536) if exc.fp else b""
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLCertVerificationError):
            return ProbeResult(False, f"TLS certificate not trusted: {reason.verify_message}", permanent=True)
        if isinstance(reason, socket.timeout | TimeoutError):
            return ProbeResult(False, f"no answer within {timeout:g}s")
        return ProbeResult(False, str(reason) or type(reason).__name__)
    text = body.decode("utf-8", "replace")
    # A gateway's 502/504 or a 503 means "not ready yet" (a proxy whose upstream still starts);
    # any other wrong answer comes from a service that runs and answers wrongly.
    answered = status not in STARTING_STATUSES
    low, high = expect_status if isinstance(expect_status, tuple) else (expect_status, expect_status)
    if not low <= status <= high:
        expected = str(low) if low == high else f"{low}-{high}"
        return ProbeResult(False, f"HTTP {status}, expected {expected}: {_snippet(text)}", answered)
    if expect_body is not None and expect_body not in text:
        return ProbeResult(False, f"HTTP {status}, body lacks {expect_body!r}: {_snippet(text)}", answered)
    if expect_json:
        try:
            document = json.loads(text)
        except ValueError:
            return ProbeResult(False, f"HTTP {status}, body is not JSON: {_snippet(text)}", answered)
        for path, expected in expect_json.items():
            try:
                actual = json_field(document, path)
            except KeyError:
                return ProbeResult(False, f"HTTP {status}, no field {path!r} in {_snippet(text)}", answered)
            if actual != expected:
                return ProbeResult(False, f"HTTP {status}, {path} is {actual!r}, expected {expected!r}",
                                   answered)
    return ProbeResult(True, f"HTTP {status}" + (", body matched" if expect_body or expect_json else ""))


PROXY_CLOSE_WAIT = 0.25  # seconds a proxied connection is watched for the other end closing it


def tcp_probe(host: str, port: int, timeout: float = 5.0, *, proxied: bool = False) -> ProbeResult:
    """Connect to ``host:port``. ``proxied``: Docker's proxy stands before the port; it accepts
    every connection and closes it at once when nothing listens in the container, so a
    connection closed within ``PROXY_CLOSE_WAIT`` without a word is a failure."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            if proxied:
                connection.settimeout(PROXY_CLOSE_WAIT)
                try:
                    if connection.recv(1, socket.MSG_PEEK) == b"":
                        return ProbeResult(False, f"{host}:{port}: the connection was closed at once "
                                                  "(Docker's proxy, with nothing listening in the container)")
                except TimeoutError:
                    pass  # open and quiet: the service waits for the client to speak first
            return ProbeResult(True, f"{host}:{port} accepts connections")
    except OSError as exc:
        return ProbeResult(False, f"{host}:{port}: {exc.strerror or exc}")


def _snippet(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
