"""Bad input: property-based tests of the configuration loader and every value parser,
and values full of shell syntax that must reach the containers literally."""

from __future__ import annotations

import string
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import Project
from surefoot.base.errors import ConfigError
from surefoot.base.secrets import parse_env_text
from surefoot.base.units import parse_duration, parse_size
from surefoot.cli.app import parse_assignment
from surefoot.config.configure import env_line
from surefoot.config.settings import load_settings

pytestmark = pytest.mark.reliability
EXAMPLES = 300


@settings(max_examples=EXAMPLES)
@given(st.one_of(st.text(max_size=30), st.integers(), st.floats(), st.booleans(), st.none(), st.lists(st.integers())))
def test_parse_duration_returns_seconds_or_a_value_error(value: object) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        assert str(exc)
    else:
        assert seconds >= 0 and seconds != float("inf")


@settings(max_examples=EXAMPLES)
@given(st.integers(0, 10**6), st.sampled_from(["ms", "s", "m", "h"]))
def test_durations_round_trip(amount: int, unit: str) -> None:
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    assert parse_duration(f"{amount}{unit}") == pytest.approx(amount * factor)


@settings(max_examples=EXAMPLES)
@given(st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=False), st.booleans(), st.none()))
def test_parse_size_returns_bytes_or_a_value_error(value: object) -> None:
    try:
        size = parse_size(value)
    except (ValueError, OverflowError) as exc:
        assert str(exc) or isinstance(exc, OverflowError)
    else:
        assert size >= 0


@settings(max_examples=EXAMPLES)
@given(st.integers(0, 2**40), st.sampled_from(["", "k", "K", "m", "MB", "g", "GiB", "t"]))
def test_sizes_scale_by_1024(amount: int, unit: str) -> None:
    power = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit[:1].lower()]
    assert parse_size(f"{amount}{unit}") == amount * 1024**power


@settings(max_examples=EXAMPLES)
@given(st.text(alphabet=string.ascii_letters + "_", min_size=1, max_size=10), st.text(max_size=40))
def test_key_value_keeps_everything_after_the_first_equals(key: str, value: str) -> None:
    assert parse_assignment(f"{key}={value}") == (key, value)


@settings(max_examples=EXAMPLES)
@given(st.text(max_size=30))
def test_key_value_without_a_valid_key_is_a_usage_error(text: str) -> None:
    key, sep, _ = text.partition("=")
    valid = bool(sep) and key and (key[0].isalpha() or key[0] == "_") and all(
        c.isascii() and (c.isalnum() or c == "_") for c in key)
    if valid:
        return
    with pytest.raises(click.BadParameter):
        parse_assignment(text)


@settings(max_examples=EXAMPLES)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=60))
@example("p$ss w\"rd;`x`$(id) it's \\ naïve")
def test_env_lines_round_trip(value: str) -> None:
    assert parse_env_text(env_line("KEY", value))["KEY"] == value


@settings(max_examples=EXAMPLES)
@given(st.integers(-5, 70000))
def test_ports_in_probes(port: int) -> None:
    from pydantic import ValidationError

    from surefoot.config.probes import ProbeSettings

    try:
        probe = ProbeSettings(port=port)
    except ValidationError:
        assert not 1 <= port <= 65535
    else:
        assert probe.port == port and 1 <= port <= 65535


toml_values = st.recursive(
    st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=20),
              st.floats(allow_nan=False, allow_infinity=False)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.sampled_from(["name", "url", "services", "enabled", "timeout",
                                                                "interval", "consecutive", "x", "phases",
                                                                "project", "health-wait", "command"]),
                                               children, max_size=4)),
    max_leaves=12,
)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode().replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + "}"


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["project", "phases", "rollback", "hooks", "notifications", "x"]),
                       toml_values, max_size=3))
def test_the_loader_accepts_or_explains_any_document(tmp_path: Path, document: dict[str, object]) -> None:
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    text = "\n".join(f'"{key}" = {_toml(value)}' for key, value in document.items())
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return  # our tiny TOML writer made something TOML rejects; not the loader's business
    (tmp_path / "surefoot.toml").write_text(text)
    try:
        load_settings(tmp_path)
    except ConfigError as exc:
        assert str(tmp_path / "surefoot.toml") in str(exc) or "compose" in str(exc)


def test_unknown_commands_and_flags_exit_2(tmp_path: Path) -> None:
    for args in (["frobnicate"], ["deploy", "--frobnicate"], ["status", "--xml"], ["--bogus", "status"],
                 ["rollback", "not-a-number"], ["deploy", "--skip-check", "nonsense"]):
        result = subprocess.run([sys.executable, "-m", "surefoot", "-C", str(tmp_path), *args],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr


TRICKY = {
    "DOLLAR": "pa$$word$HOME${PATH}",
    "QUOTES": "it's \"double\" and 'single'",
    "SPACES": "  leading and trailing  ",
    "SEMICOLON": "a; rm -rf / ; b",
    "SUBSHELL": "$(touch /tmp/pwned)",
    "BACKTICKS": "`touch /tmp/pwned`",
    "BACKSLASH": "C:\\path\\to\\n",
    "UNICODE": "naïve café ✓ 日本語 🚀",
}


@pytest.mark.docker
def test_values_reach_the_containers_literally(stack: Project) -> None:
    environment = "\n".join(f"      {key}: ${{{key}}}" for key in TRICKY)
    compose = (stack.path / "compose.yaml").read_text().replace(
        "      GREETING: ${GREETING:?set GREETING}", f"      GREETING: ${{GREETING:?set GREETING}}\n{environment}")
    stack.write("compose.yaml", compose)
    stack.write(".env", "GREETING=hello\n" + "\n".join(env_line(k, v) for k, v in TRICKY.items()) + "\n")
    result = stack.run("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    for key, value in TRICKY.items():
        echoed = stack.compose("exec", "-T", "web", "sh", "-c", f'printf %s "${key}"')
        assert echoed == value, key
    assert not Path("/tmp/pwned").exists()
