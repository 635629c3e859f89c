"""Pure logic: value parsers, compose arguments and output parsing, the streak, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from surefoot.compose import ComposeModel, Target, compose_args, normalize_image, parse_ps
from surefoot.health import ProbeResult, Streak, run_gate
from surefoot.secrets import MASK, Redactor, parse_env_text
from surefoot.units import format_duration, parse_duration


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
    target = Target("shop", Path("/srv/shop"), (Path("/srv/shop/a.yaml"), Path("/srv/shop/b.yaml")),
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


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_gate_passes_after_consecutive_passes_without_an_initial_sleep() -> None:
    clock = FakeClock()
    outcomes = iter([False, True, False, True, True, True])
    seen: list[tuple[int, float]] = []
    result = run_gate(
        lambda: ProbeResult(next(outcomes), ""),
        consecutive=3, interval=2.0, timeout=60, clock=clock, sleep=clock.sleep,
        report=lambda streak, probe, elapsed: seen.append((streak.passes, elapsed)),
    )
    assert result.passed
    assert result.attempts == 6
    assert seen[0] == (0, 0.0)  # the first probe goes out at once
    assert seen[-1] == (3, 10.0)


def test_gate_gives_up_at_its_timeout() -> None:
    clock = FakeClock()
    result = run_gate(
        lambda: ProbeResult(False, "connection refused"),
        consecutive=3, interval=2.0, timeout=9.0, clock=clock, sleep=clock.sleep,
        report=lambda *args: None,
    )
    assert not result.passed
    assert result.attempts == 5  # at 0, 2, 4, 6 and 8 seconds
    assert result.last == ProbeResult(False, "connection refused")


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
