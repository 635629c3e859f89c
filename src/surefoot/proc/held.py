"""A command kept running for as long as its holder wants (a remote lock's SSH session)."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence

from surefoot.base.errors import CommandNotFound, CommandTimeout
from surefoot.proc import trace


class Held:
    """A command kept running for as long as its holder wants (the SSH session that holds a
    target's deployment lock). Its stdin is a pipe that only this object writes to
    (:meth:`write`): the command reads EOF when :meth:`close` is called or when surefoot
    dies, however it dies (the kernel closes the pipe). It runs in its own session, so a
    Ctrl-C on the terminal reaches surefoot alone. No death signal: Linux ties
    ``PR_SET_PDEATHSIG`` to the starting *thread*, so a command held from a worker thread
    would end with it; the closed pipe does that job. stderr goes to a file (:attr:`stderr`
    after :meth:`close`)."""

    def __init__(self, argv: Sequence[str]):
        trace(" ".join(argv))
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        try:
            self._child = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=self._errors, start_new_session=True)
        except FileNotFoundError:
            self._errors.close()
            raise CommandNotFound(argv[0]) from None
        self._buffer = b""
        self._stdin_lock = threading.Lock()
        self.stderr = ""

    @property
    def pid(self) -> int:
        return self._child.pid

    def running(self) -> bool:
        return self._child.poll() is None

    def readline(self, timeout: float) -> str | None:
        """The next line of its output, without the newline; None at the end of the output.
        Raises CommandTimeout when no whole line comes within ``timeout`` seconds."""
        assert self._child.stdout is not None
        fd = self._child.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommandTimeout(f"no answer within {timeout:g}s")
            if not select.select([fd], [], [], left)[0]:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                line, self._buffer = self._buffer, b""
                return line.decode("utf-8", "replace") if line else None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", "replace")

    def write(self, data: bytes) -> bool:
        """Writes to its stdin; False once that is closed or the command is gone."""
        with self._stdin_lock:
            stdin = self._child.stdin
            if stdin is None or stdin.closed:
                return False
            try:
                stdin.write(data)
                stdin.flush()
            except (OSError, ValueError):
                return False
            return True

    def close(self, timeout: float = 10) -> int:
        """Closes its stdin (EOF) and waits for it to end, killing it after ``timeout``.
        Returns its exit code; safe to call twice."""
        with self._stdin_lock:
            if self._child.stdin is not None and not self._child.stdin.closed:
                with contextlib.suppress(OSError):
                    self._child.stdin.close()
        try:
            self._child.wait(timeout)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        if not self._errors.closed:
            self._errors.seek(0)
            self.stderr = self._errors.read().decode("utf-8", "replace")
            self._errors.close()
        if self._child.stdout is not None:
            self._child.stdout.close()
        return self._child.returncode
