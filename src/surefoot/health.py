"""Health probes and the consecutive-pass gate.

The gate is pure logic (:class:`Streak`) driven by a loop that takes its clock
and its sleep as parameters, so its timing is testable without a real clock.
"""

from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str  # "200, body matched" / "connection refused" / ...


@dataclass
class Streak:
    """Counts consecutive passes; any failure resets the count."""

    required: int
    passes: int = 0
    attempts: int = 0

    def record(self, ok: bool) -> bool:
        """Record one probe; True once ``required`` consecutive passes are in."""
        self.attempts += 1
        self.passes = self.passes + 1 if ok else 0
        return self.passes >= self.required

    @property
    def done(self) -> bool:
        return self.passes >= self.required


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def http_probe(
    url: str, expect_status: int, expect_body: str | None, timeout: float
) -> ProbeResult:
    """GET ``url``: a pass is the expected status with the expected substring in the body."""
    request = urllib.request.Request(url, headers={"User-Agent": "surefoot-health"})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status, body = response.status, response.read(65536)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(65536) if exc.fp else b""
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, socket.timeout | TimeoutError):
            return ProbeResult(False, f"no answer within {timeout:g}s")
        return ProbeResult(False, str(reason) or type(reason).__name__)
    text = body.decode("utf-8", "replace")
    if status != expect_status:
        return ProbeResult(False, f"HTTP {status}, expected {expect_status}: {_snippet(text)}")
    if expect_body is not None and expect_body not in text:
        return ProbeResult(False, f"HTTP {status}, body lacks {expect_body!r}: {_snippet(text)}")
    return ProbeResult(True, f"HTTP {status}" + (", body matched" if expect_body else ""))


def _snippet(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class GateResult:
    passed: bool
    attempts: int
    elapsed: float
    last: ProbeResult | None


def run_gate(
    probe: Callable[[], ProbeResult],
    *,
    consecutive: int,
    interval: float,
    timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    report: Callable[[Streak, ProbeResult, float], None],
) -> GateResult:
    """Probe until ``consecutive`` passes in a row, or until ``timeout`` has passed.

    Passes are spaced by ``interval``; a failure is retried after ``interval`` too.
    The first probe goes out at once: no fixed sleep before the gate.
    """
    streak = Streak(consecutive)
    start = clock()
    last: ProbeResult | None = None
    while True:
        began = clock()
        last = probe()
        elapsed = clock() - start
        report_done = streak.record(last.ok)
        report(streak, last, elapsed)
        if report_done:
            return GateResult(True, streak.attempts, elapsed, last)
        next_at = began + interval
        if next_at - start > timeout:
            return GateResult(False, streak.attempts, elapsed, last)
        sleep(max(0.0, next_at - clock()))
