"""The operator's day (issue 18): the warning when nothing checks the application, the
project's own compose commands, JSON progress."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import Project, Projects, migrate_command

pytestmark = pytest.mark.docker


def without_health_probe(stack: Project) -> None:
    config = (stack.path / "surefoot.toml").read_text()
    stack.write("surefoot.toml", config.split("[phases.health-wait]")[0])


def test_a_deploy_with_no_health_probe_warns_at_the_end_and_status_says_so(stack: Project) -> None:
    without_health_probe(stack)
    result = stack.run("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing checked that the application answers" in result.stderr.splitlines()[-1]
    assert "nothing checked that the application answers" in result.stdout  # the event, in the plain lines
    status = stack.status()
    assert status["state"] == "completed"
    assert len(status["warnings"]) == 1
    assert "nothing checked that the application answers" in status["warnings"][0]
    table = stack.run("status")
    assert "WARNING: no health probe configured" in table.stdout


def test_a_deploy_with_a_health_probe_has_no_warning(stack: Project) -> None:
    result = stack.run("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing checked" not in result.stdout + result.stderr
    assert stack.status()["warnings"] == []


def test_compose_runs_with_the_projects_name_files_and_env_file(stack: Project) -> None:
    result = stack.run("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    ps = stack.run("compose", "ps", "--format", "json")
    assert ps.returncode == 0, ps.stderr
    containers = [json.loads(line) for line in ps.stdout.splitlines() if line.strip()]
    assert sorted(c["Service"] for c in containers) == ["db", "web"]
    assert {c["Project"] for c in containers} == {stack.name}
    # The env file reaches compose: GREETING is required by the compose file.
    config = stack.run("compose", "config", "--format", "json")
    assert json.loads(config.stdout)["services"]["web"]["environment"]["GREETING"] == "hello"
    # ... and wins over the shell, as in every deployment phase.
    stack.env["GREETING"] = "from-the-shell"
    try:
        config = stack.run("compose", "config", "--format", "json")
    finally:
        del stack.env["GREETING"]
    assert json.loads(config.stdout)["services"]["web"]["environment"]["GREETING"] == "hello"
    # Arguments reach the container untouched (no shell), and the exit code is compose's.
    echo = stack.run("compose", "exec", "-T", "web", "sh", "-c", 'echo "$0"; exit 7', "a b;$(x)")
    assert echo.returncode == 7
    assert echo.stdout == "a b;$(x)\n"
    # stdin is inherited.
    piped = subprocess.run(stack.command("compose", "exec", "-T", "web", "cat"), input="from stdin\n",
                           capture_output=True, text=True, timeout=60)
    assert piped.stdout == "from stdin\n"
    logs = stack.run("logs", "db", "--tail", "5")
    assert logs.returncode == 0, logs.stderr
    assert stack.run("compose", "nosuch-command").returncode != 0


def test_compose_names_the_missing_compose_file(projects: Projects) -> None:
    project = projects.new({"surefoot.toml": '[project]\ncompose_files = ["nope.yaml"]\n'})
    result = project.run("compose", "ps")
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr and "Traceback" not in result.stderr




def json_events(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]  # every line is one JSON object


def test_progress_json_is_one_typed_event_a_line_covering_every_phase(stack: Project) -> None:
    stack.write(".env", "GREETING=hello\nAPI_TOKEN=s3cr3t-t0ken-value\n")
    stack.configure(migrate_command('echo "migrating with $$API_TOKEN"; echo s3cr3t-t0ken-value'))
    stack.write("surefoot.toml", (stack.path / "surefoot.toml").read_text() + (
        f'\n[phases.verify]\nurls = [{{ url = "http://127.0.0.1:{stack.port}/health", consecutive = 1 }}]\n'))
    result = stack.run("deploy", "--progress", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    found = json_events(result.stdout)
    assert "s3cr3t-t0ken-value" not in result.stdout
    assert found[0]["type"] == "deployment-started" and found[-1]["type"] == "deployment-finished"
    assert found[-1]["state"] == "completed"
    phases = found[0]["phases"]
    assert isinstance(phases, list) and "verify" in phases and len(phases) == 11
    for phase in phases:
        finished = [e for e in found if e["type"] in ("phase-finished", "phase-skipped") and e["phase"] == phase]
        assert finished, f"no end for {phase}"
        if finished[-1]["type"] == "phase-finished":
            assert any(e["type"] == "phase-started" and e["phase"] == phase for e in found)
            assert isinstance(finished[-1]["duration"], float | int)
        assert finished[-1]["status"] in ("completed", "skipped")
    assert all(isinstance(e["time"], str) for e in found)
    outputs = [e for e in found if e["type"] == "output"]
    assert {"phase", "line"} <= set(outputs[0])
    assert any(e["phase"] == "database-migrate" and e["line"] == "********" for e in outputs)
    checks = [e for e in found if e["type"] == "check"]
    assert {"memory", "disk", "docker"} <= {e["name"] for e in checks if e["phase"] == "preflight"}
    assert any(e["phase"] == "verify" for e in checks)
    probes = [e for e in found if e["type"] == "probe" and e["phase"] == "health-wait"]
    assert probes and probes[-1]["result"] == "pass" and probes[-1]["probe"] == "health"
    # The words go to stderr; SUREFOOT_PROGRESS=json keeps working; verify and rollback take it too.
    assert "completed." in result.stderr
    stack.env["SUREFOOT_PROGRESS"] = "json"
    verify = stack.run("verify")
    assert verify.returncode == 0, verify.stderr
    assert json_events(verify.stdout)[-1]["type"] == "deployment-finished"
    del stack.env["SUREFOOT_PROGRESS"]
    plain = stack.run("verify", "--progress", "plain")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert not plain.stdout.startswith("{")
    again = stack.run("deploy", "--progress", "json")
    assert again.returncode == 0, again.stderr
    rollback = stack.run("rollback", "--yes", "--progress", "json")
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    events = json_events(rollback.stdout)
    assert events[-1]["type"] == "deployment-finished" and events[-1]["state"] == "restored"
