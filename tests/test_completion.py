"""Shell completion: click's own scripts, and release numbers for ``rollback``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from surefoot.store import Release, StateStore


def complete(shell: str, words: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "surefoot"], capture_output=True, text=True, timeout=30, cwd=cwd,
        env={**os.environ, "_SUREFOOT_COMPLETE": f"{shell}_complete", "COMP_WORDS": words,
             "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)), **env},
    )


def test_rollback_completes_the_projects_release_numbers(tmp_path: Path) -> None:
    project = tmp_path / "app"
    project.mkdir()
    (project / "surefoot.toml").write_text('[project]\nname = "shop"\n')
    with StateStore.open(project / ".surefoot" / "state.db") as store:
        for number, outcome in ((3, "healthy"), (12, "rolled-back"), (13, "healthy")):
            store.save_release(Release(number, "shop", f"2026-01-0{number % 9 + 1}T10:00:00Z", outcome, None,
                                       {}, {}, "c", "e", None, "d", None))
        store.save_release(Release(5, "other", "2026-01-01T10:00:00Z", "healthy", None, {}, {}, "c", "e", None,
                                   "d", None))
    result = complete("bash", "surefoot -C app rollback ", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["plain,13", "plain,12", "plain,3"]
    result = complete("bash", "surefoot -C app rollback 1", tmp_path)
    assert result.stdout.split() == ["plain,13", "plain,12"]
    zsh = complete("zsh", "surefoot -C app rollback ", tmp_path)
    assert "rolled-back" in zsh.stdout  # zsh shows each release's outcome beside it
    # --state-dir given elsewhere; no store at all: nothing to offer, no error.
    assert complete("bash", "surefoot -C app --state-dir nowhere rollback ", tmp_path).stdout.split() == []


def test_the_completion_scripts_are_click_s(tmp_path: Path) -> None:
    for shell in ("bash", "zsh", "fish"):
        result = subprocess.run([sys.executable, "-m", "surefoot"], capture_output=True, text=True, timeout=30,
                                env={**os.environ, "_SUREFOOT_COMPLETE": f"{shell}_source"})
        assert result.returncode == 0 and "_SUREFOOT_COMPLETE" in result.stdout, shell
    commands = complete("bash", "surefoot ", tmp_path).stdout.split()
    assert {"plain,init", "plain,compose", "plain,logs", "plain,rollback"} <= set(commands)
