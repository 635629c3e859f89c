"""The deployment lock on a remote target (surefoot.hosts.ssh.lock): its parsing and its shell
scripts as units (run with the local sh), then on real test servers: a second control
machine meets LockHeld, and whatever ends the session (kill -9 of the process holding the
lock, of its ssh client, sshd's session killed, the network gone) frees the lock."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servers import Server, ServerPool
from surefoot.base.errors import LockHeld
from surefoot.config.address import parse_target
from surefoot.hosts.ssh.args import SshError
from surefoot.hosts.ssh.connection import SshConnection
from surefoot.hosts.ssh.lock import _HOLD, _PROBE, RemoteLock, holder_json, parse_holder, remote_holder
from surefoot.store.lock import Holder

# --- units ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "holder"), [
    ('{"pid": 123, "host": "laptop", "since": "2024-05-01T10:00:00Z"}', Holder(123, "laptop", "2024-05-01T10:00:00Z")),
    ('{"pid": 7}', Holder(7, None, None)),
    ('{"pid": "7", "host": 3, "since": ""}', Holder(None, None, None)),
    ('{"pid": true, "host": "h"}', Holder(None, "h", None)),
    ('{"pid": -1}', Holder(None, None, None)),
    ("[1, 2]", Holder(None, None, None)),
    ("", Holder(None, None, None)),
    ("{half", Holder(None, None, None)),
])
def test_parse_holder(text: str, holder: Holder) -> None:
    assert parse_holder(text) == holder


def test_holder_json_round_trips() -> None:
    holder = Holder(42, "ci-runner-3", "2024-05-01T10:00:00Z")
    assert parse_holder(holder_json(holder)) == holder
    assert json.loads(holder_json(holder)) == {"pid": 42, "host": "ci-runner-3", "since": "2024-05-01T10:00:00Z"}


def _hold_locally(folder: Path, grace: int = 60, holder: str = '{"pid": 1}') -> subprocess.Popen[str]:
    process = subprocess.Popen(["sh", "-c", _HOLD, "sh", str(folder), holder, str(grace)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process


def _probe_locally(folder: Path) -> str:
    return subprocess.run(["sh", "-c", _PROBE, "sh", str(folder)], capture_output=True, text=True,
                          check=True).stdout


def test_scripts_lock_report_and_free_on_eof(tmp_path: Path) -> None:
    assert _probe_locally(tmp_path) == "free\n"  # no lock file yet
    first = _hold_locally(tmp_path, holder='{"pid": 11, "host": "a"}')
    assert first.stdout is not None and first.stdout.readline() == "locked\n"
    assert (tmp_path / ".surefoot" / "deploy.lock.json").stat().st_mode & 0o777 == 0o600
    assert _probe_locally(tmp_path) == 'held\n{"pid": 11, "host": "a"}\n\n'
    second = _hold_locally(tmp_path)
    out, _ = second.communicate(timeout=10)
    assert out.splitlines()[:2] == ["busy", '{"pid": 11, "host": "a"}']
    assert first.stdin is not None
    first.stdin.write(".\n.\n")  # heartbeats keep it
    first.stdin.flush()
    time.sleep(0.3)
    assert first.poll() is None
    first.stdin.close()  # EOF: the holder ends, the info file goes with it
    assert first.wait(timeout=5) == 0
    assert _probe_locally(tmp_path) == "free\n"
    assert not (tmp_path / ".surefoot" / "deploy.lock.json").exists()


def test_script_gives_up_when_the_heartbeat_stops(tmp_path: Path) -> None:
    holder = _hold_locally(tmp_path, grace=1)
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    started = time.monotonic()
    assert holder.wait(timeout=10) == 0  # stdin still open, but silent
    assert time.monotonic() - started < 3
    assert _probe_locally(tmp_path) == "free\n"
    assert holder.stdin is not None
    holder.stdin.close()


def test_stale_info_file_alone_is_not_a_holder(tmp_path: Path) -> None:
    (tmp_path / ".surefoot").mkdir()
    (tmp_path / ".surefoot" / "deploy.lock").write_text("")
    (tmp_path / ".surefoot" / "deploy.lock.json").write_text('{"pid": 99, "host": "gone"}')
    assert _probe_locally(tmp_path) == "free\n"


# --- on test servers ------------------------------------------------------------------------


@pytest.fixture
def server(test_servers: ServerPool) -> Server:
    return test_servers.server(0)


@pytest.fixture
def folder() -> str:
    return f"/var/lib/surefoot/lock-{uuid.uuid4().hex[:8]}"


def _connect(server: Server) -> SshConnection:
    conn = SshConnection(parse_target(server.alias, ssh_config=server.ssh_config, name="web1"))
    conn.open()
    return conn


@pytest.fixture
def conn(server: Server) -> Iterator[SshConnection]:
    connection = _connect(server)
    try:
        yield connection
    finally:
        connection.close()


def _state(server: Server, folder: str) -> str:
    """free or held, read inside the server (docker exec, not SSH)."""
    return server.exec("sh", "-c", _PROBE, "sh", folder).stdout.split("\n", 1)[0]


def _within(seconds: float, check: Callable[[], bool]) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.05)
    return time.monotonic() - started


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.docker
def test_second_control_machine_meets_the_holder(server: Server, conn: SshConnection, folder: str) -> None:
    assert remote_holder(conn, folder) is None
    first = RemoteLock(conn, folder, label="web1", host="laptop-a")
    with first:
        assert first.held
        other = _connect(server)  # a second control machine
        try:
            holder = remote_holder(other, folder)
            assert holder is not None and (holder.pid, holder.host) == (os.getpid(), "laptop-a")
            assert holder.since and holder.since[:4].isdigit()
            with pytest.raises(LockHeld) as caught:
                RemoteLock(other, folder, label="web1", host="laptop-b").acquire()
            assert caught.value.exit_code == 3
            assert (caught.value.pid, caught.value.host, caught.value.since) == (os.getpid(), "laptop-a", holder.since)
            assert str(caught.value) == f"target web1 is locked by another deployment: {holder.describe()}"
            assert f"pid {os.getpid()} on laptop-a since" in str(caught.value)
            assert first.held, "a refused second deployment leaves the first one's lock alone"
        finally:
            other.close()
    assert not first.held
    assert remote_holder(conn, folder) is None
    assert server.exec("test", "-e", f"{folder}/.surefoot/deploy.lock.json", check=False).returncode == 1
    first.release()  # twice is fine
    with RemoteLock(conn, folder, label="web1", pid=4242):
        holder = remote_holder(conn, folder)
        assert holder is not None and holder.pid == 4242
    assert remote_holder(conn, folder) is None


@pytest.mark.docker
def test_stale_info_file_on_the_target_is_not_a_holder(server: Server, conn: SshConnection, folder: str) -> None:
    server.exec("sh", "-c", f"mkdir -p {folder}/.surefoot && : > {folder}/.surefoot/deploy.lock && "
                f"echo '{{\"pid\": 99}}' > {folder}/.surefoot/deploy.lock.json")
    assert remote_holder(conn, folder) is None
    with RemoteLock(conn, folder, label="web1"):
        holder = remote_holder(conn, folder)
        assert holder is not None and holder.pid == os.getpid()


@pytest.mark.docker
def test_lock_folder_that_cannot_be_made_is_a_clear_error(conn: SshConnection) -> None:
    with pytest.raises(SshError) as caught:
        RemoteLock(conn, "/proc/surefoot", label="web1").acquire()
    assert caught.value.kind == "command"
    assert str(caught.value).startswith("target web1: cannot take the deployment lock /proc/surefoot/.surefoot/")


HOLDER_SCRIPT = textwrap.dedent("""
    import sys, time
    from surefoot.hosts.ssh.lock import RemoteLock
    from surefoot.hosts.ssh.connection import SshConnection
    from surefoot.config.address import parse_target
    conn = SshConnection(parse_target(sys.argv[1], ssh_config=sys.argv[2]))
    conn.open()
    lock = RemoteLock(conn, sys.argv[3], label="web1", host="laptop-b")
    lock.acquire()
    print(conn.master_pid, lock._held.pid, conn.folder, flush=True)
    time.sleep(600)
""")


@pytest.mark.docker
def test_kill_9_of_the_process_holding_the_lock_frees_it(server: Server, conn: SshConnection, folder: str) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, server.alias, str(server.ssh_config), folder],
                              stdout=subprocess.PIPE, text=True)
    master, private = 0, ""
    try:
        assert holder.stdout is not None
        words = holder.stdout.readline().split()
        master, client, private = int(words[0]), int(words[1]), words[2]
        found = remote_holder(conn, folder)
        assert found is not None and (found.pid, found.host) == (holder.pid, "laptop-b")
        assert os.getsid(client) != os.getsid(0), "the ssh client runs in its own session: a Ctrl-C misses it"
        holder.kill()
        holder.wait()
        freed = _within(3, lambda: _state(server, folder) == "free")
        assert remote_holder(conn, folder) is None
        _within(3, lambda: _gone(client))  # its ssh client does not outlive it
        print(f"lock freed {freed:.2f} s after kill -9 of its holder")
    finally:
        holder.kill()
        holder.wait()
        if master:  # the killed holder's master connection (ControlPersist) is left to us
            with contextlib.suppress(ProcessLookupError):
                os.kill(master, signal.SIGTERM)
        if private:
            shutil.rmtree(private, ignore_errors=True)


@pytest.mark.docker
def test_kill_9_of_the_ssh_client_frees_it(server: Server, conn: SshConnection, folder: str) -> None:
    lock = RemoteLock(conn, folder, label="web1")
    lock.acquire()
    try:
        assert lock._held is not None
        os.kill(lock._held.pid, signal.SIGKILL)
        freed = _within(3, lambda: _state(server, folder) == "free")
        assert not lock.held
        print(f"lock freed {freed:.2f} s after kill -9 of the ssh client")
    finally:
        lock.release()
    with RemoteLock(conn, folder, label="web1"):  # the connection still serves
        assert _state(server, folder) == "held"


@pytest.mark.docker
def test_dropped_connection_frees_it(server: Server, folder: str) -> None:
    conn = _connect(server)
    try:
        lock = RemoteLock(conn, folder, label="web1")
        lock.acquire()
        assert _state(server, folder) == "held"
        server.exec("pkill", "-f", "sshd: root")  # the sessions, not sshd itself (PID 1)
        freed = _within(3, lambda: _state(server, folder) == "free")
        _within(5, lambda: not lock.held)
        lock.release()
        print(f"lock freed {freed:.2f} s after the connection dropped")
    finally:
        conn.close()


@pytest.mark.docker
def test_network_gone_frees_it_after_the_grace(server: Server, folder: str) -> None:
    """No packet gets through and nobody closes anything: sshd does not notice an idle
    session, the missing heartbeat does."""
    conn = _connect(server)
    rules = [["INPUT", "-p", "tcp", "--dport", "22", "-j", "DROP"],
             ["OUTPUT", "-p", "tcp", "--sport", "22", "-j", "DROP"]]
    try:
        lock = RemoteLock(conn, folder, label="web1", heartbeat=0.5, grace=3)
        lock.acquire()
        time.sleep(4)  # heartbeats keep it past the grace
        assert _state(server, folder) == "held"
        for rule in rules:
            server.exec("iptables", "-I", *rule)
        freed = _within(8, lambda: _state(server, folder) == "free")
        assert 2 < freed < 6
        print(f"lock freed {freed:.2f} s after the network went (grace 3 s)")
    finally:
        for rule in rules:
            server.exec("iptables", "-D", *rule, check=False)
        with contextlib.suppress(Exception):
            lock.release()
        conn.close()


@pytest.mark.docker
def test_unreachable_target_is_an_ssh_error(server: Server, folder: str) -> None:
    conn = _connect(server)
    reject = ["INPUT", "-p", "tcp", "--dport", "22", "-j", "REJECT", "--reject-with", "tcp-reset"]
    try:
        assert conn.master_pid is not None
        os.kill(conn.master_pid, signal.SIGTERM)  # the shared connection is gone and no new one gets in
        _within(5, lambda: not conn.alive())
        server.exec("iptables", "-I", *reject)
        with pytest.raises(SshError) as caught:
            RemoteLock(conn, folder, label="web1").acquire()
        assert caught.value.kind in ("refused", "dropped"), caught.value
        assert str(caught.value).startswith("target web1 (")
        print(caught.value)
    finally:
        server.exec("iptables", "-D", *reject, check=False)
        conn.close()
