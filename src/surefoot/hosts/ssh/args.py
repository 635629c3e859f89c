"""The SSH transport's pure half: the ssh argument lists (:func:`base_options`, :func:`master_argv`,
:func:`command_argv`, :func:`control_argv`) and what ssh's stderr means (:func:`classify`,
:class:`SshError`). No process is started here: :class:`~surefoot.hosts.ssh.connection.SshConnection`
runs them through :mod:`surefoot.proc`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from surefoot.base.errors import SurefootError
from surefoot.config.address import SshAddress


class SshError(SurefootError):
    """The target cannot be reached, refused the connection or our key, has an unknown host
    key, or the connection dropped. ``kind`` names which, for callers that care."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


# --- argv builders (pure) ---------------------------------------------------------------

def base_options(target: SshAddress, control_path: Path | str, *, connect_timeout: int = 10,
                 alive_interval: int = 15, alive_count: int = 3) -> list[str]:
    """The options every ssh call of a target shares (master and clients)."""
    options: list[str] = []
    if target.ssh_config is not None:
        options += ["-F", str(target.ssh_config)]
    options += [
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"ConnectTimeout={connect_timeout}",
        "-o", f"ServerAliveInterval={alive_interval}",
        "-o", f"ServerAliveCountMax={alive_count}",
        "-o", f"ControlPath={control_path}",
    ]
    if target.user:
        options += ["-l", target.user]
    if target.port is not None:
        options += ["-p", str(target.port)]
    return options


def master_argv(options: Sequence[str], target: SshAddress, persist: str = "10m") -> list[str]:
    """Starts the master connection and goes to the background once it is authenticated.
    ``persist`` is how long it outlives its last client (a safety net when surefoot is killed)."""
    return ["ssh", *options, "-o", "ControlMaster=yes", "-o", f"ControlPersist={persist}",
            "-N", "-f", "--", target.host]


def command_argv(options: Sequence[str], target: SshAddress, command: Sequence[str]) -> list[str]:
    """Runs ``command`` on the target through the master; each word quoted for the remote shell."""
    if not command:
        raise ValueError("a remote command is needed")
    return ["ssh", *options, "-o", "ControlMaster=no", "-T", "--", target.host, shlex.join(command)]


def control_argv(options: Sequence[str], target: SshAddress, operation: str, *extra: str) -> list[str]:
    """``ssh -O check|exit|forward|cancel`` to the master."""
    return ["ssh", *options, "-O", operation, *extra, "--", target.host]


# --- errors (pure) ----------------------------------------------------------------------

def classify(target: SshAddress, stderr: str) -> SshError | None:
    """The transport error that ssh's stderr describes, as one clear line naming the target;
    None when the text is not one of ssh's own failures (the remote command's output)."""
    text = stderr.lower()
    where = target.label
    hint_host = target.host if target.port is None else f"[{target.host}]:{target.port}"
    if "remote host identification has changed" in text or ("host key for" in text and "has changed" in text):
        return SshError(
            f"{where}: the server's host key has CHANGED since it was saved in known_hosts (the server was "
            f"reinstalled, or someone is intercepting the connection); check the new fingerprint with the "
            f"server's administrator, then replace the old entry (ssh-keygen -R '{hint_host}')", "host-key-changed")
    if "host key verification failed" in text or "host key is known for" in text:
        scan = f"ssh-keyscan{'' if target.port is None else f' -p {target.port}'} {target.host}"
        return SshError(
            f"{where}: the server's host key is not in known_hosts and strict host-key checking is on; "
            f"connect once with ssh and compare the fingerprint with the server's, or add it with "
            f"`{scan} >> ~/.ssh/known_hosts` after checking it", "host-key-unknown")
    if "permission denied" in text:
        user = target.user or "the configured user"
        return SshError(
            f"{where}: the server refused our key for {user} (Permission denied); check the user, the key "
            f"(IdentityFile or ssh-agent) and the server's authorized_keys", "auth")
    if "could not resolve hostname" in text or "name or service not known" in text:
        return SshError(f"{where}: unknown host name {target.host!r} (could not resolve it)", "unreachable")
    if "connection refused" in text:
        port = target.port if target.port is not None else "the configured port (22)"
        return SshError(f"{where}: connection refused on port {port}: is sshd running, and is the port right?",
                        "refused")
    for phrase in ("connection timed out", "operation timed out", "no route to host", "network is unreachable",
                   "host is unreachable", "host is down"):
        if phrase in text:
            return SshError(f"{where}: cannot reach the host ({phrase})", "unreachable")
    for phrase in ("kex_exchange_identification", "connection closed by", "connection reset", "broken pipe",
                   "timeout, server", "not responding", "mux_client", "control socket", "connection to"):
        if phrase in text:
            line = last_line(stderr)
            return SshError(f"{where}: the SSH connection dropped ({line})", "dropped")
    return None


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
