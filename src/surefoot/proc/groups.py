"""Process groups that a cancel stops whole: the cancel token, the group's termination, and the
child's death with its parent."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import IO

from surefoot.base.errors import Interrupted

_PR_SET_PDEATHSIG = 1
_TRACE = os.environ.get("SUREFOOT_TRACE")
KILL_GRACE = 5.0


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


def die_with_parent() -> None:
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
    stops it there (see surefoot.hosts.ssh.remote)."""
    close_stdin(child)

    def signal_group(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, sig)

    if child.poll() is not None:
        signal_group(signal.SIGKILL)  # the leader is gone; make sure its group is too
        return
    signal_group(signal.SIGTERM)

    def finish() -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(KILL_GRACE)
        signal_group(signal.SIGKILL)

    threading.Thread(target=finish, daemon=True).start()


# The standard inputs held open for children (ProcessRunner(hold_stdin=True)), by child.
HELD_STDIN: weakref.WeakKeyDictionary[subprocess.Popen[bytes], IO[bytes]] = weakref.WeakKeyDictionary()


def close_stdin(child: subprocess.Popen[bytes]) -> None:
    for stdin in (child.stdin, HELD_STDIN.pop(child, None)):
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()


@contextlib.contextmanager
def deadline(children: Sequence[subprocess.Popen[bytes]], timeout: float | None) -> Iterator[threading.Event]:
    """For the length of the block: the children's process groups are stopped once ``timeout``
    seconds have passed (None: never); the event says whether that happened."""
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        for child in children:
            terminate_group(child)

    timer = threading.Timer(timeout, expire) if timeout is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        yield expired
    finally:
        if timer is not None:
            timer.cancel()
