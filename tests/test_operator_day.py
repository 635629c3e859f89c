"""The operator's day (issue 18): the warning when nothing checks the application, the
project's own compose commands, JSON progress."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import Project, Projects

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


