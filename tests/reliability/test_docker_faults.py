"""Docker faults: each a clear message, the phase failed, the deployment resumable once the fault is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Project, migrate_command, wait_gone

pytestmark = [pytest.mark.docker, pytest.mark.reliability]


def test_a_failing_image_build(stack: Project) -> None:
    stack.write("web/Dockerfile", "FROM surefoot-test/busybox:1\nRUN echo 'compiling'; exit 42\n")
    compose = (stack.path / "compose.yaml").read_text().replace(
        "  web:\n    image: surefoot-test/busybox:1", "  web:\n    build: ./web")
    assert "build: ./web" in compose
    stack.write("compose.yaml", compose)
    failed = stack.run("deploy")
    assert failed.returncode == 1
    assert "phase build failed: docker compose build failed" in failed.stderr
    assert "compiling" in failed.stderr  # the build's own output, in the last lines shown
    assert stack.status()["resume_at"] == "build"
    stack.write("web/Dockerfile", "FROM surefoot-test/busybox:1\nRUN echo 'compiling'\n")
    fixed = stack.run("deploy")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "build: started (attempt 2; resuming after it was failed)" in fixed.stdout


def test_the_disk_check_at_its_threshold(stack: Project) -> None:
    import shutil

    free = shutil.disk_usage("/").free
    gib = 1024**3
    for minimum, expect in ((free + 2 * gib, 1), (max(free - 2 * gib, 0), 0)):
        stack.configure(migrate_command("true"), "")
        config = (stack.path / "surefoot.toml").read_text().replace(
            "[phases.pull-images]", f"[phases.preflight]\nmin_disk = {minimum}\n\n[phases.pull-images]")
        stack.write("surefoot.toml", config)
        result = stack.run("deploy")
        assert result.returncode == expect, result.stdout + result.stderr
        if expect:
            assert "disk: fail" in result.stdout and "free on /" in result.stdout


def _engine_up() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0 or Path("/run/systemd/system").is_dir(),
                    reason="stops the machine's own dockerd (root, no systemd)")
def test_the_daemon_stopped_in_the_middle_of_a_phase(stack: Project) -> None:
    stack.configure(migrate_command("echo migrating; sleep 60"))
    deploy = stack.start("deploy")
    stack.wait_for_phase("database-migrate")
    deadline = time.monotonic() + 60
    while not stack.containers("label=io.surefoot.oneoff", "status=running"):
        if time.monotonic() > deadline:
            pytest.fail("the migration's one-off container never ran")
        time.sleep(0.2)
    pid = int(Path("/var/run/docker.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    try:
        code = deploy.wait(timeout=120)
        output = deploy.stdout.read() if deploy.stdout else ""
        assert code == 1, output
        assert "phase database-migrate failed" in output
        assert "Traceback" not in output
        status = stack.status()
        assert status["state"] == "failed" and status["resume_at"] == "database-migrate"
    finally:
        wait_gone(pid)
        # surefoot itself brings the daemon back.
        subprocess.run([sys.executable, "-m", "surefoot", "-C", str(stack.path), "prerequisites"],
                       capture_output=True, timeout=300)
        if not _engine_up():
            subprocess.run(["bash", str(Path(__file__).parents[2] / "scripts" / "setup.sh")], check=False)
    assert _engine_up()
    stack.configure(migrate_command("echo migrated"))
    resumed = stack.run("deploy")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
