"""This machine as a :class:`~surefoot.hosts.base.Host`: commands through the process runner,
files with Python's own calls."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from surefoot.base.errors import CommandNotFound
from surefoot.proc import Captured, ProcessRunner


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

    def unreach(self) -> None:
        pass
