"""The env file is the one source of what runs: the shell cannot override it, --set changes
it, values from the environment are written to it, every form of its secrets is masked, and
the checks preflight defers until it is written run before anything is built or started."""

from __future__ import annotations

import json
import shlex
import socket
import sys
import urllib.request

import pytest
from test_configuration import COMPOSE, CONFIG

from conftest import STACK_COMPOSE, Project, Projects, migrate_command
from surefoot.base.secrets import parse_env_text
from surefoot.config.settings import load_settings
from surefoot.engines.compose.ahead import AskedAhead
from surefoot.engines.compose.argv import ComposeProject, config_argv
from surefoot.proc import CancelToken, ProcessRunner

pytestmark = pytest.mark.docker


def greeting(project: Project) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{project.port}/health", timeout=10) as response:
        return str(json.loads(response.read())["greeting"])


def test_the_shell_cannot_override_the_env_file(stack: Project) -> None:
    stack.env["GREETING"] = "from-shell"
    first = stack.run("deploy")
    assert first.returncode == 0, first.stdout + first.stderr
    assert greeting(stack) == "hello"  # the env file's value, not the shell's
    output = first.stdout + first.stderr
    assert "GREETING" in output and "from-shell" not in output  # named, never shown
    assert (stack.path / ".surefoot" / "releases" / "1" / "env").read_text() == "GREETING=hello\n"

    # A rollback, too, runs what the release's copy of the env file says.
    stack.write(".env", "GREETING=second\n")
    second = stack.run("deploy")
    assert second.returncode == 0, second.stdout + second.stderr
    assert greeting(stack) == "second"
    back = stack.run("rollback", "1", "--yes")
    assert back.returncode == 0, back.stdout + back.stderr
    assert greeting(stack) == "hello"


def test_compose_config_asked_ahead_reads_the_env_file_not_the_shell(stack: Project,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREETING", "from-shell")
    settings = load_settings(stack.path)
    ahead = AskedAhead.start(ProcessRunner(CancelToken()), stack.path, None)
    target = ComposeProject(settings.project_name, settings.project_dir, settings.compose_files, settings.env_file)
    answer = ahead.take(config_argv(target), settings.project_dir)
    assert answer is not None and answer.returncode == 0, answer
    assert json.loads(answer.stdout)["services"]["web"]["environment"]["GREETING"] == "hello"


def test_a_secret_given_in_the_environment_is_the_one_written_and_used(projects: Projects) -> None:
    site = projects.new({"compose.yaml": COMPOSE, "surefoot.toml": CONFIG},
                        env={"DB_PASSWORD": "shell-password-0123456789", "API_KEY": "key-from-the-shell-42"})
    result = site.run("deploy", "--non-interactive", "--set", "DOMAIN=shop.example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    values = parse_env_text((site.path / ".env.production").read_text())
    assert values["DB_PASSWORD"] == "shell-password-0123456789"  # used, not replaced by a generated one
    assert values["API_KEY"] == "key-from-the-shell-42"
    inside = site.compose("exec", "-T", "web", "sh", "-c", 'printf %s "$DB_PASSWORD"')
    assert inside == values["DB_PASSWORD"]
    output = result.stdout + result.stderr
    assert "shell-password-0123456789" not in output and "key-from-the-shell-42" not in output


def test_set_changes_a_value_the_env_file_has_and_adds_an_undeclared_one(stack: Project) -> None:
    assert stack.run("deploy").returncode == 0
    assert greeting(stack) == "hello"
    changed = stack.run("deploy", "--set", "GREETING=changed", "--set", "EXTRA_SETTING=on")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "nothing to write" not in changed.stdout
    assert "GREETING" in changed.stdout and "(set)" in changed.stdout  # on the review
    values = parse_env_text((stack.path / ".env").read_text())
    assert values["GREETING"] == "changed" and values["EXTRA_SETTING"] == "on"
    assert greeting(stack) == "changed"
    # The release records it.
    releases = stack.path / ".surefoot" / "releases"
    newest = max(releases.iterdir(), key=lambda path: int(path.name))
    assert parse_env_text((newest / "env").read_text())["GREETING"] == "changed"


def test_set_recomputes_derived_values_and_refuses_to_set_a_derived_one(projects: Projects) -> None:
    site = projects.new({"compose.yaml": COMPOSE, "surefoot.toml": CONFIG}, env={"SUREFOOT_PROGRESS": "plain"})
    args = ("deploy", "--non-interactive", "--set", "API_KEY=key-0123456789")
    assert site.run(*args, "--set", "DOMAIN=shop.example.com").returncode == 0
    moved = site.run(*args, "--set", "DOMAIN=other.example.com")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    values = parse_env_text((site.path / ".env.production").read_text())
    assert values["DOMAIN"] == "other.example.com"
    assert values["APP_URL"] == "https://other.example.com/app"
    refused = site.run(*args, "--set", "APP_URL=https://elsewhere.example.com")
    assert refused.returncode == 2
    assert "APP_URL is derived" in refused.stderr and "Traceback" not in refused.stderr
    assert parse_env_text((site.path / ".env.production").read_text())["APP_URL"] == "https://other.example.com/app"


MASKING_CONFIG = CONFIG + """
[hooks.configuration]
after = [["cat", ".env.production"], {printer}]
"""

PRINTER = ("import json, shlex; from surefoot.base.secrets import parse_env_text; "
           "value = parse_env_text(open('.env.production').read())['API_KEY']; "
           "print(json.dumps({'key': value})); print(shlex.quote(value)); print(json.dumps(value, ensure_ascii=False))")


def test_a_hook_that_prints_a_secret_in_any_form_shows_it_masked(projects: Projects) -> None:
    printer = json.dumps([sys.executable, "-c", PRINTER])
    site = projects.new({"compose.yaml": COMPOSE, "surefoot.toml": MASKING_CONFIG},
                        env={"SUREFOOT_PROGRESS": "plain"}, printer=printer)
    secret = "p$HOME a'b \"c\" \\ naïve-SECRET-42"
    result = site.run("deploy", "--non-interactive", "--set", "DOMAIN=shop.example.com", "--set", f"API_KEY={secret}")
    assert result.returncode == 0, result.stdout + result.stderr
    env_text = (site.path / ".env.production").read_text()
    assert parse_env_text(env_text)["API_KEY"] == secret
    in_env_file = next(line for line in env_text.splitlines() if line.startswith("API_KEY="))[len("API_KEY="):]
    shown = {in_env_file, in_env_file[1:-1], shlex.quote(secret), json.dumps(secret)[1:-1],
             json.dumps(secret, ensure_ascii=False)[1:-1], secret}
    logs = {str(path): path.read_text() for path in (site.path / ".surefoot" / "logs").rglob("*.log")}
    assert any("configuration hook" in text for text in logs.values())
    assert '{"key": "********"}' in result.stdout and 'API_KEY="********"' in result.stdout, result.stdout
    for where, text in {"output": result.stdout + result.stderr, **logs}.items():
        for form in shown:
            assert form not in text, (where, form)
        assert "SECRET-42" not in text, where


PORT_CONFIG = """
[project]
name = "{name}"
env_file = ".env"

[phases.pull-images]
enabled = false

[phases.database-start]
services = ["db"]

[[phases.configuration.prompts]]
key = "GREETING"
question = "Greeting"
"""


def test_deferred_checks_run_after_configuration_before_anything_starts(projects: Projects) -> None:
    project = projects.new({"compose.yaml": STACK_COMPOSE, "surefoot.toml": PORT_CONFIG})
    assert not (project.path / ".env").exists()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", project.port))
        squatter.listen()
        result = project.run("deploy", "--non-interactive", "--set", "GREETING=hi")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "checked after the configuration phase writes the env file" in result.stdout
    assert f"ports: fail (in use by another process: 127.0.0.1:{project.port}" in result.stdout
    assert "phase configuration failed" in result.stderr and f"127.0.0.1:{project.port}" in result.stderr
    phases = {p["name"]: p["status"] for p in project.status()["phases"]}
    assert phases["configuration"] == "failed"
    assert all(phases[name] not in ("completed", "running", "failed")
               for name in ("build", "database-start", "database-migrate", "services-start")), phases
    assert project.containers() == []  # nothing was started
    # Once the port is free, the deployment resumes and completes.
    again = project.run("deploy", "--non-interactive")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_resume_with_a_new_set_value_runs_the_configuration_again(stack: Project) -> None:
    stack.configure(migrate_command("exit 1"))
    failed = stack.run("deploy", "--set", "GREETING=first")
    assert failed.returncode == 1
    stack.configure(migrate_command("echo migrated"))
    resumed = stack.run("deploy", "--set", "GREETING=second")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert greeting(stack) == "second"


def test_several_env_files_are_read_in_order_and_the_last_is_written(projects: Projects) -> None:
    project = projects.new({"compose.yaml": STACK_COMPOSE, ".env": "GREETING=base\n", ".env.production": "# prod\n"},
                           env={"GREETING": "from-shell"})
    project.configure(migrate_command("echo migrated"))
    config = (project.path / "surefoot.toml").read_text()
    project.write("surefoot.toml", config.replace('env_file = ".env"', 'env_file = [".env", ".env.production"]'))
    first = project.run("deploy")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "--env-file" in first.stdout and f"{project.path}/.env.production" in first.stdout
    assert greeting(project) == "base"  # from the first file; the shell's value is not passed on

    second = project.run("deploy", "--set", "GREETING=prod")
    assert second.returncode == 0, second.stdout + second.stderr
    assert (project.path / ".env").read_text() == "GREETING=base\n"  # the last file is the one written
    assert parse_env_text((project.path / ".env.production").read_text())["GREETING"] == "prod"
    assert greeting(project) == "prod"  # a later file wins
    release = project.path / ".surefoot" / "releases" / "2"
    assert (release / "env-0").read_text() == "GREETING=base\n"
    assert parse_env_text((release / "env").read_text())["GREETING"] == "prod"

    back = project.run("rollback", "1", "--yes")
    assert back.returncode == 0, back.stdout + back.stderr
    assert greeting(project) == "base"


def test_set_is_refused_where_nothing_would_write_it(stack: Project) -> None:
    config = (stack.path / "surefoot.toml").read_text()
    stack.write("surefoot.toml", config + "\n[phases.configuration]\nenabled = false\n")
    disabled = stack.run("deploy", "--set", "GREETING=changed")
    assert disabled.returncode == 2
    assert "--set cannot be applied: the configuration phase is disabled" in disabled.stderr
    stack.write("surefoot.toml", config.replace('env_file = ".env"', ""))
    no_env_file = stack.run("deploy", "--set", "GREETING=changed")
    assert no_env_file.returncode == 2
    assert "--set cannot be applied: no env file is configured (project.env_file)" in no_env_file.stderr
    assert "Traceback" not in disabled.stderr + no_env_file.stderr
    assert stack.containers() == []
