"""The SSH transport: the system OpenSSH client, one multiplexed connection per target.

The operator's ``ssh`` does the work, so ``~/.ssh/config``, agents, jump hosts and
known_hosts behave as they expect; surefoot only adds, on the command line:

- ``BatchMode=yes`` (never a prompt) and ``StrictHostKeyChecking=yes`` (an unknown or
  changed host key is refused, with a message saying what to do);
- a timeout on every call: ``ConnectTimeout``, ``ServerAliveInterval``/``CountMax`` and a
  local timeout on each process;
- one master connection for the whole run (``ControlMaster``/``ControlPersist``), its
  control socket in a private folder (0700, a short path: unix socket paths are limited
  to about 104 bytes), opened by :meth:`SshConnection.open` and closed by
  :meth:`SshConnection.close` (``ssh -O exit``).

Remote commands are argument lists; each word is quoted with :func:`shlex.quote` for the
remote shell. ``docker`` reaches the target's engine through the same connection:
:meth:`SshConnection.forward_docker` forwards the remote docker socket to a unix socket in
the private folder (``ssh -O forward -L``) and :meth:`SshConnection.docker_env` sets
``DOCKER_HOST=unix://...`` for the docker CLI and compose. (``DOCKER_HOST=ssh://...`` would
make the CLI open its own connections, one per container for compose, and sshd's default
``MaxStartups 10:30:100`` drops them: a 20-service ``up`` fails.) With a forwarded socket,
bind mounts and build contexts still resolve on the server.

The argv builders and :func:`~surefoot.hosts.ssh.args.classify` are pure and live in
:mod:`surefoot.hosts.ssh.args`; every process runs through :mod:`surefoot.proc`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from surefoot.base.errors import CommandNotFound, CommandTimeout
from surefoot.config.address import SshAddress
from surefoot.hosts.access import SCRIPT as ACCESS_SCRIPT
from surefoot.hosts.access import Access
from surefoot.hosts.access import parse as parse_access
from surefoot.hosts.ssh.args import (
    SshError,
    base_options,
    classify,
    command_argv,
    control_argv,
    last_line,
    master_argv,
)
from surefoot.proc import CancelToken, Captured, Exchanged, Feed, ProcessRunner
from surefoot.proc.held import Held

DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
_MAX_SOCKET_PATH = 100  # sun_path is 104 bytes on BSD/macOS, 108 on Linux; ssh adds a suffix while binding


def _socket_base() -> Path:
    """A short folder for control sockets: /tmp when there is one, else the temp folder."""
    for candidate in ("/tmp", os.environ.get("XDG_RUNTIME_DIR"), tempfile.gettempdir()):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return Path(candidate)
    return Path(tempfile.gettempdir())


# --- the connection ---------------------------------------------------------------------

class SshConnection:
    """One multiplexed connection to a target for the whole run.

        with SshConnection(parse_target("ssh://root@web1")) as conn:
            conn.run(["docker", "info"])
            env = conn.docker_env()      # DOCKER_HOST=unix://<private folder>/docker.sock
    """

    def __init__(self, target: SshAddress, *, cancel: CancelToken | None = None, connect_timeout: int = 10,
                 alive_interval: int = 15, alive_count: int = 3, persist: str = "10m", control_timeout: float = 20):
        self.target = target
        # Every ssh process goes through here: a cancel stops the commands of the run (never the
        # master's own control commands, which close the connection).
        self.processes = ProcessRunner(cancel or CancelToken())
        # Asked before every command run here: a deployment holding the lock on the target
        # raises LockLost once the lock can no longer be believed held (hosts/ssh/lock.py).
        self.guard: Callable[[], None] = lambda: None
        self.connect_timeout = connect_timeout
        self.alive_interval = alive_interval
        self.alive_count = alive_count
        self.persist = persist
        self.control_timeout = control_timeout
        self.folder: Path | None = None
        self.master_pid: int | None = None
        self.docker_socket: Path | None = None
        self._forwarded_remote: str | None = None
        self._access: Access | None = None

    @property
    def control_path(self) -> Path:
        if self.folder is None:
            raise SshError(f"{self.target.label}: the connection is not open", "closed")
        return self.folder / "c"

    def options(self) -> list[str]:
        return base_options(self.target, self.control_path, connect_timeout=self.connect_timeout,
                            alive_interval=self.alive_interval, alive_count=self.alive_count)

    def __enter__(self) -> SshConnection:
        self.open()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def open(self) -> None:
        """Starts the master connection (once). Raises SshError with a clear line."""
        if self.folder is not None:
            return
        self.folder = Path(tempfile.mkdtemp(prefix="sf-", dir=_socket_base()))  # mode 0700
        if len(str(self.control_path)) > _MAX_SOCKET_PATH - 20:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = Path(tempfile.mkdtemp(prefix="sf-", dir="/tmp"))
        self._start_master()

    def ensure_open(self) -> None:
        """Opens the master again when it ended (idle past ControlPersist, or dropped), in the
        same folder, with the docker socket forwarded again at the same path: a DOCKER_HOST
        handed out before stays valid."""
        if self.folder is None:
            self.open()
            return
        if self._check() is not None:
            return
        forwarded = self._forwarded_remote
        for stale in (self.control_path, self.control_path.with_name("docker.sock")):
            stale.unlink(missing_ok=True)
        self.master_pid = None
        self.docker_socket = None
        self._start_master(keep_folder=True)
        if forwarded is not None:
            self.forward_docker(forwarded)

    def _start_master(self, keep_folder: bool = False) -> None:
        argv = master_argv(self.options(), self.target, self.persist)
        # The master goes to the background holding its output: files, not pipes, or reading
        # them would wait for the master to end.
        limit = 2 * self.connect_timeout + 20
        try:
            result = self.processes.capture(argv, timeout=limit, leaves_daemon=True)
        except CommandNotFound:
            self._discard(keep_folder)
            raise SshError("ssh: the OpenSSH client is not installed (apt-get install openssh-client)",
                           "missing") from None
        except CommandTimeout:
            self._discard(keep_folder)
            raise SshError(f"{self.target.label}: no answer within {limit} s (connecting and logging in)",
                           "unreachable") from None
        except BaseException:
            self._discard(keep_folder)
            raise
        message = result.stderr
        if result.returncode != 0:
            self._discard(keep_folder)
            raise classify(self.target, message) or SshError(
                f"{self.target.label}: ssh could not connect: {last_line(message)}", "failed")
        self.master_pid = self._check()

    def _check(self) -> int | None:
        """The master's pid when it runs, else None."""
        try:
            result = self._control("check")
        except CommandTimeout:
            return None
        found = re.search(r"pid=(\d+)", result.stderr)
        return int(found.group(1)) if result.returncode == 0 and found else None

    def alive(self) -> bool:
        return self.folder is not None and self._check() is not None

    def access(self) -> Access:
        """Who we are there and how we get root (:mod:`surefoot.hosts.access`); asked once per
        connection (a group added meanwhile applies to the next one)."""
        if self._access is None:
            self._access = parse_access(self.run(["sh", "-c", ACCESS_SCRIPT], timeout=30, check=True).stdout)
        return self._access

    def login_works(self) -> str | None:
        """None when a new connection, not through the master, logs in and runs a command;
        else ssh's reason. (The master's own connection outlives a firewall change.)"""
        options = base_options(self.target, "none", connect_timeout=self.connect_timeout,
                               alive_interval=self.alive_interval, alive_count=self.alive_count)
        try:
            result = self.processes.capture(command_argv(options, self.target, ["true"]),
                                            timeout=2 * self.connect_timeout + 10, cancellable=False)
        except CommandTimeout:
            return f"no answer within {2 * self.connect_timeout + 10} s"
        if result.returncode == 0:
            return None
        error = classify(self.target, result.stderr)
        return str(error) if error is not None else last_line(result.stderr)

    def _control(self, operation: str, *extra: str) -> Captured:
        """``ssh -O operation`` to the master; never cancelled (a cancel closes the connection)."""
        return self.processes.capture(control_argv(self.options(), self.target, operation, *extra),
                                      timeout=self.control_timeout, cancellable=False)

    def run(self, command: Sequence[str], *, input: str | None = None, timeout: float = 60,
            check: bool = False) -> Captured:
        """Runs ``command`` (an argument list) on the target through the master connection.
        Transport failures raise SshError; the remote command's own exit code is returned
        (or raised as SshError with ``check``)."""
        self.guard()
        argv = command_argv(self.options(), self.target, command)
        try:
            result = self.processes.capture(argv, input=input, timeout=timeout)
        except CommandTimeout:
            raise SshError(f"{self.target.label}: `{shlex.join(command)}` gave no answer within {timeout:g} s",
                           "timeout") from None
        self._judge(f"`{shlex.join(command)}`", result.returncode, result.stderr, check)
        return result

    def run_bytes(self, command: Sequence[str], *, feed: Feed = b"", timeout: float | None = 60, check: bool = False,
                  what: str | None = None) -> Exchanged:
        """:meth:`run` for bytes: ``feed`` is the remote command's standard input (bytes, or a
        function that writes a stream of any size to it), and its output comes back as bytes.
        ``timeout`` bounds the whole call (None: none; the connection's keepalive still ends a
        dead one); past it the ssh child is stopped. An exception in ``feed`` stops the child too
        (the remote command sees a cut stream, never a clean end) and is raised as it is.
        ``what`` names the call in errors (else the command itself)."""
        what = what or f"`{shlex.join(command)}`"
        self.guard()
        try:
            result = self.processes.exchange(command_argv(self.options(), self.target, command), feed,
                                             timeout=timeout)
        except CommandTimeout:
            raise SshError(f"{self.target.label}: {what} gave no answer within {timeout:g} s", "timeout") from None
        self._judge(what, result.returncode, result.stderr.decode(errors="replace"), check)
        return result

    def _judge(self, what: str, returncode: int, stderr: str, check: bool) -> None:
        """Raises SshError for a transport failure, or (with ``check``) a failed command."""
        if returncode == 255:
            error = classify(self.target, stderr)
            if error is not None:
                raise error
            if self._check() is None:  # ssh's own failure, said quietly (LogLevel): the master ended
                raise SshError(f"{self.target.label}: the SSH connection dropped (the shared connection ended "
                               f"during {what})", "dropped")
        if check and returncode != 0:
            raise SshError(f"{self.target.label}: {what} failed ({returncode}): {last_line(stderr)}", "command")

    def docker_argv(self, command: Sequence[str]) -> list[str]:
        """The ssh argv that runs the docker ``command`` on the target, through sudo when its user
        needs it (for a process this machine runs itself: a pipe's end, a stream into a file)."""
        return command_argv(self.options(), self.target, [*self.access().docker_prefix, *command])

    def hold(self, command: Sequence[str]) -> Held:
        """Starts ``command`` on the target through the master and keeps it running until the
        returned :class:`~surefoot.proc.Held` is closed or surefoot dies: its stdin reaches EOF
        then (the master reads the pipe itself, a mux client hands it over)."""
        return Held(command_argv(self.options(), self.target, command))

    def forward_docker(self, remote_socket: str = DEFAULT_DOCKER_SOCKET) -> str:
        """Forwards the target's docker socket to a local unix socket over the master; returns
        the DOCKER_HOST value (``unix://...``). Once per connection."""
        if self.docker_socket is None:
            local = self.control_path.with_name("docker.sock")
            try:
                result = self._control("forward", "-L", f"{local}:{remote_socket}")
            except CommandTimeout:
                raise SshError(f"{self.target.label}: forwarding the docker socket gave no answer", "timeout") from None
            if result.returncode != 0:
                raise classify(self.target, result.stderr) or SshError(
                    f"{self.target.label}: could not forward the docker socket {remote_socket}: "
                    f"{last_line(result.stderr)}", "failed")
            self.docker_socket = local
            self._forwarded_remote = remote_socket
        return f"unix://{self.docker_socket}"

    def forward_port(self, host: str, port: int) -> int:
        """Forwards a free local port to ``host:port`` as the target sees it (its loopback:
        a health port that is not public) over the master; returns the local port."""
        for _ in range(5):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                local = probe.getsockname()[1]
            remote = f"[{host}]" if ":" in host else host
            try:
                result = self._control("forward", "-L", f"127.0.0.1:{local}:{remote}:{port}")
            except CommandTimeout:
                raise SshError(f"{self.target.label}: forwarding port {port} gave no answer", "timeout") from None
            if result.returncode == 0:
                return int(local)
        raise classify(self.target, result.stderr) or SshError(
            f"{self.target.label}: could not forward port {port}: {last_line(result.stderr)}", "failed")

    def cancel_forward(self, local: int, host: str, port: int) -> None:
        """Close a port :meth:`forward_port` opened (quietly: the connection may be gone)."""
        remote = f"[{host}]" if ":" in host else host
        with contextlib.suppress(CommandTimeout, OSError):
            self._control("cancel", "-L", f"127.0.0.1:{local}:{remote}:{port}")

    def docker_env(self, base: Mapping[str, str] | None = None,
                   remote_socket: str = DEFAULT_DOCKER_SOCKET) -> dict[str, str]:
        """An environment for ``docker``/``docker compose`` that reaches the target's engine
        through the shared connection."""
        env = dict(os.environ if base is None else base)
        for key in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            env.pop(key, None)
        env["DOCKER_HOST"] = self.forward_docker(remote_socket)
        return env

    def close(self, timeout: float = 10) -> None:
        """Closes the master connection (``ssh -O exit``), waits for it to end and removes the
        private folder. Safe to call twice."""
        if self.folder is None:
            return
        pid = self._check()  # the running master's pid (a remembered one may be gone and reused)
        with contextlib.suppress(CommandTimeout, OSError):
            self._control("exit")
        if pid is not None:
            deadline = time.monotonic() + timeout
            while _running(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _running(pid) and _names(pid, str(self.control_path)):
                with contextlib.suppress(OSError):
                    os.kill(pid, 15)
        self._discard()

    def _discard(self, keep_folder: bool = False) -> None:
        if keep_folder:
            return
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None
        self.master_pid = None
        self.docker_socket = None
        self._forwarded_remote = None


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs. The master ssh forks away from us, so its parent is PID 1:
    once it exits it is a zombie until PID 1 reaps it (seconds, under some init processes,
    never under none), and a zombie has ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: the signal is all there is to go by
    return stat.rpartition(")")[2].split()[:1] != ["Z"]  # the state follows the command's name


def _names(pid: int, text: str) -> bool:
    """Whether process ``pid``'s command line contains ``text`` (False where /proc is missing)."""
    try:
        return text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
