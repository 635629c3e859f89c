"""Running children: :class:`ProcessRunner`, the one place that calls ``Popen`` for the phases,
and :class:`Processes`, what an engine or a host runs its commands through."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from surefoot.base.errors import CommandNotFound, CommandTimeout
from surefoot.proc.groups import (
    HELD_STDIN,
    KILL_GRACE,
    CancelToken,
    close_stdin,
    deadline,
    die_with_parent,
    terminate_group,
    trace,
)


@dataclass(frozen=True)
class Captured:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Exchanged:
    """How a command fed bytes on its standard input ended, and its output as bytes."""

    returncode: int
    stdout: bytes
    stderr: bytes


Feed = bytes | Callable[[IO[bytes]], None]


class Processes(Protocol):
    """What runs an engine's and a host's commands: :class:`ProcessRunner` on this machine, or
    :class:`surefoot.hosts.ssh.remote.RemoteProcesses` on a server (the same calls, run there)."""

    cancel: CancelToken

    def stream(self, argv: Sequence[str], on_line: Callable[[str], None], *, cwd: Path | None = None,
               timeout: float | None = None, cancellable: bool = True, env: dict[str, str] | None = None,
               without: Collection[str] = ()) -> int: ...

    def capture(self, argv: Sequence[str], *, cwd: Path | None = None, timeout: float | None = 60.0,
                cancellable: bool = True, without: Collection[str] = (),
                env: dict[str, str] | None = None) -> Captured: ...

    def to_file(self, argv: Sequence[str], path: Path, *, cwd: Path | None = None, timeout: float | None = None,
                without: Collection[str] = ()) -> Captured: ...

    def follow(self, argv: Sequence[str], on_line: Callable[[str], None],
               on_end: Callable[[], None] = ...) -> contextlib.AbstractContextManager[None]: ...

    def start_detached(self, argv: Sequence[str], log_path: Path) -> int: ...


class ProcessRunner:
    """Starts children on behalf of the phases; the one place that calls ``Popen``."""

    def __init__(self, cancel: CancelToken, env: dict[str, str] | None = None, *, hold_stdin: bool = False):
        self.cancel = cancel
        self.env = env
        # Give each child a standard input that stays open, never written, until it ends (or
        # surefoot dies): a command run on a server over SSH watches it and stops when it
        # closes (see surefoot.hosts.ssh.remote), so no work is left running there.
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
                preexec_fn=die_with_parent,
            )
        except FileNotFoundError:
            raise CommandNotFound(argv[0]) from None
        if self.hold_stdin and child.stdin is not None:
            HELD_STDIN[child] = child.stdin
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
        if cancellable:
            self.cancel.register(child)
        with deadline([child], timeout) as timed_out:
            try:
                assert child.stdout is not None
                for raw in child.stdout:
                    on_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
                returncode = child.wait()
            finally:
                close_stdin(child)
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
            close_stdin(child)
            terminate_group(child)
            reader.join(timeout=KILL_GRACE)

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
        input: str | None = None,
        leaves_daemon: bool = False,
    ) -> Captured:
        """Run to completion and return its output (stdout and stderr kept apart); ``env`` and
        ``without`` as for :meth:`stream`; ``input``: its standard input. ``leaves_daemon``: the
        command leaves a process behind that keeps its output open (``ssh -f``, which goes to
        the background once connected), so the output goes to files, not pipes that would not end."""
        if leaves_daemon:
            return self._to_files(argv, cwd, timeout, cancellable)
        stdin = subprocess.PIPE if input is not None else None
        child = self._popen(argv, cwd, subprocess.PIPE, subprocess.PIPE, cancellable, env, without, stdin=stdin)
        return self._communicate(child, argv, timeout, cancellable, input)

    def _to_files(self, argv: Sequence[str], cwd: Path | None, timeout: float | None,
                  cancellable: bool) -> Captured:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            child = self._popen(argv, cwd, out.fileno(), err.fileno(), cancellable, stdin=subprocess.DEVNULL)
            result = self._communicate(child, argv, timeout, cancellable)
            out.seek(0)
            err.seek(0)
            return Captured(result.returncode, out.read().decode("utf-8", "replace"),
                            err.read().decode("utf-8", "replace"))

    def exchange(self, argv: Sequence[str], feed: Feed, *, timeout: float | None = 60.0,
                 cancellable: bool = True) -> Exchanged:
        """Run ``argv`` with ``feed`` as its standard input (bytes, or a function that writes a
        stream of any size to it) and its output kept as bytes, in files (never whole in a
        pipe). Past ``timeout`` (None: none) the command is stopped and CommandTimeout raised;
        an exception in ``feed`` stops it too (it sees a cut stream, never a clean end) and is
        raised as it is."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            child = self._popen(argv, None, out.fileno(), err.fileno(), cancellable, stdin=subprocess.PIPE)
            if cancellable:
                self.cancel.register(child)
            with deadline([child], timeout) as expired:
                try:
                    assert child.stdin is not None
                    # BrokenPipeError: the child ended early; its exit code and stderr say why.
                    with contextlib.suppress(BrokenPipeError), child.stdin as stdin:
                        feed(stdin) if callable(feed) else stdin.write(feed)
                    returncode = child.wait()
                except BaseException:
                    terminate_group(child)
                    child.wait()
                    raise
                finally:
                    self.cancel.unregister(child)
            if cancellable:
                self.cancel.check()
            if expired.is_set():
                raise CommandTimeout(f"{' '.join(argv[:3])} did not finish within {timeout:g}s")
            out.seek(0)
            err.seek(0)
            return Exchanged(returncode, out.read(), err.read())

    def _communicate(
        self, child: subprocess.Popen[bytes], argv: Sequence[str], timeout: float | None, cancellable: bool,
        input: str | None = None,
    ) -> Captured:
        if cancellable:
            self.cancel.register(child)
        held = None
        if input is None:
            held, child.stdin = child.stdin, None  # communicate() would close it at once
        try:
            out, err = child.communicate(input.encode("utf-8") if input is not None else None, timeout=timeout)
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


def capture_once(argv: Sequence[str], *, cwd: Path | None = None, timeout: float | None = 60.0,
                 leaves_daemon: bool = False) -> Captured:
    """A short command outside any deployment's cancel (git's commit, compose's view of a
    folder for ``init``): run to completion, its output kept."""
    return ProcessRunner(CancelToken()).capture(argv, cwd=cwd, timeout=timeout, cancellable=False,
                                                leaves_daemon=leaves_daemon)
