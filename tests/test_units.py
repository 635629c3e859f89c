"""Pure logic: value parsers, compose arguments and output parsing, the streak, redaction."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from surefoot.base.secrets import MASK, Redactor, parse_env_text
from surefoot.base.units import format_duration, parse_duration
from surefoot.deploy.gates.probes import (
    GateResult,
    Probe,
    ProbeResult,
    Streak,
    WatchAlarm,
    json_field,
    run_gate,
)
from surefoot.deploy.gates.watch import ContainerHealth, alarm_for, parse_inspect
from surefoot.deploy.releases import ReleaseKeeper, pin_tag, pins_yaml
from surefoot.engines.compose.argv import ComposeProject, compose_args
from surefoot.engines.compose.model import ComposeModel, normalize_image, parse_ps
from surefoot.store import Release


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2s", 2), ("500ms", 0.5), ("1m30s", 90), ("2h", 7200), ("1.5s", 1.5), (3, 3), ("10", 10), (" 5m ", 300)],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "2x", "1m30", "-1s", "2s3", True, None, [1]])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(0.42) == "0.4s"
    assert format_duration(42) == "42s"
    assert format_duration(185) == "3m05s"
    assert format_duration(3720) == "1h02m"


def test_compose_args_always_carry_project_files_and_env() -> None:
    target = ComposeProject("shop", Path("/srv/shop"), (Path("/srv/shop/a.yaml"), Path("/srv/shop/b.yaml")),
                    Path("/srv/shop/.env"))
    assert compose_args(target, "up", "--detach") == [
        "docker", "compose", "--ansi", "never", "--progress", "plain",
        "--project-name", "shop", "--project-directory", "/srv/shop",
        "--file", "/srv/shop/a.yaml", "--file", "/srv/shop/b.yaml",
        "--env-file", "/srv/shop/.env", "up", "--detach",
    ]


def test_parse_ps_reads_one_object_per_line_and_arrays() -> None:
    lines = (
        '{"Name":"shop-db-1","Service":"db","State":"running","Health":"healthy","ExitCode":0}\n'
        '{"Name":"shop-api-1","Service":"api","State":"exited","Health":"","ExitCode":3}\n'
    )
    states = parse_ps(lines)
    assert [(s.service, s.ready, s.broken) for s in states] == [("db", True, False), ("api", False, True)]
    assert states[1].describe() == "exited with code 3"
    array = '[{"Name":"x","Service":"cache","State":"running","Health":"starting","ExitCode":0}]'
    (cache,) = parse_ps(array)
    assert not cache.ready and not cache.broken
    assert parse_ps("") == []


def test_compose_model_names_images_and_digests_canonically() -> None:
    text = '{"services": {"api": {"build": {"context": "/srv/api"}}, "db": {"image": "postgres:16"}}}'
    model = ComposeModel.from_json("shop", text)
    assert model.build_services() == ["api"]
    assert model.image_name("api") == "shop-api"
    assert model.image_name("db") == "postgres:16"
    assert model.build_context("api") == Path("/srv/api")
    reordered = '{"services": {"db": {"image": "postgres:16"}, "api": {"build": {"context": "/srv/api"}}}}'
    assert ComposeModel.from_json("shop", reordered).digest == model.digest
    assert normalize_image("redis") == "redis:latest"
    assert normalize_image("registry:5000/redis") == "registry:5000/redis:latest"
    assert normalize_image("redis:7") == "redis:7"


def test_streak_resets_on_failure() -> None:
    streak = Streak(3)
    assert [streak.record(ok) for ok in (True, True, False, True, True, True)] == [
        False, False, False, False, False, True
    ]
    assert streak.attempts == 6
    assert streak.failures == 0


def test_streak_counts_consecutive_failures() -> None:
    streak = Streak(2)
    for ok in (False, False, True, False):
        streak.record(ok)
    assert (streak.passes, streak.failures) == (0, 1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def scripted(outcomes: list[bool]) -> Callable[[], ProbeResult]:
    values = iter(outcomes)
    return lambda: ProbeResult(next(values), "scripted")


def gate(clock: FakeClock, *probes: Probe, **kwargs: Any) -> tuple[GateResult, list[tuple[str, int, float]]]:
    seen: list[tuple[str, int, float]] = []
    result = run_gate(probes, clock=clock, sleep=clock.sleep,
                      report=lambda run: seen.append((run.probe.name, run.streak.passes, run.elapsed)),
                      **kwargs)
    return result, seen


def test_gate_passes_after_consecutive_passes_without_an_initial_sleep() -> None:
    clock = FakeClock()
    probe = Probe("api", scripted([False, True, False, True, True, True]), consecutive=3, interval=2.0,
                  timeout=60)
    result, seen = gate(clock, probe)
    assert result.passed
    assert seen[0] == ("api", 0, 0.0)  # the first probe goes out at once
    assert seen[-1] == ("api", 3, 10.0)
    assert len(seen) == 6


def test_gate_gives_up_at_its_timeout() -> None:
    clock = FakeClock()
    probe = Probe("api", lambda: ProbeResult(False, "connection refused"), consecutive=3, interval=2.0,
                  timeout=9.0)
    result, seen = gate(clock, probe)
    assert not result.passed
    assert len(seen) == 5  # at 0, 2, 4, 6 and 8 seconds
    assert result.reason == "api: 3 passes in a row not reached within 9s, last: connection refused"


def test_one_failure_in_five_passes_with_a_failure_limit_of_two() -> None:
    clock = FakeClock()
    pattern = [True, True, False, True, True, True, True]  # a blip, then a clean streak
    probe = Probe("api", scripted(pattern), consecutive=3, interval=1.0, timeout=60, failure_limit=2)
    result, _ = gate(clock, probe)
    assert result.passed


def test_a_failure_limit_ends_the_gate_early() -> None:
    clock = FakeClock()
    probe = Probe("api", scripted([True, False, False, True]), consecutive=3, interval=1.0, timeout=60,
                  failure_limit=2)
    result, seen = gate(clock, probe)
    assert not result.passed
    assert len(seen) == 3
    assert result.reason is not None and "2 consecutive failures (limit 2)" in result.reason


def test_grace_delays_the_first_probe_and_probes_run_side_by_side() -> None:
    clock = FakeClock()
    slow = Probe("db", scripted([True] * 3), consecutive=3, interval=1.0, timeout=60, grace=5.0)
    fast = Probe("api", scripted([True] * 3), consecutive=3, interval=1.0, timeout=60)
    result, seen = gate(clock, slow, fast)
    assert result.passed
    assert [name for name, _, _ in seen] == ["api", "api", "api", "db", "db", "db"]
    assert seen[3][2] == 5.0
    assert result.elapsed == 7.0


def test_the_watch_ends_the_gate_at_once() -> None:
    clock = FakeClock()
    alarms = iter([None, None, WatchAlarm("api", "exited with code 1")])
    probe = Probe("api", lambda: ProbeResult(False, "refused"), consecutive=3, interval=1.0, timeout=120)
    result, _ = gate(clock, probe, watch=lambda: next(alarms), watch_interval=1.0)
    assert not result.passed
    assert result.service == "api"
    assert result.elapsed == 2.0  # a small fraction of the 120 s timeout
    assert result.reason == "api exited with code 1"


def test_news_from_the_engine_wakes_event_probes_and_the_watch_at_once() -> None:
    """An event (sleep returns True) cuts the wait short: the on_events probe and the watch
    look at once; a plain interval probe keeps its spacing."""
    clock = FakeClock()
    event_at = 0.3  # the engine reports a change 0.3 s into the first wait

    def sleep(seconds: float) -> bool:
        if clock.now < event_at <= clock.now + seconds:
            clock.now = event_at
            return True
        clock.now += seconds
        return False

    looks: list[float] = []

    def watch() -> WatchAlarm | None:
        looks.append(clock.now)
        return None

    database = Probe("db", scripted([False, True]), consecutive=1, interval=2.0, timeout=60, on_events=True)
    api = Probe("api", scripted([False, True]), consecutive=1, interval=2.0, timeout=60)
    seen: list[tuple[str, float]] = []
    result = run_gate([database, api], clock=clock, sleep=sleep, watch=watch, watch_interval=5.0,
                      report=lambda run: seen.append((run.probe.name, clock.now)))
    assert result.passed
    assert seen == [("db", 0.0), ("api", 0.0), ("db", 0.3), ("api", 2.0)]
    assert looks[:2] == [0.0, 0.3]  # the watch too, not at its 5 s interval


def test_container_alarms() -> None:
    base = ContainerHealth("api", "shop-api-1", "running", "healthy", 0, 0, False)
    assert alarm_for(base, 0) is None
    assert alarm_for(replace(base, status="exited", exit_code=3), 0) == "exited with code 3"
    assert alarm_for(replace(base, status="exited", exit_code=0), 0) is None  # a finished job
    assert alarm_for(replace(base, restarts=2), 0) == "restarted 2 time(s) during the wait"
    assert alarm_for(replace(base, health="unhealthy"), 0) == "turned unhealthy (its compose healthcheck fails)"
    assert alarm_for(replace(base, oom_killed=True), 0) == "was killed for lack of memory (OOM)"
    assert alarm_for(replace(base, status="restarting", exit_code=1), 0) == "is restarting (last exit code 1)"


def test_parse_inspect_skips_one_off_containers() -> None:
    items = [
        {"Name": "/shop-api-1", "RestartCount": 1,
         "State": {"Status": "running", "Health": {"Status": "starting"}, "OOMKilled": False},
         "Config": {"Labels": {"com.docker.compose.service": "api"}}},
        {"Name": "/shop-api-run-1", "State": {"Status": "exited", "ExitCode": 1},
         "Config": {"Labels": {"com.docker.compose.service": "api", "com.docker.compose.oneoff": "True"}}},
    ]
    (only,) = parse_inspect(items)
    assert (only.name, only.health, only.restarts, only.ready) == ("shop-api-1", "starting", 1, False)


def test_json_fields() -> None:
    document = {"status": "healthy", "checks": [{"ok": True}]}
    assert json_field(document, "status") == "healthy"
    assert json_field(document, "checks.0.ok") is True
    with pytest.raises(KeyError):
        json_field(document, "checks.1.ok")


def test_env_parsing_and_redaction(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "# comment\nexport DB_PASSWORD='s3cr$t-value'\nAPI_TOKEN=\"tok-123456\"\nHTTP_PORT=8080\nNAME=shop\n"
    )
    assert parse_env_text(env.read_text())["DB_PASSWORD"] == "s3cr$t-value"
    redact = Redactor.from_env_file(env)
    assert redact("connecting with s3cr$t-value and tok-123456 on 8080") == (
        f"connecting with {MASK} and {MASK} on 8080"
    )
    assert redact("shop") == "shop"


def release(number: int, outcome: str) -> Release:
    return Release(number, "shop", "", outcome, None, {}, {"web": f"t:r{number}"}, "", "", None, "", None)


def test_kept_releases() -> None:
    history = [release(n, "healthy") for n in range(6, 0, -1)]
    assert ReleaseKeeper.kept_releases(history, 5, current=6, running=7) == {3, 4, 5, 6, 7}
    # A rollback made release 2 current: it is kept whatever its age.
    assert ReleaseKeeper.kept_releases(history, 2, current=2, running=7) == {2, 6, 7}
    # Failed and rolled-back releases are not worth keeping.
    mixed = [release(3, "rolled-back"), release(2, "healthy"), release(1, "failed")]
    assert ReleaseKeeper.kept_releases(mixed, 5, current=2, running=4) == {2, 4}


def test_pins_override_is_compose_yaml() -> None:
    text = pins_yaml({"web": "surefoot.local/shop/web:r3"})
    assert json.loads(text) == {"services": {"web": {"image": "surefoot.local/shop/web:r3", "pull_policy": "never"}}}
    assert pin_tag("shop", "Web_API", 3) == "surefoot.local/shop/web_api:r3"
