"""Running child processes that a signal can stop, whole.

Every child runs in its own process group (so a Ctrl-C on the terminal reaches
surefoot alone, which then decides), dies with surefoot if surefoot is killed
(``PR_SET_PDEATHSIG``), and is stopped group-wide when the deployment is
cancelled or its timeout passes. Commands are argument lists, never shell strings.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from surefoot.errors import CommandNotFound, CommandTimeout, Interrupted

_PR_SET_PDEATHSIG = 1
_TRACE = os.environ.get("SUREFOOT_TRACE")
_KILL_GRACE = 5.0


def _load_libc() -> ctypes.CDLL | None:
    """libc, for ``prctl``; None where there is none (not Linux: children just won't follow
    surefoot on a kill -9). Found among the running program's own symbols, not with
    ``ctypes.util.find_library``, which starts ``ldconfig -p`` to look for it."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "prctl") else None


_libc = _load_libc()


def _die_with_parent() -> None:
    """The child gets SIGKILL when its parent dies. Linux means the parent *thread*:
    a child must be waited for by the thread that started it, which every caller here does."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def trace(what: str) -> None:
    """With ``SUREFOOT_TRACE=FILE``: when each command or engine request started (for bench/)."""
    if _TRACE:
        with open(_TRACE, "a") as file:
            file.write(f"{time.time():.6f} {what}\n")


class CancelToken:
    """Set once, by a signal handler; stops every registered child process group."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None
        self._children: set[subprocess.Popen[bytes]] = set()
        # Re-entrant: ``cancel`` runs in a signal handler, which may interrupt this very
        # thread inside ``register`` or ``unregister`` while it holds the lock.
        self._lock = threading.RLock()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
        self._event.set()
        with self._lock:
            children = list(self._children)
        for child in children:
            terminate_group(child)

    def check(self) -> None:
        if self._event.is_set():
            raise Interrupted(self.signum or signal.SIGINT)

    def sleep(self, seconds: float) -> None:
        """Sleep, waking at once when cancelled (then raise Interrupted)."""
        if seconds > 0:
            self._event.wait(seconds)
        self.check()

    def register(self, child: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._children.add(child)
        if self._event.is_set():
            terminate_group(child)

    def unregister(self, child: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._children.discard(child)


def terminate_group(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it is still there after a grace.
    A held standard input is closed first: an ssh client hands its pipes to the shared
    connection, so killing it alone leaves the command running on the server; the closed input
    stops it there (see surefoot.remote)."""
    _close_stdin(child)

    def signal_group(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, sig)

    if child.poll() is not None:
        signal_group(signal.SIGKILL)  # the leader is gone; make sure its group is too
        return
    signal_group(signal.SIGTERM)

    def finish() -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(_KILL_GRACE)
        signal_group(signal.SIGKILL)

    threading.Thread(target=finish, daemon=True).start()


# The standard inputs held open for children (ProcessRunner(hold_stdin=True)), by child.
_HELD: weakref.WeakKeyDictionary[subprocess.Popen[bytes], IO[bytes]] = weakref.WeakKeyDictionary()


def _close_stdin(child: subprocess.Popen[bytes]) -> None:
    for stdin in (child.stdin, _HELD.pop(child, None)):
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()


@dataclass(frozen=True)
class Captured:
    returncode: int
    stdout: str
    stderr: str


class ProcessRunner:
    """Starts children on behalf of the phases; the one place that calls ``Popen``."""

    def __init__(self, cancel: CancelToken, env: dict[str, str] | None = None, *, hold_stdin: bool = False):
        self.cancel = cancel
        self.env = env
        # Give each child a standard input that stays open, never written, until it ends (or
        # surefoot dies): a command run on a server over SSH watches it and stops when it
        # closes (see surefoot.remote), so no work is left running there.
        self.hold_stdin = hold_stdin

    def _popen(
        self, argv: Sequence[str], cwd: Path | None, stdout: int, stderr: int, cancellable: bool,
        env: dict[str, str] | None = None, without: Collection[str] = (), stdin: int | None = None,
    ) -> subprocess.Popen[bytes]:
        if cancellable:
            self.cancel.check()
        trace(" ".join(argv))
        environ = {**os.environ, **env} if env else self.env
        if without:
            environ = {key: value for key, value in (environ or os.environ).items() if key not in without}
        try:
            child = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=environ,
                stdin=stdin if stdin is not None else subprocess.PIPE if self.hold_stdin else subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except FileNotFoundError:
            raise CommandNotFound(argv[0]) from None
        if self.hold_stdin and child.stdin is not None:
            _HELD[child] = child.stdin
        return child

    def stream(
        self,
        argv: Sequence[str],
        on_line: Callable[[str], None],
        *,
        cwd: Path | None = None,
        timeout: float | None = None,
        cancellable: bool = True,
        env: dict[str, str] | None = None,
        without: Collection[str] = (),
    ) -> int:
        """Run to completion, handing each output line (stdout and stderr merged) to ``on_line``.
        ``env`` adds variables to the inherited environment; ``without`` names variables left out
        of it (those an env file defines, so that compose reads them from the file)."""
        child = self._popen(argv, cwd, subprocess.PIPE, subprocess.STDOUT, cancellable, env, without)
        timed_out = threading.Event()
        timer = None
        if timeout is not None:

            def expire() -> None:
                timed_out.set()
                terminate_group(child)

            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
        if cancellable:
            self.cancel.register(child)
        try:
            assert child.stdout is not None
            for raw in child.stdout:
                on_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
            returncode = child.wait()
        finally:
            _close_stdin(child)
            if timer:
                timer.cancel()
            self.cancel.unregister(child)
            if child.poll() is None:
                terminate_group(child)
        if cancellable:
            self.cancel.check()
        if timed_out.is_set():
            raise CommandTimeout(f"{argv[0]} ran past its timeout of {timeout:g}s and was stopped")
        return returncode

    @contextmanager
    def follow(self, argv: Sequence[str], on_line: Callable[[str], None],
               on_end: Callable[[], None] = lambda: None) -> Iterator[None]:
        """Run ``argv`` in the background for the length of the block (a `docker events`
        stream), handing each stdout line to ``on_line`` from a reader thread; ``on_end``
        is called when the stream ends (the block ended, the command died, or a cancel)."""
        child = self._popen(argv, None, subprocess.PIPE, subprocess.DEVNULL, True)
        self.cancel.register(child)

        def read() -> None:
            try:
                assert child.stdout is not None
                for raw in child.stdout:
                    on_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
            finally:
                on_end()

        reader = threading.Thread(target=read, name=f"follow-{argv[1] if len(argv) > 1 else argv[0]}", daemon=True)
        reader.start()
        try:
            yield
        finally:
            self.cancel.unregister(child)
            _close_stdin(child)
            terminate_group(child)
            reader.join(timeout=_KILL_GRACE)

    def start_detached(self, argv: Sequence[str], log_path: Path) -> int:
        """Start a daemon that must outlive surefoot (dockerd where there is no systemd): its own
        session, not stopped by a cancel nor by surefoot's death, output appended to ``log_path``.
        Returns its pid; the child is never waited for (its state reads from /proc)."""
        self.cancel.check()
        trace(" ".join(argv))
        with open(log_path, "ab") as log:
            try:
                child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
            except FileNotFoundError:
                raise CommandNotFound(argv[0]) from None
        return child.pid

    def to_file(
        self, argv: Sequence[str], path: Path, *, cwd: Path | None = None, timeout: float | None = None,
        without: Collection[str] = (),
    ) -> Captured:
        """Run with standard output written to ``path`` (created 0600); stderr is returned."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            child = self._popen(argv, cwd, fd, subprocess.PIPE, True, without=without)
        finally:
            os.close(fd)
        return self._communicate(child, argv, timeout, True)

    def capture(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        timeout: float | None = 60.0,
        cancellable: bool = True,
        without: Collection[str] = (),
        env: dict[str, str] | None = None,
    ) -> Captured:
        """Run to completion and return its output (stdout and stderr kept apart); ``env`` and
        ``without`` as for :meth:`stream`."""
        child = self._popen(argv, cwd, subprocess.PIPE, subprocess.PIPE, cancellable, env, without)
        return self._communicate(child, argv, timeout, cancellable)

    def _communicate(
        self, child: subprocess.Popen[bytes], argv: Sequence[str], timeout: float | None, cancellable: bool
    ) -> Captured:
        if cancellable:
            self.cancel.register(child)
        held, child.stdin = child.stdin, None  # communicate() would close it at once
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            terminate_group(child)
            child.communicate()
            raise CommandTimeout(f"{' '.join(argv[:3])} did not finish within {timeout:g}s") from None
        finally:
            if held is not None:
                held.close()
            self.cancel.unregister(child)
        if cancellable:
            self.cancel.check()
        return Captured(child.returncode, (out or b"").decode("utf-8", "replace"),
                        (err or b"").decode("utf-8", "replace"))


def capture_once(argv: Sequence[str], *, cwd: Path | None = None, timeout: float | None = 60.0) -> Captured:
    """A short command outside any deployment's cancel (git's commit, compose's view of a
    folder for ``init``): run to completion, its output kept."""
    return ProcessRunner(CancelToken()).capture(argv, cwd=cwd, timeout=timeout, cancellable=False)

