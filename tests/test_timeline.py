"""``surefoot history --html``: the page, rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Project, migrate_command
from surefoot.cli.reports.timeline import deployment_timeline, render_html, resume_point
from surefoot.store import Deployment, PhaseRun

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium, offline, its console written to stderr."""
    assert CHROMIUM, "chromium is missing: run scripts/setup.sh (installs Debian's chromium)"
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=5000", *args, page.as_uri()]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line and ("Uncaught" in line or "Error" in line or ":ERROR:" in line)]


def run(phase: str, attempt: int, status: str, start: str, end: str | None, error: str | None = None) -> PhaseRun:
    return PhaseRun(0, 1, phase, attempt, status, start, end, None, None, error, None, None)


def test_timeline_cuts_idle_stretches_and_names_the_resume_point() -> None:
    dep = Deployment(1, "p", "fresh", "failed", "2026-01-01T10:00:00.000Z", "2026-01-01T12:00:10.000Z",
                     1, "h", "u", "boom")
    runs = [
        run("preflight", 1, "completed", "2026-01-01T10:00:00.000Z", "2026-01-01T10:00:02.000Z"),
        *(run(name, 1, "skipped", "2026-01-01T10:00:02.000Z", "2026-01-01T10:00:02.000Z")
          for name in ("prerequisites", "configuration", "database-start")),
        run("build", 1, "completed", "2026-01-01T10:00:02.000Z", "2026-01-01T10:00:12.000Z"),
        run("pull-images", 1, "completed", "2026-01-01T10:00:02.000Z", "2026-01-01T10:00:05.000Z"),
        run("database-migrate", 1, "failed", "2026-01-01T10:00:12.000Z", "2026-01-01T10:00:13.000Z", "exit 1"),
        run("database-migrate", 2, "failed", "2026-01-01T12:00:00.000Z", "2026-01-01T12:00:10.000Z", "exit 1"),
    ]
    timeline = deployment_timeline(dep, runs, None)  # type: ignore[arg-type]
    assert resume_point(dep, runs) == "database-migrate" == timeline["resume_at"]
    bars = timeline["bars"]
    # Side by side: build and pull-images overlap.
    build = next(b for b in bars if b["phase"] == "build")
    pull = next(b for b in bars if b["phase"] == "pull-images")
    assert pull["start"] < build["end"] and build["start"] < pull["end"]
    # The two hours between the attempts are cut to a few seconds, and said.
    second = bars[-1]
    assert second["attempt"] == 2 and 13 < second["start"] < 20 and second["duration"] == 10
    assert timeline["breaks"] == [{"at": 13.0, "seconds": 7187.0}]
    page = render_html({"project": "p</script><b>", "generated_at": "now", "gap_shown": 3, "deployments": [timeline],
                        "trend": {"labels": [], "outcomes": [], "phases": {}}})
    assert "p</script><b>" not in page.split("<script>")[0]  # escaped in the text, and in the JSON
    assert page.count("</script>") == 3


@pytest.mark.docker
def test_the_html_history_renders_in_chromium_with_every_phase(stack: Project, tmp_path: Path) -> None:
    stack.configure(migrate_command("exit 3"))
    failed = stack.run("deploy")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    stack.configure(migrate_command("echo migrated"))
    assert stack.run("deploy").returncode == 0  # #1 resumed: its migration ran twice
    stack.configure(migrate_command("echo failing; exit 4"))
    assert stack.run("deploy").returncode == 1  # #2 stops at its migration
    page = tmp_path / "history.html"
    result = stack.run("history", "--html", str(page))
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    assert "http://" not in text.split("<script>")[0] and "<link" not in text  # nothing fetched
    dom = chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_errors(dom.stderr) == [], dom.stderr
    root = re.search(r"<html[^>]*>", dom.stdout)
    assert root is not None
    assert 'data-charts="3"' in root.group(0), root.group(0)  # 2 timelines and the trend
    assert "data-error" not in root.group(0)
    latest = stack.status()["phases"]
    for phase in latest:
        assert f'data-phase="{phase["name"]}"' in dom.stdout
    assert "resumes at database-migrate" in dom.stdout  # the failed deployment #2
    assert 'data-phase="database-migrate"><td>database-migrate (resume here)' in dom.stdout
    shot = tmp_path / "history.png"
    picture = chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1100,1400",
                       "--hide-scrollbars")
    assert picture.returncode == 0, picture.stderr[-2000:]
    assert shot.stat().st_size > 10_000
    shutil.copy(shot, "/tmp/surefoot-history-test.png")
