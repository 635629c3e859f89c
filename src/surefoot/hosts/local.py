"""This machine as a :class:`~surefoot.hosts.base.Host`: commands through the process runner,
files with Python's own calls; as root through ``sudo -n`` when :meth:`LocalHost.as_root` is
asked for it and surefoot is not root."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from surefoot.base.errors import CommandNotFound
from surefoot.hosts import access
from surefoot.proc import Captured, ProcessRunner

# $1 the file, $2 its mode: standard input written beside it, then moved over it.
WRITE = ('mkdir -p -- "$(dirname -- "$1")" && cat > "$1.surefoot-new" && chmod "$2" "$1.surefoot-new" '
         '&& mv -f -- "$1.surefoot-new" "$1"')


def elevated(prefix: Sequence[str], argv: Sequence[str], env: dict[str, str] | None) -> list[str]:
    """``argv`` run through ``prefix`` (``sudo -n``): sudo drops the environment, so the
    variables are handed over as ``env K=V``."""
    if not prefix:
        return list(argv)
    return [*prefix, *(["env", *(f"{key}={value}" for key, value in env.items())] if env else []), *argv]


class LocalHost:
    """This machine. ``prefix``: the words that run its commands as root (``sudo -n``), for
    the host :meth:`as_root` returns."""

    def __init__(self, processes: ProcessRunner, prefix: tuple[str, ...] = ()):
        self.processes = processes
        self.prefix = prefix
        self._access: access.Access | None = None

    def run(self, argv: Sequence[str], *, cwd: Path | None = None, timeout: float | None = 60.0,
            env: dict[str, str] | None = None) -> Captured:
        return self.processes.capture(elevated(self.prefix, argv, env), cwd=cwd, timeout=timeout,
                                      env=None if self.prefix else env)

    def stream(self, argv: Sequence[str], on_line: Callable[[str], None], *, cwd: Path | None = None,
               timeout: float | None = None, env: dict[str, str] | None = None) -> int:
        return self.processes.stream(elevated(self.prefix, argv, env), on_line, cwd=cwd, timeout=timeout,
                                     env=None if self.prefix else env)

    def read_text(self, path: str) -> str:
        return Path(path).read_text(encoding="utf-8", errors="replace")

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def write_text(self, path: str, text: str) -> None:
        if self.prefix:
            self._write(path, text.encode(), 0o644)
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")

    def send_file(self, local: Path, path: str, mode: int = 0o755) -> None:
        self._write(path, local.read_bytes(), mode)

    def _write(self, path: str, data: bytes, mode: int) -> None:
        result = self.processes.exchange([*self.prefix, "sh", "-c", WRITE, "sh", path, format(mode, "o")], data)
        if result.returncode != 0:
            raise OSError(f"{path}: {result.stderr.decode(errors='replace').strip() or 'cannot be written'}")

    def remove(self, path: str) -> None:
        if self.prefix:
            self.run(["rm", "-f", "--", path], timeout=30)
            return
        Path(path).unlink(missing_ok=True)

    def which(self, name: str) -> bool:
        return shutil.which(name) is not None

    def access(self) -> access.Access:
        """Asked once (it does not change while surefoot runs). The operator under sudo is
        SUDO_USER: the person to add to the docker group."""
        if self._access is None:
            try:
                found = access.parse(self.processes.capture(["sh", "-c", access.SCRIPT], timeout=30).stdout)
            except CommandNotFound:
                found = access.Access(user="", sudo="missing")
            self._access = found
        return self._access

    def is_root(self) -> bool:
        return self.access().root

    def as_root(self) -> LocalHost | None:
        found = self.access()
        if found.elevate is None:
            return None
        if not found.elevate or self.prefix:
            return self
        root = LocalHost(self.processes, found.elevate)
        root._access = found
        return root

    def start_detached(self, argv: Sequence[str], log_path: str) -> int:
        return self.processes.start_detached([*self.prefix, *argv], Path(log_path))

    def login_works(self) -> str | None:
        return None  # this machine: no connection to lose

    def reach(self, host: str, port: int) -> tuple[str, int]:
        return host, port

    def unreach(self) -> None:
        pass
