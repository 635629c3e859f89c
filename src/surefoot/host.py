"""The server the deployment runs on: commands and files, through one seam.

Everything that measures or changes "the server" (preflight's measurements, the
prerequisites, the dockerd start, host command probes, post-deploy commands)
goes through a :class:`Host`. :class:`LocalHost` is this machine, over
:class:`~surefoot.proc.ProcessRunner`; a remote host answers the same commands
and file reads over SSH. So the measurements are commands or file reads
(``/proc/meminfo``, ``df``, ``nproc``, ``/etc/os-release``, ``/proc/net/tcp``,
``id -u``), never Python calls on this machine, and their parsers are pure
(see :mod:`surefoot.checks`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from surefoot.errors import CommandNotFound
from surefoot.proc import Captured, ProcessRunner


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

    def start_detached(self, argv: Sequence[str], log_path: str) -> int:
        """Start a daemon that outlives surefoot, its output appended to ``log_path``; its pid."""
        ...

    def reach(self, host: str, port: int) -> tuple[str, int]:
        """Where this machine reaches ``host:port`` as the server names it (a server's own
        loopback: through the connection)."""
        ...


class LocalHost:
    """This machine."""

    def __init__(self, processes: ProcessRunner):
        self.processes = processes
        self._root: bool | None = None

    def run(self, argv: Sequence[str], *, cwd: Path | None = None, timeout: float | None = 60.0,
            env: dict[str, str] | None = None) -> Captured:
        return self.processes.capture(argv, cwd=cwd, timeout=timeout, env=env)

    def stream(self, argv: Sequence[str], on_line: Callable[[str], None], *, cwd: Path | None = None,
               timeout: float | None = None, env: dict[str, str] | None = None) -> int:
        return self.processes.stream(argv, on_line, cwd=cwd, timeout=timeout, env=env)

    def read_text(self, path: str) -> str:
        return Path(path).read_text(encoding="utf-8", errors="replace")

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def write_text(self, path: str, text: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")

    def remove(self, path: str) -> None:
        Path(path).unlink(missing_ok=True)

    def which(self, name: str) -> bool:
        return shutil.which(name) is not None

    def is_root(self) -> bool:
        """``id -u`` is 0 (asked once: it does not change while surefoot runs)."""
        if self._root is None:
            try:
                self._root = self.run(["id", "-u"], timeout=30).stdout.strip() == "0"
            except CommandNotFound:
                self._root = False
        return self._root

    def start_detached(self, argv: Sequence[str], log_path: str) -> int:
        return self.processes.start_detached(argv, Path(log_path))

    def reach(self, host: str, port: int) -> tuple[str, int]:
        return host, port
