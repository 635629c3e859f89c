"""Children die with surefoot: after a kill -9 no command it started is left running."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from surefoot.base.errors import CommandTimeout, Interrupted
from surefoot.proc import CancelToken, ProcessRunner
from surefoot.proc.groups import _libc
from surefoot.proc.pipe import pipe


@pytest.mark.skipif(_libc is None, reason="needs Linux's prctl")
def test_a_child_dies_when_surefoot_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import sys\n"
        "from surefoot.proc import CancelToken, ProcessRunner\n"
        f"ProcessRunner(CancelToken()).capture(['sh', '-c', 'echo $$ > {pid_file}; exec sleep 60'], timeout=None)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert Path(f"/proc/{child}").exists()
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and "Z" not in _state(child):
        assert time.monotonic() < deadline, "the child outlived the killed parent"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_libc_is_found_on_linux() -> None:
    assert _libc is not None and hasattr(_libc, "prctl")


# --- ProcessRunner.pipe: first | second, copied through in chunks --------------------------

def _runner() -> ProcessRunner:
    return ProcessRunner(CancelToken())


def test_pipe_copies_everything_and_counts_the_bytes() -> None:
    lines: list[str] = []
    size = 5 * 1024 * 1024 + 7
    piped = pipe(_runner(), ["head", "-c", str(size), "/dev/zero"], ["wc", "-c"], on_line=lines.append, chunk=65536)
    assert (piped.first, piped.second, piped.bytes) == (0, 0, size)
    assert [line.strip() for line in lines] == [str(size)]


def test_pipe_keeps_the_first_commands_errors_and_the_second_sees_the_end() -> None:
    piped = pipe(_runner(), [sys.executable, "-c", "import sys; sys.stderr.write('no such image: x\\n'); sys.exit(3)"],
                           ["wc", "-c"], on_line=lambda _: None)
    assert piped.first == 3 and piped.first_errors == ("no such image: x",)
    assert piped.second == 0 and piped.second_output[-1].strip() == "0"


def test_pipe_a_second_command_that_dies_early_ends_the_first() -> None:
    started = time.monotonic()
    piped = pipe(_runner(), ["cat", "/dev/zero"], ["sh", "-c", "head -c 1000 >/dev/null; echo full >&2; exit 1"],
                           on_line=lambda _: None, timeout=30)
    assert time.monotonic() - started < 10
    assert piped.second == 1 and piped.second_output == ("full",)
    assert piped.first == -signal.SIGPIPE


def test_pipe_stops_both_at_its_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        pipe(_runner(), ["sleep", "30"], ["sleep", "30"], on_line=lambda _: None, timeout=0.5)
    assert time.monotonic() - started < 10


def test_pipe_a_cancel_stops_both() -> None:
    runner = _runner()
    threading.Timer(0.5, runner.cancel.cancel, args=(signal.SIGINT,)).start()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        pipe(runner, ["cat", "/dev/zero"], ["sleep", "30"], on_line=lambda _: None)
    assert time.monotonic() - started < 10
