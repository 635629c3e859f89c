"""health-wait: N consecutive passes of the health URL, with no fixed sleep first."""

from __future__ import annotations

from surefoot.errors import PhaseFailed
from surefoot.health import ProbeResult, Streak, http_probe, run_gate
from surefoot.pipeline import PhaseContext, PhaseResult, done, skipped
from surefoot.units import format_duration


def wait(ctx: PhaseContext) -> PhaseResult:
    settings = ctx.settings.phases.health_wait
    if settings.url is None:
        return skipped("no health URL configured (phases.health-wait.url)")
    url = settings.url
    ctx.out(
        f"probing {url}: {settings.consecutive} consecutive passes of HTTP "
        f"{settings.expect_status}" + (f" with {settings.expect_body!r}" if settings.expect_body else "")
        + f", every {format_duration(settings.interval)}, for at most {format_duration(settings.timeout)}"
    )

    def probe() -> ProbeResult:
        ctx.cancel.check()
        return http_probe(url, settings.expect_status, settings.expect_body, settings.request_timeout)

    def report(streak: Streak, result: ProbeResult, elapsed: float) -> None:
        text = (
            f"{streak.passes}/{streak.required} passes, {format_duration(elapsed)} of "
            f"{format_duration(settings.timeout)}: {'pass' if result.ok else 'fail'}, {result.detail}"
        )
        ctx.out(text)
        ctx.progress(text)

    result = run_gate(
        probe,
        consecutive=settings.consecutive,
        interval=settings.interval,
        timeout=settings.timeout,
        clock=ctx.clock,
        sleep=ctx.cancel.sleep,
        report=report,
    )
    if not result.passed:
        for state in ctx.compose.ps():
            ctx.out(f"container {state.name} ({state.service}): {state.describe()}")
        detail = result.last.detail if result.last else "no probe ran"
        raise PhaseFailed(
            f"{url} did not pass {settings.consecutive} times in a row within "
            f"{format_duration(settings.timeout)} (last: {detail})"
        )
    return done(f"{settings.consecutive}/{settings.consecutive} passes in "
                f"{format_duration(result.elapsed)}")
