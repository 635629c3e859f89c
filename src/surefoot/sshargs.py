"""The SSH transport's pure half: where to connect (:func:`parse_target`, :class:`SshTarget`),
the ssh argument lists (:func:`base_options`, :func:`master_argv`, :func:`command_argv`,
:func:`control_argv`) and what ssh's stderr means (:func:`classify`, :class:`SshError`).

No process is started here, so another executor (``proc.py``) can run the same commands, and
whoever only reads a target (``targets.py``, ``config.py``, ``surefoot status``) does not load
``subprocess``. :mod:`surefoot.ssh` runs them (:class:`~surefoot.ssh.SshConnection`) and
re-exports these names.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from surefoot.errors import ConfigError, SurefootError

_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?$")


class SshError(SurefootError):
    """The target cannot be reached, refused the connection or our key, has an unknown host
    key, or the connection dropped. ``kind`` names which, for callers that care."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class SshTarget:
    """Where to connect: a host name, an address or a Host alias of the ssh config, with the
    user and port when the URL gives them (else ssh's config decides)."""

    host: str
    user: str | None = None
    port: int | None = None
    ssh_config: Path | None = None
    name: str | None = None  # the declared target's name, for messages

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"ssh://{user}{host}{port}"

    @property
    def label(self) -> str:
        return f"target {self.name} ({self.url})" if self.name else f"target {self.url}"


def parse_target(text: str, *, ssh_config: Path | str | None = None, name: str | None = None) -> SshTarget:
    """``ssh://[USER@]HOST[:PORT]`` or a bare ``[USER@]HOST`` (a Host alias of the ssh config
    works as with ssh). Raises ConfigError naming what is wrong."""
    raw = text.strip()
    config = Path(ssh_config) if ssh_config is not None else None
    if not raw:
        raise ConfigError("the target is empty: expected ssh://[USER@]HOST[:PORT] or a Host alias")
    if "://" in raw:
        scheme, _, rest = raw.partition("://")
        if scheme.lower() != "ssh":
            raise ConfigError(f"target {raw!r}: only ssh:// URLs are supported (ssh://[USER@]HOST[:PORT])")
        if rest.endswith("/"):
            rest = rest[:-1]
        if any(c in rest for c in "/?#"):
            raise ConfigError(f"target {raw!r}: a path, query or fragment is not allowed (ssh://[USER@]HOST[:PORT])")
        user, host, port = _split_authority(raw, rest, allow_port=True)
    else:
        user, host, port = _split_authority(raw, raw, allow_port=False)
    return SshTarget(host=host, user=user, port=port, ssh_config=config, name=name)


def _split_authority(raw: str, text: str, *, allow_port: bool) -> tuple[str | None, str, int | None]:
    user: str | None = None
    if "@" in text:
        user, _, text = text.rpartition("@")
        if not _USER.match(user):
            raise ConfigError(f"target {raw!r}: {user!r} is not a valid user name")
    port_text: str | None = None
    if text.startswith("["):
        host, bracket, after = text[1:].partition("]")
        if not bracket or not _IPV6.match(host):
            raise ConfigError(f"target {raw!r}: {text!r} is not a valid [IPv6] address")
        if after:
            if not after.startswith(":"):
                raise ConfigError(f"target {raw!r}: unexpected {after!r} after the address")
            port_text = after[1:]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    else:
        host = text
    if port_text is not None and not allow_port:
        raise ConfigError(f"target {raw!r}: write a port as ssh://HOST:PORT (or set Port in the ssh config)")
    if not text.startswith("[") and not _HOST.match(host):
        raise ConfigError(f"target {raw!r}: {host!r} is not a valid host name" if host
                          else f"target {raw!r}: the host is missing")
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ConfigError(f"target {raw!r}: the port must be a number from 1 to 65535, not {port_text!r}")
        port = int(port_text)
    return user, host, port


# --- argv builders (pure) ---------------------------------------------------------------

def base_options(target: SshTarget, control_path: Path | str, *, connect_timeout: int = 10,
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


def master_argv(options: Sequence[str], target: SshTarget, persist: str = "10m") -> list[str]:
    """Starts the master connection and goes to the background once it is authenticated.
    ``persist`` is how long it outlives its last client (a safety net when surefoot is killed)."""
    return ["ssh", *options, "-o", "ControlMaster=yes", "-o", f"ControlPersist={persist}",
            "-N", "-f", "--", target.host]


def command_argv(options: Sequence[str], target: SshTarget, command: Sequence[str]) -> list[str]:
    """Runs ``command`` on the target through the master; each word quoted for the remote shell."""
    if not command:
        raise ValueError("a remote command is needed")
    return ["ssh", *options, "-o", "ControlMaster=no", "-T", "--", target.host, shlex.join(command)]


def control_argv(options: Sequence[str], target: SshTarget, operation: str, *extra: str) -> list[str]:
    """``ssh -O check|exit|forward|cancel`` to the master."""
    return ["ssh", *options, "-O", operation, *extra, "--", target.host]


# --- errors (pure) ----------------------------------------------------------------------

def classify(target: SshTarget, stderr: str) -> SshError | None:
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
