"""One deployment at a time per project: an flock the kernel drops when its holder dies.

The lock is ``deploy.lock`` in the state folder. Its holder also writes
``deploy.lock.json`` (pid, host, since) for display; that file may outlive a
killed holder, so readers trust it only while the lock itself is held.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

from surefoot.base.errors import LockHeld, StateError
from surefoot.base.text import printable
from surefoot.store import now_iso, private_folder

LOCK_NAME = "deploy.lock"
# A ``status`` probe holds a shared lock for microseconds; a deploy that meets one
# retries this long before concluding that another deploy holds the lock.
_ACQUIRE_PATIENCE = 0.5


class Holder(NamedTuple):
    """Who holds the lock, as its holder wrote it (any field may be unknown)."""

    pid: int | None
    host: str | None
    since: str | None

    def describe(self) -> str:
        who = f"pid {self.pid}" if self.pid else "an unknown process"
        where = f" on {self.host}" if self.host else ""
        when = f" since {self.since}" if self.since else ""
        return f"{who}{where}{when}"


def holder_of(data: Any) -> Holder:
    """The holder a lock's info file names; a field missing or of another type (or a file that
    is not a JSON object) is unknown."""
    if not isinstance(data, dict):
        return Holder(None, None, None)
    pid, host, since = data.get("pid"), data.get("host"), data.get("since")
    return Holder(pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None,
                  printable(host) if isinstance(host, str) and host else None,
                  printable(since) if isinstance(since, str) and since else None)


def _read_holder(path: Path) -> Holder:
    for _ in range(20):  # the new holder may not have written it yet
        try:
            return holder_of(json.loads(path.read_text()))
        except (OSError, ValueError):
            time.sleep(0.05)
    return Holder(None, None, None)


class ProjectLock:
    def __init__(self, state_dir: Path):
        self.path = state_dir / LOCK_NAME
        self.info_path = state_dir / (LOCK_NAME + ".json")
        self._fd: int | None = None

    def acquire(self) -> Holder:
        try:
            private_folder(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot create the lock file: {exc.strerror}") from None
        deadline = time.monotonic() + _ACQUIRE_PATIENCE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                os.close(fd)
                holder = _read_holder(self.info_path)
                raise LockHeld(
                    f"another deployment of this project is running: {holder.describe()}",
                    holder.pid,
                    holder.host,
                    holder.since,
                ) from None
        self._fd = fd
        import socket  # here, not at the top: `surefoot status` reads the lock and never needs it

        me = Holder(os.getpid(), socket.gethostname(), now_iso())
        tmp = self.info_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"pid": me.pid, "host": me.host, "since": me.since}))
            os.replace(tmp, self.info_path)
        except OSError as exc:
            self.release()
            raise StateError(f"{self.info_path}: cannot write: {exc.strerror}") from None
        return me

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.info_path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> ProjectLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def current_holder(state_dir: Path) -> Holder | None:
    """Who holds the lock, without waiting for it: None when nobody does."""
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(state_dir / (LOCK_NAME + ".json"))
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
