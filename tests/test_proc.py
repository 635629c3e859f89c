"""Children die with surefoot: after a kill -9 no command it started is left running."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from surefoot.proc import _libc


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
