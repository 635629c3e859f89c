"""preflight, prerequisites and configuration on a FakeHost and a FakeEngine: what each
measures through the host, how it judges, and what it would change. No engine needed."""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from fake_host import (
    DEBIAN,
    MEMINFO,
    TCP_HEADER,
    FakeHost,
    FakePrompter,
    QuickCancel,
    make_context,
    tcp_listen,
)
from fakes import FakeEngine, Script
from surefoot.base.errors import ConfigError, PhaseFailed
from surefoot.base.secrets import parse_env_text
from surefoot.deploy.phases.configuration import configuration
from surefoot.deploy.phases.preflight import preflight
from surefoot.deploy.phases.prerequisites import DPKG_LOCK, prerequisites
from surefoot.hosts import checks, prereqs
from surefoot.hosts.access import Access
from surefoot.hosts.local import LocalHost
from surefoot.proc import CancelToken, ProcessRunner

GIB = 1024**3


def healthy_host(**kwargs: object) -> FakeHost:
    host = FakeHost(files={"/proc/meminfo": MEMINFO, "/etc/os-release": DEBIAN,
                           "/proc/net/tcp": TCP_HEADER, "/proc/net/tcp6": TCP_HEADER}, **kwargs)  # type: ignore[arg-type]
    host.answer(["df", "-B1", "--output=avail", "/"], f"Avail\n{50 * GIB}\n")
    host.answer(["nproc"], "4\n")
    return host


# -- parsers of what the host answers ---------------------------------------------------
def test_the_parsers_of_the_host_answers() -> None:
    assert checks.parse_meminfo(MEMINFO) == 4 * GIB
    assert checks.parse_meminfo("MemFree: 1024 kB\n") == 1024 * 1024  # an old kernel: no MemAvailable
    assert checks.parse_meminfo("") is None
    assert checks.parse_df("Avail\n123456\n") == 123456
    assert checks.parse_df("") is None
    assert checks.parse_os_release(DEBIAN) == ("debian", "12")
    assert checks.parse_os_release("ID=ubuntu\nVERSION_ID='22.04'\n") == ("ubuntu", "22.04")
    v6 = "   1: 00000000000000000000000001000000:01BB 00000000000000000000000000000000:0000 0A 0 0 0 0 0 1\n"
    table = TCP_HEADER + tcp_listen("0100007F", 8080) + tcp_listen("00000000", 5432) + (
        "   2: 0100007F:0050 0100007F:9999 01 00000000:00000000 00:00000000 00000000 0 0 1\n")  # established
    assert checks.parse_listening(table) == {("127.0.0.1", 8080), ("0.0.0.0", 5432)}
    assert checks.parse_listening(TCP_HEADER + v6) == {("::1", 443)}


def test_which_wanted_ports_a_listener_holds() -> None:
    listening = {("127.0.0.1", 8080), ("0.0.0.0", 5432), ("::ffff:10.0.0.5", 9000)}
    wanted = [("", 8080), ("127.0.0.1", 8080), ("10.0.0.6", 8080), ("127.0.0.1", 5432), ("10.0.0.5", 9000),
              ("", 9999)]
    assert checks.busy_among(wanted, listening) == {("", 8080), ("127.0.0.1", 8080), ("127.0.0.1", 5432),
                                                    ("10.0.0.5", 9000)}


def test_the_dpkg_lock_holders_and_live_processes() -> None:
    locks = ("1: POSIX  ADVISORY  WRITE 812 08:01:131090 0 EOF\n"
             "1: -> POSIX  ADVISORY  WRITE 900 08:01:131090 0 EOF\n"
             "2: FLOCK  ADVISORY  WRITE 77 00:19:555 0 EOF\n")
    assert prereqs.lock_holders(locks, 131090) == ["812"]
    assert prereqs.lock_holders(locks, 1) == []
    assert prereqs.process_alive("4242 (dockerd) S 1 4242")
    assert not prereqs.process_alive("4242 (docker d) Z 1 4242")


def test_the_local_host_measures_this_machine(tmp_path: Path) -> None:
    host = LocalHost(ProcessRunner(CancelToken()))
    assert checks.cpu_count(host) >= 1
    assert (checks.available_memory(host) or 0) > 0
    assert checks.free_disk(host, str(tmp_path)) > 0
    with pytest.raises(OSError) as raised:
        checks.free_disk(host, str(tmp_path / "missing"))
    assert "No such file or directory" in str(raised.value.strerror)
    assert host.is_root() == (os.geteuid() == 0)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        ticks = iter(range(100))
        assert checks.busy_ports(host, [("127.0.0.1", port), ("", port)], lambda: float(next(ticks)),
                                 lambda s: None) == {("127.0.0.1", port), ("", port)}
    assert checks.busy_ports(host, [("127.0.0.1", port)], lambda: 0.0, lambda s: None) == set()


# -- preflight --------------------------------------------------------------------------
def test_preflight_measures_through_the_host_and_passes(tmp_path: Path) -> None:
    host = healthy_host()
    ctx, seen = make_context(tmp_path, host=host)
    result = preflight(ctx)
    assert result.status == "completed" and result.note == "11 checks, 0 warning(s)", result.note
    for line in ("access: pass (root)", "memory: pass (4.0 GiB available", "disk: pass (50.0 GiB free on /", "cpus: pass (4 CPUs",
                 "os: pass (debian 12", "docker: pass (engine 20.10.24", "compose: pass (compose 2.40.0",
                 "ports: pass (free or held by this project: 127.0.0.1:8080)"):
        assert line in seen.text, seen.text
    assert ("df", "-B1", "--output=avail", "/") in host.ran and ("nproc",) in host.ran
    assert not seen.warnings


def test_preflight_warns_and_fails_by_the_host_measurements(tmp_path: Path) -> None:
    host = healthy_host()
    host.answer(["nproc"], "1\n")
    host.files["/proc/meminfo"] = "MemAvailable: 1024 kB\n"
    host.files["/etc/os-release"] = "ID=alpine\nVERSION_ID=3.19\n"
    host.answer(["df", "-B1", "--output=avail", "/"], "", 1, "df: /: No such file or directory\n")
    host.files["/proc/net/tcp"] = TCP_HEADER + tcp_listen("00000000", 8080)
    ctx, seen = make_context(tmp_path, host=host)
    with pytest.raises(PhaseFailed) as failed:
        preflight(ctx)
    assert "cpus: warn (1 CPUs; needs >= 2)" in seen.warnings[0]
    summary = failed.value.summary
    assert summary.startswith("4 check(s) failed: memory: 1.0 MiB available; disk: /: No such file or directory; "
                              "os: alpine 3.19; ports: in use by another process: 127.0.0.1:8080")
    skipped, _ = make_context(tmp_path, host=host, skip_checks=("memory", "disk", "os", "ports"))
    assert preflight(skipped).note == "7 checks, 1 warning(s)"


def test_preflight_says_docker_is_fixable_only_when_root_may_install(tmp_path: Path) -> None:
    alice = Access(user="alice", groups=("alice", "docker"), sudo="password", sudo_said="sudo: a password is required")
    for who, expected in ((None, "warn"), (replace(alice, sudo="yes"), "warn"), (alice, "fail")):
        host = healthy_host(root=who is None)
        host.who = who
        engine = FakeEngine(Script(server=None))
        ctx, seen = make_context(tmp_path, host=host, engine=engine)
        if expected == "fail":
            with pytest.raises(PhaseFailed, match="docker: the Docker daemon is not reachable"):
                preflight(ctx)
        else:
            preflight(ctx)
        assert f"docker: {expected} (the Docker daemon is not reachable" in seen.text


# -- prerequisites ----------------------------------------------------------------------
BARE_TOML = "[phases.prerequisites]\nfirewall = true\n"


def bare_host(root: bool = True, systemd: bool = True) -> FakeHost:
    host = FakeHost(root=root, files={"/etc/os-release": DEBIAN, **({"/run/systemd/system": ""} if systemd else {})},
                    commands=["systemctl"] if systemd else [], missing=["docker-compose"])
    host.answer(["id", "-un"], "alice\n")
    host.answer(["id", "-nG", "alice"], "alice sudo\n")
    return host


def bare_context(tmp_path: Path, host: FakeHost, toml: str = BARE_TOML, **options: object):  # type: ignore[no-untyped-def]
    engine = FakeEngine(Script(server=None, compose=None))
    ctx, seen = make_context(tmp_path, toml, host=host, engine=engine, name="prerequisites", **options)
    return ctx, seen, engine


def test_prerequisites_dry_run_lists_every_command_and_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "alice")
    host = bare_host()
    ctx, seen, _ = bare_context(tmp_path, host, dry_run=True)
    assert prerequisites(ctx).note == "dry run: 5 step(s) would change this machine"
    would = [line for line in seen.lines if line.startswith("would run")]
    assert would[:3] == ["would run on this machine (docker-engine): apt-get update",
                         "would run on this machine (docker-engine): apt-get install -y --no-install-recommends "
                         "docker.io",
                         "would run on this machine (compose-v2): python3 -m venv /opt/surefoot/compose-v2"]
    assert "would run on this machine (docker-daemon): systemctl enable --now docker" in would
    assert "would run on this machine (docker-group): usermod -aG docker alice" in would
    assert "would run on this machine (firewall): ufw --force enable" in would
    assert host.streamed == [] and host.started == []


def test_prerequisites_not_root_names_the_exact_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUDO_USER", raising=False)
    ctx, _, _ = bare_context(tmp_path, bare_host(root=False), toml="")
    with pytest.raises(PhaseFailed) as failed:
        prerequisites(ctx)
    summary = failed.value.summary
    assert summary.startswith("installing docker-engine, compose-v2, docker-daemon, docker-group needs root: "
                              "this machine: alice is not root and sudo is not installed; ")
    assert "NOPASSWD" in summary and "connect as root" in summary
    assert ("or run there: sudo -n apt-get update; sudo -n apt-get install -y --no-install-recommends docker.io; "
            in summary)
    assert summary.endswith("sudo -n systemctl enable --now docker; sudo -n usermod -aG docker alice")
    off, _, _ = bare_context(tmp_path, bare_host(), toml="[phases.prerequisites]\ninstall = false\n")
    with pytest.raises(PhaseFailed, match=r"phases.prerequisites.install is false\); as root: apt-get update"):
        prerequisites(off)


def test_prerequisites_as_root_runs_the_plan_through_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "alice")
    host = bare_host()
    ctx, seen, engine = bare_context(tmp_path, host, toml="[phases.prerequisites]\nfail2ban = true\n")

    def installed(argv: tuple[str, ...]) -> None:
        if argv[:2] == ("systemctl", "enable"):
            engine.script.server, engine.script.compose = "24.0.5", "2.40.0"

    host.on_stream = installed
    note = prerequisites(ctx).note
    assert note == "5 step(s) applied on this machine; docker 24.0.5, compose 2.40.0"
    assert host.streamed[:2] == [("apt-get", "update"), ("apt-get", "install", "-y", "--no-install-recommends",
                                                          "docker.io")]
    assert ("systemctl", "enable", "--now", "docker") in host.streamed
    assert ("usermod", "-aG", "docker", "alice") in host.streamed
    assert host.streamed[-1] == ("systemctl", "restart", "fail2ban")
    assert "port = 22" in host.files[str(prereqs.JAIL_LOCAL)]
    assert host.envs[0] == {"DEBIAN_FRONTEND": "noninteractive"}
    assert ("stat", "-L", "-c", "%i", DPKG_LOCK) in host.ran
    assert "alice is in the docker group from the next login" in seen.warnings


def test_prerequisites_without_systemd_start_dockerd_detached_and_wait_for_the_dpkg_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SUDO_USER", raising=False)
    host = bare_host(systemd=False)
    host.answer(["stat", "-L", "-c", "%i", DPKG_LOCK], "131090\n")
    host.files["/proc/locks"] = "1: POSIX  ADVISORY  WRITE 812 08:01:131090 0 EOF\n"
    host.files["/var/run/docker.pid"] = "999\n"  # left by a killed daemon: no /proc/999
    cancel = QuickCancel()
    cancel.on_sleep = lambda: host.files.update({"/proc/locks": ""})  # the other apt finishes
    ctx, seen, engine = bare_context(tmp_path, host, toml="", cancel=cancel)
    host.on_stream = lambda argv: setattr(engine.script, "compose", "2.40.0") if "-c" in argv else None
    host.start_detached = lambda argv, log: (setattr(engine.script, "server", "24.0.5"),  # type: ignore[method-assign]
                                             FakeHost.start_detached(host, argv, log))[1]
    prerequisites(ctx)
    assert "another package manager (pid 812) holds the dpkg lock; waited 1s" in seen.lines
    assert cancel.slept[0] == 5
    assert host.removed == ["/var/run/docker.pid"]
    assert host.started == [(("dockerd",), "/var/log/dockerd.log")]
    assert "started dockerd, pid 4242 (log: /var/log/dockerd.log)" in seen.lines
    assert "the Docker daemon answers: 24.0.5" in seen.lines


# -- configuration ----------------------------------------------------------------------
CONFIGURATION = """
[project]
env_file = ".env.production"

[[phases.configuration.prompts]]
key = "DOMAIN"
question = "Domain name"
validator = "domain"

[[phases.configuration.prompts]]
key = "API_KEY"
question = "API key"
secret = true

[[phases.configuration.secrets]]
key = "DB_PASSWORD"
length = 40

[phases.configuration.derived]
APP_URL = "https://{DOMAIN}/app"
"""


def test_configuration_asks_generates_reviews_and_writes_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("DOMAIN", "API_KEY", "DB_PASSWORD", "APP_URL"):
        monkeypatch.delenv(key, raising=False)
    prompter = FakePrompter(["not a domain", "shop.example.com", "key-123"], confirm=False)
    ctx, _ = make_context(tmp_path, CONFIGURATION, host=healthy_host(), name="configuration", prompter=prompter)
    with pytest.raises(PhaseFailed, match="configuration not confirmed: nothing was written"):
        configuration(ctx)
    env = tmp_path / ".env.production"
    assert not env.exists()
    assert prompter.asked == [("Domain name: ", False), ("Domain name: ", False), ("API key: ", True)]
    assert prompter.shown[0].startswith("  a fully qualified domain name has at least one dot")
    review = prompter.shown[-1]
    assert "key-123" not in review and "API_KEY      [hidden, 7 characters]  (new)" in review
    assert "DB_PASSWORD  [generated, 40 characters]  (new)" in review

    prompter = FakePrompter(["shop.example.com", "key-123"])
    ctx, seen = make_context(tmp_path, CONFIGURATION, host=healthy_host(), name="configuration", prompter=prompter)
    assert configuration(ctx).note == "4 value(s) written to .env.production"
    values = parse_env_text(env.read_text())
    assert values["DOMAIN"] == "shop.example.com" and values["API_KEY"] == "key-123"
    assert values["APP_URL"] == "https://shop.example.com/app" and len(values["DB_PASSWORD"]) == 40
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert "key-123" not in seen.text and values["DB_PASSWORD"] not in seen.text
    assert "preflight's project checks, now that the env file is complete:" in seen.lines

    again, seen = make_context(tmp_path, CONFIGURATION, host=healthy_host(), name="configuration",
                               prompter=FakePrompter([]))
    assert configuration(again).note == ".env.production: every value present, nothing to write"


def test_configuration_without_a_terminal_needs_every_required_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("DOMAIN", "API_KEY", "DB_PASSWORD", "APP_URL"):
        monkeypatch.delenv(key, raising=False)
    ctx, _ = make_context(tmp_path, CONFIGURATION, host=healthy_host(), name="configuration",
                          values={"DOMAIN": "shop.example.com"})
    with pytest.raises(ConfigError, match="required values are missing: API_KEY"):
        configuration(ctx)
    monkeypatch.setenv("API_KEY", "from-the-environment")
    ctx, seen = make_context(tmp_path, CONFIGURATION, host=healthy_host(), name="configuration",
                             values={"DOMAIN": "shop.example.com"})
    configuration(ctx)
    assert parse_env_text((tmp_path / ".env.production").read_text())["API_KEY"] == "from-the-environment"
    assert "from-the-environment" not in seen.text


def test_the_local_host_starts_a_daemon_detached_with_its_output_in_a_log(tmp_path: Path) -> None:
    host = LocalHost(ProcessRunner(CancelToken()))
    log = tmp_path / "daemon.log"
    pid = host.start_detached(["sh", "-c", "echo started; exec sleep 30"], str(log))
    try:
        assert prereqs.process_alive(host.read_text(f"/proc/{pid}/stat"))
        assert os.getsid(pid) == pid  # its own session: a Ctrl-C on surefoot's terminal does not reach it
        for _ in range(100):
            if log.read_text():
                break
            CancelToken().sleep(0.05)
        assert log.read_text() == "started\n"
    finally:
        os.kill(pid, 9)


# -- host commands: a command probe without a service, post-deploy commands without one ---
def test_a_command_probe_without_a_service_runs_on_the_host(tmp_path: Path) -> None:
    from surefoot.config.probes import ProbeSettings
    from surefoot.deploy.gates import build_probe

    host = FakeHost()
    host.answer(["check-it", "--now"], "", 3, "not yet\n")
    ctx, _ = make_context(tmp_path, host=host, name="health-wait")
    probe = build_probe(ProbeSettings(command=["check-it", "--now"]), ctx, None)  # type: ignore[arg-type]
    result = probe.check()
    assert (result.ok, result.detail) == (False, "exit 3: not yet")
    assert host.ran == [("check-it", "--now")]


def test_post_deploy_host_commands_run_on_the_host(tmp_path: Path) -> None:
    from surefoot.deploy.phases.postdeploy import post_deploy

    host = FakeHost()
    host.answer(["notify", "deployed"], "sent\n")
    toml = '[[phases.post-deploy.commands]]\ncommand = ["notify", "deployed"]\n'
    ctx, seen = make_context(tmp_path, toml, host=host, name="post-deploy")
    assert post_deploy(ctx).note == "1 command(s) run"
    assert host.streamed == [("notify", "deployed")]
    assert seen.lines[:2] == ["running: notify deployed", "sent"]
    host.answer(["notify", "deployed"], "", 4)
    with pytest.raises(PhaseFailed, match="post-deploy command notify deployed exited with code 4"):
        post_deploy(ctx)
