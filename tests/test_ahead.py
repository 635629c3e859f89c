"""Commands asked ahead: the guess of the compose project, and answers handed out only to
the very same command, once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import Project
from surefoot.config.project import guess_compose_project
from surefoot.config.settings import load_settings
from surefoot.engines.compose.ahead import AskedAhead
from surefoot.proc import CancelToken, ProcessRunner


def _project(tmp_path: Path, config: str | None, *files: str) -> Path:
    for name in files:
        (tmp_path / name).write_text("services: {}\n")
    if config is not None:
        (tmp_path / "surefoot.toml").write_text(config)
    return tmp_path


@pytest.mark.parametrize(
    ("config", "files"),
    [
        (None, ("compose.yaml",)),
        (None, ("docker-compose.yml", "docker-compose.override.yml")),
        ('[project]\nname = "shop"\n', ("compose.yaml", "compose.override.yaml")),
        ('[project]\ncompose_files = ["a.yaml", "b.yaml"]\nenv_file = ".env.production"\n', ("a.yaml", "b.yaml")),
    ],
)
def test_the_guess_matches_the_validated_settings(tmp_path: Path, config: str | None, files: tuple[str, ...]) -> None:
    folder = tmp_path / "my-shop"
    folder.mkdir()
    _project(folder, config, *files)
    settings = load_settings(folder)
    assert guess_compose_project(folder, None) == (settings.project_name, settings.compose_files, settings.env_file)


@pytest.mark.parametrize("config", ["[project\n", "project = 3\n", '[project]\nname = 3\n',
                                    '[project]\ncompose_files = "compose.yaml"\n'])
def test_no_guess_from_a_configuration_that_will_not_validate(tmp_path: Path, config: str) -> None:
    assert guess_compose_project(_project(tmp_path, config, "compose.yaml"), None) is None


def test_an_answer_goes_once_to_the_same_command_in_the_same_folder(tmp_path: Path) -> None:
    ahead = AskedAhead(ProcessRunner(CancelToken()))
    argv = ["sh", "-c", "echo asked $$"]
    ahead.ask(argv, tmp_path, 10)
    assert ahead.take(argv, tmp_path.parent) is None  # another folder
    assert ahead.take([*argv, "x"], tmp_path) is None  # another command
    answer = ahead.take(argv, tmp_path)
    assert answer is not None and answer.returncode == 0 and answer.stdout.startswith("asked ")
    assert int(answer.stdout.split()[1]) != os.getpid()
    assert ahead.take(argv, tmp_path) is None  # handed out once


def test_dropped_answers_are_asked_again(tmp_path: Path) -> None:
    ahead = AskedAhead(ProcessRunner(CancelToken()))
    ahead.ask(["true"], tmp_path, 10)
    ahead.drop()
    assert ahead.take(["true"], tmp_path) is None


def test_a_command_that_cannot_start_fails_where_its_answer_is_taken(tmp_path: Path) -> None:
    from surefoot.base.errors import CommandNotFound

    ahead = AskedAhead(ProcessRunner(CancelToken()))
    ahead.ask(["surefoot-no-such-command"], tmp_path, 10)
    with pytest.raises(CommandNotFound):
        ahead.take(["surefoot-no-such-command"], tmp_path)


@pytest.mark.docker
def test_a_deploy_asks_compose_its_first_questions_once(stack: Project, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    stack.env["SUREFOOT_TRACE"] = str(trace)
    result = stack.run("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = trace.read_text().splitlines()
    # Both asked first (before the settings are even loaded: with the release's raw config, three
    # commands started from three threads, in any order), and never again.
    first = lines[:3]
    assert sum(line.endswith(" compose version --short") for line in first) == 1
    assert any(line.endswith(" config --format json") for line in first)
    assert sum(line.endswith(" compose version --short") for line in lines) == 1
    assert sum(line.endswith(" config --format json") for line in lines) == 1
