"""``first | second`` between two children (``docker save | ssh TARGET docker load``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from surefoot.base.errors import CommandTimeout
from surefoot.proc import KILL_GRACE, ProcessRunner, terminate_group
from surefoot.proc.groups import deadline


@dataclass(frozen=True)
class Piped:
    """How ``first | second`` ended: each exit code, the bytes that went through, and the last
    lines each printed (first's stderr; second's stdout and stderr merged)."""

    first: int
    second: int
    bytes: int
    first_errors: tuple[str, ...]
    second_output: tuple[str, ...]


def pipe(
    runner: ProcessRunner, first: Sequence[str], second: Sequence[str], *, on_line: Callable[[str], None],
    timeout: float | None = None, chunk: int = 1 << 20,
) -> Piped:
    """Run ``first | second`` (``docker save | ssh TARGET docker load``): first's standard output
    is copied into second's input ``chunk`` bytes at a time (never held whole), second's output
    lines go to ``on_line`` (called on this thread), first's stderr is kept. A cancel or the
    timeout stops both process groups; either ending early ends the other (EOF, or SIGPIPE)."""
    producer = runner._popen(first, None, subprocess.PIPE, subprocess.PIPE, True)
    try:
        consumer = runner._popen(second, None, subprocess.PIPE, subprocess.STDOUT, True, stdin=subprocess.PIPE)
    except BaseException:
        terminate_group(producer)
        producer.wait()
        raise
    children = (producer, consumer)
    copied = [0]
    errors: deque[str] = deque(maxlen=20)
    output: deque[str] = deque(maxlen=20)

    def pump() -> None:
        assert producer.stdout is not None and consumer.stdin is not None
        source, sink = producer.stdout.fileno(), consumer.stdin.fileno()
        try:
            while data := os.read(source, chunk):
                view = memoryview(data)
                while view:
                    view = view[os.write(sink, view):]
                copied[0] += len(data)
        except OSError:  # second ended (EPIPE): first gets SIGPIPE once its output is closed
            pass
        finally:
            with contextlib.suppress(OSError):
                consumer.stdin.close()
            producer.stdout.close()

    def drain() -> None:
        assert producer.stderr is not None
        for raw in producer.stderr:
            errors.append(raw.decode("utf-8", "replace").rstrip("\r\n"))

    threads = [threading.Thread(target=pump, name="pipe-pump", daemon=True),
               threading.Thread(target=drain, name="pipe-stderr", daemon=True)]
    for child in children:
        runner.cancel.register(child)
    try:
        with deadline(children, timeout) as timed_out:
            for thread in threads:
                thread.start()
            assert consumer.stdout is not None
            for raw in consumer.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                output.append(line)
                on_line(line)
            consumer.wait()
            producer.wait()
    finally:
        for child in children:
            runner.cancel.unregister(child)
            if child.poll() is None:
                terminate_group(child)
        for thread in threads:
            thread.join(timeout=KILL_GRACE)
    runner.cancel.check()
    if timed_out.is_set():
        raise CommandTimeout(f"{first[0]} | {second[0]} ran past its timeout of {timeout:g}s and was stopped")
    return Piped(producer.returncode, consumer.returncode, copied[0], tuple(errors), tuple(output))
