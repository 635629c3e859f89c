"""The engine end to end on the real Docker engine: deploy, fail, resume, update."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from conftest import Project, Projects, migrate_command

pytestmark = pytest.mark.docker

PHASES = [
    "preflight", "prerequisites", "configuration", "pull-images", "build", "database-start",
    "database-migrate", "services-start", "health-wait", "cleanup",
]


def health(project: Project) -> dict[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{project.port}/health", timeout=5) as response:
        return dict(json.loads(response.read()))


def test_deploy_completes_and_status_reports_every_phase(stack: Project) -> None:
    result = stack.run("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    status = stack.status()
    assert status["project"] == stack.name
    assert status["state"] == "completed"
    assert status["resume_at"] is None
    assert status["lock"] is None
    assert [p["name"] for p in status["phases"]] == PHASES
    statuses = {p["name"]: p["status"] for p in status["phases"]}
    assert statuses["pull-images"] == "skipped"  # disabled in this stack's config
    assert statuses["build"] == "skipped"  # no service has a build section
    assert all(s == "completed" for n, s in statuses.items() if n not in ("pull-images", "build"))
    assert health(stack)["greeting"] == "hello"
    # The plain output (no terminal) is timestamped lines, the migration's output among them.
    assert "database-migrate | migrated" in result.stdout
    # The database wait followed the engine's events (its container's start at least).
    followed = re.search(r"database-start \| (\d+) engine event\(s\) followed", result.stdout)
    assert followed is not None and int(followed.group(1)) >= 1, result.stdout


def test_failed_migration_resumes_at_the_migration_only(stack: Project) -> None:
    stack.configure(migrate_command("echo 'relation items missing' >&2; exit 3"))
    failed = stack.run("deploy")
    assert failed.returncode == 1
    assert "phase database-migrate failed: migration command exited with code 3" in failed.stderr
    assert "relation items missing" in failed.stderr  # the last lines of the log are shown
    assert "resume with: " in failed.stderr
    before = stack.status()
    assert before["state"] == "failed"
    assert before["resume_at"] == "database-migrate"
    earlier = {p["name"]: p["started_at"] for p in before["phases"][:6]}

    stack.configure(migrate_command("echo fixed"))
    resumed = stack.run("deploy")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = stack.status()
    assert after["state"] == "completed"
    assert after["deployment"]["id"] == before["deployment"]["id"]
    assert {p["name"]: p["started_at"] for p in after["phases"][:6]} == earlier
    migrate = next(p for p in after["phases"] if p["name"] == "database-migrate")
    assert migrate["attempts"] == 2
    assert "preflight: skipped (done before, inputs unchanged)" in resumed.stdout


def test_env_edit_after_failure_is_deployed_by_the_resume(stack: Project) -> None:
    stack.configure(migrate_command("exit 1"))
    assert stack.run("deploy").returncode == 1
    stack.write(".env", "GREETING=edited\n")
    stack.configure(migrate_command("true"))
    resumed = stack.run("deploy")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # The env file feeds the compose model too: both are named as the reason.
    assert "preflight: started (attempt 2; inputs changed since it completed: compose, env)" in (
        resumed.stdout
    )
    assert health(stack)["greeting"] == "edited"
    env = stack.compose("exec", "-T", "web", "sh", "-c", "echo $GREETING").strip()
    assert env == "edited"


def test_second_deploy_after_success_is_an_update(stack: Project) -> None:
    assert stack.run("deploy").returncode == 0
    first = stack.status()["deployment"]
    stack.write(".env", "GREETING=second\n")
    update = stack.run("deploy")
    assert update.returncode == 0, update.stdout + update.stderr
    status = stack.status()
    assert status["deployment"]["id"] == first["id"] + 1
    assert status["deployment"]["kind"] == "update"
    assert all(p["attempts"] == 1 for p in status["phases"])
    assert health(stack)["greeting"] == "second"


def test_fresh_starts_over_and_keeps_history(stack: Project) -> None:
    stack.configure(migrate_command("exit 4"))
    assert stack.run("deploy").returncode == 1
    stack.configure(migrate_command("true"))
    fresh = stack.run("deploy", "--fresh")
    assert fresh.returncode == 0
    status = stack.status()
    assert status["deployment"]["kind"] == "fresh"
    assert status["deployment"]["id"] == 2
    # --resume with nothing unfinished says so and changes nothing.
    nothing = stack.run("deploy", "--resume")
    assert nothing.returncode == 0
    assert "nothing to resume" in nothing.stdout
    assert stack.status()["deployment"]["id"] == 2


def test_database_that_exits_fails_at_once_with_its_logs(stack: Project) -> None:
    compose = (stack.path / "compose.yaml").read_text().replace(
        'command: ["sh", "-c", "touch /tmp/ready; exec sleep 3600"]',
        'command: ["sh", "-c", "echo disk full, giving up; exit 7"]',
    )
    stack.write("compose.yaml", compose)
    result = stack.run("deploy")
    assert result.returncode == 1
    assert "a database service is not ready: db exited with code 7" in result.stderr
    assert "disk full, giving up" in result.stderr
    assert stack.status()["resume_at"] == "database-start"


def test_health_gate_failure_is_resumable(stack: Project) -> None:
    compose = (stack.path / "compose.yaml").read_text().replace('\\"healthy\\"', '\\"degraded\\"')
    stack.write("compose.yaml", compose)
    stack.configure(migrate_command("true"), "")
    config = (stack.path / "surefoot.toml").read_text().replace('timeout = "30s"', 'timeout = "2s"')
    stack.write("surefoot.toml", config)
    result = stack.run("deploy")
    assert result.returncode == 1
    assert "the health gate failed: health: 2 passes in a row not reached within 2s" in result.stderr
    assert "body lacks" in result.stderr
    assert stack.status()["resume_at"] == "health-wait"


def test_a_failed_pull_of_the_database_image_warns_or_stops_before_the_databases(stack: Project) -> None:
    """The image is only local and no registry answers: compose's pull fails (and may exit 0)."""
    config = stack.path / "surefoot.toml"
    config.write_text(config.read_text().replace("[phases.pull-images]\nenabled = false",
                                                 "[phases.pull-images]\nfail_on_error = true"))
    stopped = stack.run("deploy")
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    assert "phase pull-images failed: could not pull db" in stopped.stderr
    phases = {p["name"]: p["status"] for p in stack.status()["phases"]}
    assert phases["pull-images"] == "failed"
    assert phases["database-start"] == "pending"  # its image never arrived: not started

    config.write_text(config.read_text().replace("fail_on_error = true", "fail_on_error = false"))
    warned = stack.run("deploy")
    assert warned.returncode == 0, warned.stdout + warned.stderr
    assert "could not pull db, web; going on with the images on hand" in warned.stdout
    assert stack.status()["state"] == "completed"


SHARED_DATA_COMPOSE = """
services:
  db:
    image: {image}
    command: ["sh", "-c", "echo 'schema 1' > /data/state; exec sleep 3600"]
    stop_signal: SIGKILL
    volumes: ["data:/data"]
volumes:
  data:
"""


def test_a_resumed_migration_keeps_the_backup_from_before_its_first_attempt(projects: Projects) -> None:
    """A migration that fails halfway leaves part of its changes; the resume must not
    replace the release's backup with a dump of that half-migrated database."""
    project = projects.new({"compose.yaml": SHARED_DATA_COMPOSE})
    def configure(migration: str) -> None:
        project.write("surefoot.toml", (
            f'[project]\nname = "{project.name}"\n[phases.pull-images]\nenabled = false\n'
            '[phases.database-start]\nservices = ["db"]\n'
            f'[phases.database-migrate]\nservice = "db"\ncommand = {migrate_command(migration)}\n'
            'backup = { service = "db", command = ["cat", "/data/state"] }\n'
        ))

    configure("echo 'half of schema 2' >> /data/state; exit 3")
    failed = project.run("deploy")
    assert failed.returncode == 1, failed.stdout + failed.stderr

    configure("echo 'schema 2' >> /data/state")
    resumed = project.run("deploy")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    dump = project.path / ".surefoot" / "backups" / "release-1.dump"
    assert dump.read_text() == "schema 1\n"
    assert "backup kept:" in resumed.stdout
    assert "schema 2" in project.compose("exec", "-T", "db", "cat", "/data/state")
