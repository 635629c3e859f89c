"""Preflight checks: each driven to pass, warn and fail by its threshold."""

from __future__ import annotations

import datetime as dt
import socket

import pytest

from conftest import Project, migrate_command
from surefoot.base.units import parse_size
from surefoot.hosts.checks import (
    judge_clock,
    judge_cpus,
    judge_disk,
    judge_dns,
    judge_memory,
    judge_os,
    judge_ports,
    judge_registry,
    registry_host,
)

GIB = 1024**3


def test_memory_disk_and_cpus_against_their_thresholds() -> None:
    assert judge_memory(3 * GIB, 2 * GIB).result == "pass"
    assert judge_memory(2 * GIB, 2 * GIB).result == "pass"
    low = judge_memory(1 * GIB, 2 * GIB)
    assert low.result == "fail"
    assert low.line() == "memory: fail (1.0 GiB available; needs >= 2.0 GiB) - stop other services or add memory"
    assert judge_disk(20 * GIB, 10 * GIB, "/").result == "pass"
    assert judge_disk(9 * GIB, 10 * GIB, "/").result == "fail"
    assert judge_cpus(4, 2).result == "pass"
    assert judge_cpus(1, 2).result == "warn"  # few CPUs are slow, not broken


def test_operating_systems() -> None:
    assert judge_os("debian", "12").result == "pass"
    assert judge_os("ubuntu", "22.04").result == "pass"
    assert judge_os("ubuntu", "18.04").result == "fail"
    assert judge_os("debian", "10").result == "fail"
    assert judge_os("alpine", "3.19").result == "fail"
    assert judge_os("", "").result == "fail"


def test_clock() -> None:
    now = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    assert judge_clock(now, now + dt.timedelta(seconds=5), 60).result == "pass"
    assert judge_clock(now, now + dt.timedelta(seconds=300), 60).result == "warn"
    assert judge_clock(dt.datetime(1970, 1, 1, tzinfo=dt.UTC), None, 60).result == "fail"


def test_ports() -> None:
    wanted = [("127.0.0.1", 8080), ("", 443)]
    assert judge_ports(wanted, set(), set()).result == "pass"
    assert judge_ports(wanted, {("127.0.0.1", 8080)}, {8080}).result == "pass"  # held by our own container
    taken = judge_ports(wanted, {("", 443)}, {8080})
    assert taken.result == "fail" and "*:443" in taken.measured


def test_dns() -> None:
    assert judge_dns("shop.example.com", ["203.0.113.7"], "203.0.113.7", False).result == "pass"
    assert judge_dns("shop.example.com", ["203.0.113.7"], None, False).result == "warn"  # address unknown
    assert judge_dns("shop.example.com", None, "203.0.113.7", False).result == "fail"
    # A different address: wrong for a server with a public address of its own; behind NAT (private
    # addresses only) the router may forward the record's address to it, so a warning.
    assert judge_dns("shop.example.com", ["203.0.113.7"], "198.51.100.1", False).result == "fail"
    behind = judge_dns("shop.example.com", ["203.0.113.7"], "198.51.100.1", True)
    assert behind.result == "warn" and "behind NAT" in behind.advice


def test_registry() -> None:
    assert judge_registry("registry-1.docker.io", 401, None).result == "pass"
    assert judge_registry("registry-1.docker.io", 503, None).result == "warn"
    assert judge_registry("registry-1.docker.io", None, "no such host").result == "fail"
    assert registry_host("postgres:16") == "registry-1.docker.io"
    assert registry_host("ghcr.io/acme/api:1") == "ghcr.io"
    assert registry_host("localhost:5000/api") == "localhost:5000"
    assert registry_host("acme/api") == "registry-1.docker.io"


@pytest.mark.parametrize(("text", "size"), [("2GiB", 2 * GIB), ("512MB", 512 * 1024**2), ("10g", 10 * GIB),
                                            ("1.5k", 1536), (4096, 4096), ("100", 100)])
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.docker
def test_a_failing_check_stops_preflight_and_can_be_skipped(stack: Project) -> None:
    stack.configure(migrate_command("true"), "")
    config = (stack.path / "surefoot.toml").read_text().replace(
        "[phases.pull-images]", '[phases.preflight]\nmin_memory = "100TiB"\n\n[phases.pull-images]'
    )
    stack.write("surefoot.toml", config)
    failed = stack.run("deploy")
    assert failed.returncode == 1
    assert "memory: fail" in failed.stdout
    assert "1 check(s) failed: memory:" in failed.stderr
    skipped = stack.run("deploy", "--skip-check", "memory")
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "memory: skipped (--skip-check)" in skipped.stdout


@pytest.mark.docker
@pytest.mark.reliability
def test_a_port_taken_by_another_process_fails_preflight(stack: Project) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", stack.port))
        squatter.listen()
        result = stack.run("deploy")
    assert result.returncode == 1
    assert f"ports: fail (in use by another process: 127.0.0.1:{stack.port}" in result.stdout
    # Once it is free, the deployment resumes; our own containers holding it later are fine.
    assert stack.run("deploy").returncode == 0
    again = stack.run("deploy")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ports: pass" in again.stdout
