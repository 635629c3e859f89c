"""The server the deployment runs on: commands and files, through one seam.

Everything that measures or changes "the server" (preflight's measurements, the
prerequisites, the dockerd start, host command probes, post-deploy commands)
goes through a :class:`Host`. :class:`LocalHost` is this machine, over
:class:`~surefoot.proc.ProcessRunner`; a remote host answers the same commands
and file reads over SSH. So the measurements are commands or file reads
(``/proc/meminfo``, ``df``, ``nproc``, ``/etc/os-release``, ``/proc/net/tcp``,
``id -u``), never Python calls on this machine, and their parsers are pure
(see :mod:`surefoot.hosts.checks`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from surefoot.hosts.access import Access
from surefoot.proc import Captured


class Host(Protocol):
    """What the phases may ask of the server."""

    def run(self, argv: Sequence[str], *, cwd: Path | None = None, timeout: float | None = 60.0,
            env: dict[str, str] | None = None) -> Captured:
        """Run to completion; stdout and stderr kept apart. Raises CommandNotFound."""
        ...

    def stream(self, argv: Sequence[str], on_line: Callable[[str], None], *, cwd: Path | None = None,
               timeout: float | None = None, env: dict[str, str] | None = None) -> int:
        """Run to completion, handing each output line to ``on_line``; the exit code."""
        ...

    def read_text(self, path: str) -> str:
        """The file's text. Raises OSError when it cannot be read."""
        ...

    def exists(self, path: str) -> bool: ...

    def write_text(self, path: str, text: str) -> None:
        """Write the file, creating its folder. Raises OSError."""
        ...

    def remove(self, path: str) -> None:
        """Remove the file if it is there."""
        ...

    def which(self, name: str) -> bool:
        """Whether the command is on the PATH."""
        ...

    def is_root(self) -> bool: ...

    def access(self) -> Access:
        """Who commands run as there, and whether sudo gives root (asked once)."""
        ...

    def as_root(self) -> Host | None:
        """The same host with every command and file operation run as root: itself for root,
        through ``sudo -n`` where sudo needs no password; None when root cannot be had."""
        ...

    def send_file(self, local: Path, path: str, mode: int = 0o755) -> None:
        """Copy a file of this machine (the control machine) to ``path`` there, atomically.
        Raises OSError."""
        ...

    def login_works(self) -> str | None:
        """None when a new login to the host still works (a server: a new SSH connection, not
        the shared one); else what failed. Asked after a firewall change."""
        ...

    def start_detached(self, argv: Sequence[str], log_path: str) -> int:
        """Start a daemon that outlives surefoot, its output appended to ``log_path``; its pid."""
        ...

    def reach(self, host: str, port: int) -> tuple[str, int]:
        """Where this machine reaches ``host:port`` as the server names it (a server's own
        loopback: through the connection, a local port forwarded until :meth:`unreach`)."""
        ...

    def unreach(self) -> None:
        """Close what :meth:`reach` opened (a forwarded port is open to this machine's users)."""
        ...
