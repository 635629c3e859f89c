"""Where a server is: ``ssh://[USER@]HOST[:PORT]`` or a Host alias of the ssh config, parsed
(:func:`parse_target`) into an :class:`SshAddress`. Pure, so that the configuration validates
an address and ``status`` reads one without loading the SSH transport."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from surefoot.base.errors import ConfigError

_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?$")


class SshAddress(NamedTuple):
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


def parse_target(text: str, *, ssh_config: Path | str | None = None, name: str | None = None) -> SshAddress:
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
    return SshAddress(host=host, user=user, port=port, ssh_config=config, name=name)


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
