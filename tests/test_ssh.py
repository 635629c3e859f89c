"""The SSH transport (surefoot.hosts.ssh.connection): URL parsing and argv building as units; connecting,
refusals, the shared connection and compose through the forwarded docker socket on real
test servers (tests/servers.py: sshd and dockerd in containers, sshd's default settings)."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import free_port
from servers import Server, ServerPool
from surefoot.base.errors import ConfigError
from surefoot.config.address import SshAddress, parse_target
from surefoot.hosts.ssh.args import SshError, base_options, classify, command_argv, control_argv, master_argv
from surefoot.hosts.ssh.connection import SshConnection

# --- URL parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "host", "user", "port"), [
    ("ssh://root@web1.example.com:22", "web1.example.com", "root", 22),
    ("ssh://web1.example.com", "web1.example.com", None, None),
    ("ssh://deploy@10.0.0.5", "10.0.0.5", "deploy", None),
    ("ssh://web1:2222", "web1", None, 2222),
    ("ssh://root@[::1]:2200", "::1", "root", 2200),
    ("ssh://[fe80::1%eth0]", "fe80::1%eth0", None, None),
    ("SSH://root@web1/", "web1", "root", None),
    ("web1", "web1", None, None),
    ("deploy@web1", "web1", "deploy", None),
    ("  prod-db_2  ", "prod-db_2", None, None),
])
def test_parse_target_accepts_urls_and_aliases(text: str, host: str, user: str | None, port: int | None) -> None:
    target = parse_target(text)
    assert (target.host, target.user, target.port) == (host, user, port)


@pytest.mark.parametrize(("text", "says"), [
    ("", "empty"),
    ("tcp://web1:2375", "only ssh://"),
    ("ssh://web1/srv/app", "path"),
    ("ssh://web1?x=1", "path, query"),
    ("ssh://web1:0", "1 to 65535"),
    ("ssh://web1:65536", "1 to 65535"),
    ("ssh://web1:ssh", "1 to 65535"),
    ("ssh://root@", "host is missing"),
    ("ssh://-oProxyCommand=x", "not a valid host"),
    ("-oProxyCommand=touch /tmp/x", "not a valid host"),
    ("ssh://-l@web1", "not a valid user"),
    ("ssh://a b@web1", "not a valid user"),
    ("web1:22", "ssh://HOST:PORT"),
    ("ssh://[::1", "IPv6"),
    ("ssh://[::1]x", "unexpected"),
    ("web 1", "not a valid host"),
])
def test_parse_target_refuses_bad_input_saying_why(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=r"target|empty") as caught:
        parse_target(text)
    assert says in str(caught.value)


def test_target_url_and_label_round_trip() -> None:
    target = parse_target("ssh://root@[::1]:2200", name="web1")
    assert target.url == "ssh://root@[::1]:2200"
    assert parse_target(target.url) == SshAddress("::1", "root", 2200)
    assert target.label == "target web1 (ssh://root@[::1]:2200)"
    assert parse_target("web1", ssh_config="deploy/ssh_config").ssh_config == Path("deploy/ssh_config")


# --- argv building ------------------------------------------------------------------------


def test_argv_passes_config_user_port_and_keeps_strict_host_keys() -> None:
    target = parse_target("ssh://deploy@web1:2222", ssh_config="/etc/sf/ssh_config")
    options = base_options(target, "/tmp/sf-x/c", connect_timeout=7)
    assert options[:2] == ["-F", "/etc/sf/ssh_config"]
    pairs = dict(zip(options[::2], options[1::2], strict=True))
    assert pairs["-l"] == "deploy" and pairs["-p"] == "2222"
    joined = " ".join(options)
    for option in ("BatchMode=yes", "StrictHostKeyChecking=yes", "ConnectTimeout=7", "ControlPath=/tmp/sf-x/c",
                   "ServerAliveInterval=", "ServerAliveCountMax="):
        assert option in joined
    master = master_argv(options, target)
    assert master[0] == "ssh" and master[-2:] == ["--", "web1"]
    assert "ControlMaster=yes" in master and "-N" in master and "-f" in master
    assert control_argv(options, target, "exit")[-4:] == ["-O", "exit", "--", "web1"]


def test_argv_without_url_parts_leaves_them_to_the_ssh_config() -> None:
    options = base_options(parse_target("web1"), "/tmp/sf-x/c")
    assert "-F" not in options and "-l" not in options and "-p" not in options


def test_remote_command_words_are_quoted_for_the_remote_shell() -> None:
    target = parse_target("web1")
    argv = command_argv([], target, ["sh", "-c", 'echo "$1"', "x", "a b; rm -rf /", "$(id)"])
    assert argv[:5] == ["ssh", "-o", "ControlMaster=no", "-T", "--"]
    assert argv[5] == "web1"
    assert shlex.split(argv[6]) == ["sh", "-c", 'echo "$1"', "x", "a b; rm -rf /", "$(id)"]
    with pytest.raises(ValueError):
        command_argv([], target, [])


@pytest.mark.parametrize(("stderr", "kind", "says"), [
    ("No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\n"
     "Host key verification failed.\n", "host-key-unknown", "ssh-keyscan -p 2222 127.0.0.1"),
    ("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.\n",
     "host-key-changed", "ssh-keygen -R"),
    ("root@127.0.0.1: Permission denied (publickey).\n", "auth", "Permission denied"),
    ("ssh: connect to host 127.0.0.1 port 2222: Connection refused\n", "refused", "port 2222"),
    ("ssh: Could not resolve hostname nowhere: Name or service not known\n", "unreachable", "could not resolve"),
    ("ssh: connect to host 10.1.1.1 port 22: Connection timed out\n", "unreachable", "connection timed out"),
    ("ssh: connect to host 10.1.1.1 port 22: No route to host\n", "unreachable", "no route to host"),
    ("kex_exchange_identification: Connection closed by remote host\n", "dropped", "dropped"),
    ("Connection to 127.0.0.1 closed by remote host.\n", "dropped", "closed by remote host"),
    ("Timeout, server 127.0.0.1 not responding.\n", "dropped", "not responding"),
])
def test_ssh_failures_become_one_clear_line_naming_the_target(stderr: str, kind: str, says: str) -> None:
    target = parse_target("ssh://root@127.0.0.1:2222", name="web1")
    error = classify(target, stderr)
    assert error is not None and error.kind == kind
    message = str(error)
    assert message.startswith("target web1 (ssh://root@127.0.0.1:2222): ")
    assert "\n" not in message and says.lower() in message.lower()


def test_a_remote_command_own_output_is_not_a_transport_error() -> None:
    assert classify(parse_target("web1"), "grep: /etc/app.conf: No such file or directory\n") is None


def test_connection_refused_is_reported_and_leaves_nothing(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(f"UserKnownHostsFile {tmp_path / 'known_hosts'}\n")
    connection = SshConnection(parse_target(f"ssh://root@127.0.0.1:{free_port()}", ssh_config=config),
                               connect_timeout=5)
    with pytest.raises(SshError, match="connection refused") as caught:
        connection.open()
    assert caught.value.kind == "refused"
    assert connection.folder is None


# --- on real test servers -----------------------------------------------------------------


@pytest.fixture
def server(test_servers: ServerPool) -> Server:
    return test_servers.server(0)


@pytest.fixture
def connection(server: Server) -> Iterator[SshConnection]:
    conn = SshConnection(parse_target(server.alias, ssh_config=server.ssh_config))
    conn.open()
    try:
        yield conn
    finally:
        conn.close()


def _accepted(server: Server) -> int:
    """How many connections the server's sshd has accepted (its log is the container's)."""
    logs = subprocess.run(["docker", "logs", server.container], capture_output=True, text=True, check=True)
    return (logs.stdout + logs.stderr).count("Accepted publickey")


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_master_that_exited_counts_as_gone_while_still_a_zombie() -> None:
    """close() waits for the master to end; a zombie (exited, not reaped yet: under some init
    processes for seconds) has ended, or every close would wait out its timeout."""
    from surefoot.hosts.ssh.connection import _running

    child = subprocess.Popen(["sleep", "0.05"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert not _running(child.pid)  # exited, not reaped: gone
    finally:
        child.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        assert _running(alive.pid)
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.docker
def test_runs_commands_over_one_shared_connection(server: Server) -> None:
    before = _accepted(server)
    with SshConnection(parse_target(server.alias, ssh_config=server.ssh_config)) as conn:
        assert conn.folder is not None and conn.folder.stat().st_mode & 0o777 == 0o700
        assert len(str(conn.control_path)) < 60, "unix socket paths are limited to about 104 bytes"
        assert conn.run(["hostname"], check=True).stdout.strip() == "server-0"
        words = ["a b", "c;d", "$(id)", "'q'"]
        echoed = conn.run(["sh", "-c", 'printf "%s\\n" "$@"', "sh", *words], check=True).stdout
        assert echoed.splitlines() == words
        assert conn.run(["sh", "-c", "exit 7"]).returncode == 7
        assert conn.run(["cat"], input="from stdin").stdout == "from stdin"
        for _ in range(10):
            conn.run(["true"], check=True)
        assert _accepted(server) - before == 1, "every command after the first reuses the master connection"


@pytest.mark.docker
def test_closing_leaves_no_ssh_process_behind(server: Server) -> None:
    conn = SshConnection(parse_target(server.alias, ssh_config=server.ssh_config))
    conn.open()
    conn.docker_env()  # a forwarded socket too
    folder, pid = conn.folder, conn.master_pid
    assert folder is not None and pid is not None and _processes_naming(str(folder))
    conn.close()
    assert not _processes_naming(str(folder))
    assert not Path(f"/proc/{pid}").exists() or b"ssh" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert not folder.exists()
    conn.close()  # twice is fine


@pytest.mark.docker
def test_unknown_host_key_is_refused_saying_what_to_do(server: Server, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = tmp_path / "ssh_config"
    # Even a config that turns host-key checking off keeps it on: surefoot passes StrictHostKeyChecking=yes.
    config.write_text(server.ssh_config.read_text().replace("StrictHostKeyChecking yes", "StrictHostKeyChecking no")
                      .replace(str(server.ssh_config.parent / "known_hosts"), str(empty)))
    conn = SshConnection(parse_target(server.alias, ssh_config=config, name="web1"))
    with pytest.raises(SshError) as caught:
        conn.open()
    assert caught.value.kind == "host-key-unknown"
    message = str(caught.value)
    assert message.startswith(f"target web1 (ssh://{server.alias}): ")
    assert "known_hosts" in message and "ssh-keyscan" in message
    assert empty.read_text() == "", "the unknown key was not added"
    assert conn.folder is None


@pytest.mark.docker
def test_changed_host_key_is_refused(server: Server, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    kind, key = (tmp_path / "other.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{server.port} {kind} {key}\n")
    config = tmp_path / "ssh_config"
    config.write_text(server.ssh_config.read_text().replace(str(server.ssh_config.parent / "known_hosts"), str(known)))
    with pytest.raises(SshError) as caught:
        SshConnection(parse_target(server.alias, ssh_config=config)).open()
    assert caught.value.kind == "host-key-changed"
    assert "CHANGED" in str(caught.value)


@pytest.mark.docker
def test_refused_key_gives_a_clear_message(server: Server, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    config = tmp_path / "ssh_config"
    config.write_text(server.ssh_config.read_text().replace(str(server.ssh_config.parent / "id_ed25519"),
                                                            str(stranger)))
    target = parse_target(f"ssh://root@127.0.0.1:{server.port}", ssh_config=config)
    with pytest.raises(SshError) as caught:
        SshConnection(target).open()
    assert caught.value.kind == "auth"
    assert str(caught.value).startswith(f"target ssh://root@127.0.0.1:{server.port}: ")
    assert "Permission denied" in str(caught.value) and "root" in str(caught.value)


@pytest.mark.docker
def test_a_dropped_connection_is_reported(server: Server) -> None:
    conn = SshConnection(parse_target(server.alias, ssh_config=server.ssh_config))
    conn.open()
    failure: list[BaseException] = []

    def long_command() -> None:
        try:
            conn.run(["sleep", "60"], timeout=90)
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=long_command)
    worker.start()
    try:
        time.sleep(1)
        # The server drops our connection: end sshd's per-connection processes for root
        # (the listener, the container's main process, stays).
        server.exec("sh", "-c", 'for f in /proc/[0-9]*/cmdline; do '
                    'if tr "\\0" " " <"$f" | grep -q "^sshd: root"; then p=${f#/proc/}; kill "${p%/cmdline}"; fi; '
                    'done')
        worker.join(timeout=60)
    finally:
        conn.close()
    assert not worker.is_alive()
    assert failure and isinstance(failure[0], SshError), failure
    assert failure[0].kind == "dropped"
    assert str(failure[0]).startswith(f"target ssh://{server.alias}: the SSH connection dropped")


@pytest.mark.docker
def test_a_master_that_ended_is_opened_again_with_the_same_docker_host(connection: SshConnection) -> None:
    env = connection.docker_env()
    first = connection.master_pid
    assert first is not None
    os.kill(first, 15)  # as when it idles past ControlPersist or the network drops
    deadline = time.monotonic() + 10
    while connection.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not connection.alive()
    connection.ensure_open()
    assert connection.master_pid not in (None, first)
    assert connection.docker_env()["DOCKER_HOST"] == env["DOCKER_HOST"]
    version = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip(), version.stderr
    connection.ensure_open()  # alive: nothing to do
    assert connection.alive()


TWENTY = "services:\n" + "".join(
    f"  s{i}:\n    image: {{image}}\n    command: [\"sleep\", \"3600\"]\n    stop_signal: SIGKILL\n"
    for i in range(20))


@pytest.mark.docker
def test_twenty_services_deploy_through_the_forwarded_docker_socket(
        server: Server, connection: SshConnection, busybox_image: str, tmp_path: Path) -> None:
    server.load_image(busybox_image)
    (tmp_path / "compose.yaml").write_text(TWENTY.format(image=busybox_image))
    name = f"sft-{uuid.uuid4().hex[:10]}"
    env = connection.docker_env()
    assert env["DOCKER_HOST"].startswith("unix://") and "DOCKER_CONTEXT" not in env
    before = _accepted(server)
    compose = ["docker", "compose", "-p", name, "-f", str(tmp_path / "compose.yaml")]
    try:
        up = subprocess.run([*compose, "up", "-d"], env=env, capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stderr
        running = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={name}",
                                  "--filter", "status=running"], env=env, capture_output=True, text=True, check=True)
        assert len(running.stdout.split()) == 20
        assert _accepted(server) == before, "compose used the shared connection, not connections of its own"
        # and the containers are on the server, not on this machine's engine
        local = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={name}"],
                               capture_output=True, text=True, check=True)
        assert local.stdout.split() == []
    finally:
        subprocess.run([*compose, "down", "-t", "0"], env=env, capture_output=True, timeout=300)


@pytest.mark.docker
def test_server_pool_teardown_removes_what_it_made_and_nothing_else(
        test_servers: ServerPool, tmp_path: Path) -> None:
    shared = test_servers.server(0)
    pool = ServerPool(tmp_path / "pool")
    try:
        server = pool.server(0)
        assert server.ssh("docker", "info", "--format", "{{.Driver}}").stdout.strip() == "overlay2"
        assert "MaxStartups" not in server.exec("cat", "/etc/ssh/sshd_config").stdout.replace("#MaxStartups", "")
    finally:
        pool.teardown()
    for kind, name in (("container", server.container), ("volume", server.volume)):
        assert subprocess.run(["docker", kind, "inspect", name], capture_output=True).returncode != 0
    assert shared.ssh("true").returncode == 0, "the session's own server is untouched"
