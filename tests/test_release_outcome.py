"""A release whose deployment fails is `failed` (not `pending` forever); a resume that
succeeds makes it healthy; history shows the failed phase's duration, marked failed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import STACK_CONFIG, Project, migrate_command

pytestmark = pytest.mark.docker


def configure(stack: Project, *, healthy: bool, automatic: bool = True) -> None:
    config = STACK_CONFIG.format(name=stack.name, port=stack.port, command=migrate_command("echo migrated"))
    if not healthy:
        config = config.replace("'\"status\":\"healthy\"'", "'\"status\":\"broken\"'")
        config = config.replace('timeout = "30s"', 'timeout = "2s"')
    stack.write("surefoot.toml", config + f"\n[rollback]\nautomatic = {str(automatic).lower()}\n")


def history(stack: Project) -> dict[str, Any]:
    result = stack.run("history", "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def outcomes(stack: Project) -> dict[int, str]:
    return {r["id"]: r["outcome"] for r in history(stack)["releases"]}


def test_a_failed_first_release_is_failed_then_healthy_after_the_resume(stack: Project) -> None:
    configure(stack, healthy=False)
    failed = stack.run("deploy")
    assert failed.returncode == 1, failed.stdout + failed.stderr  # no earlier release: no rollback
    (release,) = history(stack)["releases"]
    assert release["outcome"] == "failed"
    assert "health-wait" in release["phases"] and release["failed_phases"] == ["health-wait"]
    assert "services-start" in release["phases"]
    text = stack.run("history").stdout
    assert "health-wait" in text and "(failed)" in text

    configure(stack, healthy=True)
    resumed = stack.run("deploy")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    (release,) = history(stack)["releases"]
    assert release["outcome"] == "healthy"
    assert release["failed_phases"] == []
    assert "(failed)" not in stack.run("history").stdout


def test_with_automatic_rollback_off_the_release_is_failed_and_stays_so(stack: Project) -> None:
    configure(stack, healthy=True, automatic=False)
    assert stack.run("deploy").returncode == 0
    configure(stack, healthy=False, automatic=False)
    failed = stack.run("deploy")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert outcomes(stack) == {2: "failed", 1: "healthy"}

    configure(stack, healthy=True, automatic=False)
    fresh = stack.run("deploy", "--fresh")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert outcomes(stack) == {3: "healthy", 2: "failed", 1: "healthy"}
