"""A server reached over SSH, as a target: its commands, files, engine and lock.

Compose runs on the server, in the project's folder there (``/var/lib/surefoot/PROJECT``),
through one multiplexed SSH connection (:class:`~surefoot.hosts.ssh.connection.SshConnection`): a 20-service
``up`` is one session, not one connection per container as with ``DOCKER_HOST=ssh://``. The
project folder is mirrored there first (only changed files, :mod:`surefoot.hosts.ssh.mirror`), so
relative paths resolve there as here. Compose files are read (``compose config``) on this
machine, from the same files; everything that touches the engine runs on the server, and the
engine's quick questions go over its API socket forwarded through the connection.

Paths: the adapter, the releases and the phases keep speaking of this machine's paths; each
command's words and working folder are translated at the wire (:class:`PathMap`), and the
files surefoot wrote in its state folder (a release's model, its pins) are sent before the
command that names them.

A command on the server stops when its standard input closes (:data:`WATCHDOG`): Ctrl-C,
``kill -9`` of surefoot and a dropped connection all close it, so no compose is left running
there.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Protocol

from surefoot.base.errors import CommandNotFound, LockLost
from surefoot.hosts.access import Access
from surefoot.hosts.local import WRITE
from surefoot.hosts.ssh.args import SshError, command_argv
from surefoot.hosts.ssh.connection import SshConnection
from surefoot.hosts.ssh.lock import token_mark
from surefoot.proc import CancelToken, Captured, Feed, ProcessRunner

# Run "$@" in folder $1 (in / while it does not exist yet: a new server's first commands come
# before the project's folder is made; compose's are given absolute paths), in its own session;
# stop it (TERM, then KILL) when our standard input closes. Standard input is saved on fd 3
# first: POSIX sh gives a background job /dev/null as its input. With a lock ($2, the holder's
# info file, and $3, our token as the file writes it): nothing runs unless the file still
# carries our token, a fence stops the command as soon as it no longer does (the lock expired:
# another deployment may take it), and either ends with exit 75 and a line saying so.
WATCHDOG = r"""exec 3<&0 0</dev/null
cd "$1" 2>/dev/null || cd /
lock=$2 mark=$3
shift 3
ours() { [ -z "$lock" ] || grep -qF -- "$mark" "$lock" 2>/dev/null; }
ours || { echo "surefoot: the deployment lock is no longer ours: nothing was run" >&2; exit 75; }
setsid "$@" 3<&- &
c=$!
setsid sh -c 'cat >/dev/null; kill -TERM "-$1" 2>/dev/null; sleep 5; kill -KILL "-$1" 2>/dev/null' \
  watchdog "$c" <&3 >/dev/null 2>&1 &
w=$!
exec 3<&-
f=
if [ -n "$lock" ]; then
  setsid sh -c 'while sleep 1; do grep -qF -- "$3" "$2" 2>/dev/null && continue
    kill -TERM "-$1" 2>/dev/null; sleep 5; kill -KILL "-$1" 2>/dev/null; exit; done' \
    fence "$c" "$lock" "$mark" </dev/null >/dev/null 2>&1 &
  f=$!
fi
wait "$c"
rc=$?
kill -TERM "-$w" 2>/dev/null
[ -z "$f" ] || kill -TERM "-$f" 2>/dev/null
ours || { echo "surefoot: the deployment lock is no longer ours: the command was stopped" >&2; exit 75; }
exit "$rc"
"""
LOST = 75  # the watchdog's exit when the lock is no longer ours


class Fence(Protocol):
    """The lock a deployment holds on the server, as the commands there are checked against it
    (:class:`surefoot.hosts.ssh.lock.RemoteLock`)."""

    token: str  # "" while not held
    path: str  # the lock file (its holder's info: path + ".json")

    def check(self) -> None:
        """Raises LockLost unless the lock is still ours."""
        ...

    def lost(self) -> LockLost: ...


TRANSLATED_SUFFIXES = (".json", ".yaml", ".yml")  # files of ours whose text names paths


class PathMap:
    """This machine's folders and where they are on the server (the longest prefix wins)."""

    def __init__(self, pairs: Sequence[tuple[Path, str]]):
        self.pairs = sorted(((str(local), remote) for local, remote in pairs), key=lambda p: -len(p[0]))

    def word(self, text: str) -> str:
        """A command word: a path under a mapped folder becomes the server's path."""
        for local, remote in self.pairs:
            if text == local:
                return remote
            if text.startswith(local + "/"):
                return remote + text[len(local):]
        return text

    def text(self, text: str) -> str:
        """A file's text with every mapped folder replaced (a release's model names paths)."""
        for local, remote in self.pairs:
            text = text.replace(local + "/", remote + "/").replace(f'"{local}"', f'"{remote}"')
        return text


class RemoteProcesses:
    """The processes an engine and the host use on a server (:class:`~surefoot.proc.Processes`): each command
    runs there, in the mapped folder, under :data:`WATCHDOG`."""

    def __init__(self, conn: SshConnection, cancel: CancelToken, paths: PathMap, folder: str,
                 before: Callable[[Sequence[str]], None] = lambda argv: None, *, elevate: tuple[str, ...] = (),
                 fencing: list[Fence | None] | None = None):
        self.conn = conn
        self.cancel = cancel
        self.paths = paths
        self.folder = folder
        self.before = before  # sends the state files a command names
        self.elevate = elevate  # "sudo -n": the watchdog and its command run as root
        self.local = ProcessRunner(cancel, hold_stdin=True)
        none: list[Fence | None] = [None]
        self._fencing = fencing if fencing is not None else none  # shared with the elevated twin

    @property
    def fence(self) -> Fence | None:
        """The lock the commands are checked against, while a deployment holds it there."""
        return self._fencing[0]

    @fence.setter
    def fence(self, fence: Fence | None) -> None:
        self._fencing[0] = fence

    def elevated(self, prefix: tuple[str, ...]) -> RemoteProcesses:
        """The same processes run as root through ``prefix`` (``sudo -n``), under the same lock."""
        if not prefix or prefix == self.elevate:
            return self
        return RemoteProcesses(self.conn, self.cancel, self.paths, self.folder, self.before, elevate=prefix,
                               fencing=self._fencing)

    def wrap(self, argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> list[str]:
        fence = self.fence
        if fence is not None:
            fence.check()
        self.before(argv)
        where = self.paths.word(str(cwd)) if cwd is not None else self.folder
        words = [self.paths.word(word) for word in argv]
        if env:
            words = ["env", *(f"{key}={value}" for key, value in env.items()), *words]
        lock = (fence.path + ".json", token_mark(fence.token)) if fence is not None and fence.token else ("", "")
        return command_argv(self.conn.options(), self.conn.target,
                            [*self.elevate, "sh", "-c", WATCHDOG, "surefoot", where, *lock, *words])

    def _checked(self, returncode: int, argv: Sequence[str]) -> int:
        """ssh's own failure (255) while the shared connection is gone: the connection dropped;
        the watchdog's 75 while the lock file no longer carries our token: the lock was lost."""
        fence = self.fence
        if returncode == LOST and fence is not None and fence.token:
            ours = self.conn.run(["grep", "-qF", "--", token_mark(fence.token), fence.path + ".json"], timeout=30)
            if ours.returncode != 0:
                raise fence.lost()
        if returncode == 255 and not self.conn.alive():
            raise SshError(f"{self.conn.target.label}: the SSH connection dropped during "
                           f"`{shlex.join(list(argv)[:4])}`; run the command again to resume", "dropped")
        return returncode

    def stream(self, argv: Sequence[str], on_line: Callable[[str], None], *, cwd: Path | None = None,
               timeout: float | None = None, cancellable: bool = True, env: dict[str, str] | None = None,
               without: Collection[str] = ()) -> int:
        code = self.local.stream(self.wrap(argv, cwd, env), on_line, timeout=timeout, cancellable=cancellable)
        return self._checked(code, argv)

    def capture(self, argv: Sequence[str], *, cwd: Path | None = None, timeout: float | None = 60.0,
                cancellable: bool = True, without: Collection[str] = (),
                env: dict[str, str] | None = None) -> Captured:
        result = self.local.capture(self.wrap(argv, cwd, env), timeout=timeout, cancellable=cancellable)
        self._checked(result.returncode, argv)
        return result

    def to_file(self, argv: Sequence[str], path: Path, *, cwd: Path | None = None, timeout: float | None = None,
                without: Collection[str] = ()) -> Captured:
        result = self.local.to_file(self.wrap(argv, cwd), path, timeout=timeout)
        self._checked(result.returncode, argv)
        return result

    @contextmanager
    def follow(self, argv: Sequence[str], on_line: Callable[[str], None],
               on_end: Callable[[], None] = lambda: None) -> Iterator[None]:
        with self.local.follow(self.wrap(argv), on_line, on_end=on_end):
            yield

    def start_detached(self, argv: Sequence[str], log_path: Path) -> int:
        if self.fence is not None:
            self.fence.check()
        script = 'log=$1; shift; nohup setsid "$@" >>"$log" 2>&1 </dev/null & echo $!'
        result = self.local.capture(command_argv(self.conn.options(), self.conn.target,
                                                 [*self.elevate, "sh", "-c", script, "surefoot", str(log_path),
                                                  *argv]))
        if result.returncode != 0 or not result.stdout.strip().isdigit():
            raise CommandNotFound(argv[0])
        return int(result.stdout.strip())


class SshHost:
    """The server as a :class:`~surefoot.hosts.Host`: commands and files over the connection.
    ``prefix`` (``sudo -n``): every command and file operation runs as root (:meth:`as_root`)."""

    def __init__(self, processes: RemoteProcesses, prefix: tuple[str, ...] = ()):
        self.processes = processes.elevated(prefix) if prefix else processes
        self.conn = processes.conn
        self.prefix = prefix
        self._forwards: dict[tuple[str, int], int] = {}

    def run(self, argv: Sequence[str], *, cwd: Path | None = None, timeout: float | None = 60.0,
            env: dict[str, str] | None = None) -> Captured:
        result = self.processes.capture(argv, cwd=cwd, timeout=timeout, env=env)
        if result.returncode == 127:
            raise CommandNotFound(argv[0])
        return result

    def stream(self, argv: Sequence[str], on_line: Callable[[str], None], *, cwd: Path | None = None,
               timeout: float | None = None, env: dict[str, str] | None = None) -> int:
        code = self.processes.stream(argv, on_line, cwd=cwd, timeout=timeout, env=env)
        if code == 127:
            raise CommandNotFound(argv[0])
        return code

    def read_text(self, path: str) -> str:
        result = self.conn.run([*self.prefix, "cat", "--", path], timeout=60)
        if result.returncode != 0:
            raise OSError(f"{self.conn.target.label}: {path}: {result.stderr.strip() or 'cannot be read'}")
        return result.stdout

    def exists(self, path: str) -> bool:
        return self.conn.run([*self.prefix, "test", "-e", path], timeout=60).returncode == 0

    def write_text(self, path: str, text: str) -> None:
        self._write(path, text.encode(), 0o644)

    def send_file(self, local: Path, path: str, mode: int = 0o755) -> None:
        """Streamed from the file (a compose plugin is tens of MB), written beside ``path`` and
        moved over it: a cut transfer leaves the old file whole."""
        def feed(stdin: IO[bytes]) -> None:
            with local.open("rb") as source:
                shutil.copyfileobj(source, stdin, 1 << 20)

        self._write(path, feed, mode, timeout=600)

    def _write(self, path: str, data: Feed, mode: int, timeout: float = 60) -> None:
        result = self.conn.run_bytes([*self.prefix, "sh", "-c", WRITE, "sh", path, format(mode, "o")], feed=data,
                                     timeout=timeout, what=f"writing {path}")
        if result.returncode != 0:
            said = result.stderr.decode(errors="replace").strip()
            raise OSError(f"{self.conn.target.label}: {path}: {said or 'cannot be written'}")

    def remove(self, path: str) -> None:
        self.conn.run([*self.prefix, "rm", "-f", "--", path], timeout=60)

    def which(self, name: str) -> bool:
        return self.conn.run(["sh", "-c", 'command -v "$1" >/dev/null', "surefoot", name], timeout=60).returncode == 0

    def access(self) -> Access:
        return self.conn.access()

    def is_root(self) -> bool:
        return self.access().root

    def as_root(self) -> SshHost | None:
        elevate = self.access().elevate
        if elevate is None:
            return None
        if not elevate or self.prefix:
            return self
        return SshHost(self.processes, elevate)

    def start_detached(self, argv: Sequence[str], log_path: str) -> int:
        return self.processes.start_detached(argv, Path(log_path))

    def login_works(self) -> str | None:
        return self.conn.login_works()

    def reach(self, host: str, port: int) -> tuple[str, int]:
        """Where this machine reaches ``host:port`` as the server sees it: the server's own
        loopback goes through the connection (a forwarded local port); other hosts as they are."""
        if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
            return host, port
        key = ("127.0.0.1" if host != "::1" else "::1", port)
        if key not in self._forwards:
            self._forwards[key] = self.conn.forward_port(*key)
        return "127.0.0.1", self._forwards[key]

    def unreach(self) -> None:
        forwards, self._forwards = self._forwards, {}
        for (host, port), local in forwards.items():
            self.conn.cancel_forward(local, host, port)
