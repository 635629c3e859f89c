"""The read-only commands stay light: no pydantic, no rich, no runner on their path, nor the
bodies of the other commands (cli_run.py, cli_init.py), nor subprocess (the SSH transport)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pydantic", "rich", "surefoot.runner", "surefoot.config", "surefoot.cli_run", "surefoot.cli_init",
         "surefoot.ssh", "subprocess")


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
