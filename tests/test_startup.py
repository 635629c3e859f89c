"""The read-only commands stay light: no pydantic, no rich, no runner on their path, nor the
bodies of the other commands (cli/commands.py, cli/starter/command.py), nor subprocess (the SSH
transport); ``status`` not even the CLI library, and it answers as click's path does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pydantic", "rich", "surefoot.deploy.run.runner", "surefoot.config.settings", "surefoot.cli.commands",
         "surefoot.cli.starter.command", "surefoot.hosts.ssh.connection", "subprocess")


@pytest.mark.parametrize("args", [["--help"], ["status"], ["status", "--json"], ["history"]])
def test_read_only_commands_import_nothing_heavy(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "surefoot.toml").write_text('[project]\nname = "shop"\n')
    code = (
        "import sys; from surefoot.cli import main\n"
        f"rc = main(['-C', {str(tmp_path)!r}, *{args!r}])\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr); sys.exit(rc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stderr


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["--target", "local", "status"]])
def test_status_does_not_load_the_cli_library(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "surefoot.toml").write_text('[project]\nname = "shop"\n')
    code = (
        "import sys; from surefoot.cli import main\n"
        f"rc = main(['-C', {str(tmp_path)!r}, *{args!r}])\n"
        "print('CLICK', 'click' in sys.modules, file=sys.stderr); sys.exit(rc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "CLICK False" in result.stderr, result.stderr


def _both(args: list[str], cwd: Path, **env: str) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    import os

    answers = []
    for how in ("from surefoot.cli import main", "from surefoot.cli.app import run as main"):
        code = f"import sys; {how}; sys.exit(main({args!r}))"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=cwd,
                              env={**os.environ, **env})
        answers.append((done.returncode, done.stdout, done.stderr))
    return answers[0], answers[1]


@pytest.mark.parametrize(("args", "env"), [
    (["status"], {}),
    (["status", "--json"], {}),
    (["-C", "app", "status", "--json"], {}),
    (["-C", "app", "-c", "other.toml", "status", "--json"], {}),
    (["-C", "app", "--state-dir=elsewhere", "status", "--json"], {}),
    (["-C", "app", "status"], {"SUREFOOT_STATE_DIR": "from-env", "SUREFOOT_TARGET": "local"}),
    (["-C", "app", "--target", "web1", "status", "--json"], {}),
    (["-C", "app", "--target", "nowhere", "status"], {}),
    (["-C", "missing", "status"], {}),
    (["-C", "app", "-c", "missing.toml", "status"], {}),
])
def test_status_answers_alike_with_and_without_the_cli_library(tmp_path: Path, args: list[str],
                                                                env: dict[str, str]) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "surefoot.toml").write_text('[project]\nname = "shop"\n[targets.web1]\nhost = "ssh://root@127.0.0.1:9"\n')
    (app / "other.toml").write_text('[project]\nname = "other"\n')
    (tmp_path / "surefoot.toml").write_text('[project]\nname = "here"\n')
    quick, click = _both(args, tmp_path, **env)
    assert quick == click
