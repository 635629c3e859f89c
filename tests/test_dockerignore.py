"""The .dockerignore matcher against Docker's documented semantics, and the build
fingerprint that uses it (no engine needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from surefoot.config.dockerignore import Matcher, ignore_file, parse, sent_files, state_exposed
from surefoot.deploy.api import _tree_digest

# (ignore file text, path, excluded?) — the examples of Docker's .dockerignore reference
# and of moby/patternmatcher's tests.
CASES = [
    ("# comment\n*/temp*", "somedir/temporary.txt", True),
    ("*/temp*", "somedir/temp", True),
    ("*/temp*", "somedir/temp/inner.txt", True),  # a parent folder matches
    ("*/temp*", "temp.txt", False),  # "*" stays within one folder
    ("*/temp*", "a/b/temp.txt", False),
    ("*/*/temp*", "somedir/subdir/temporary.txt", True),
    ("*/*/temp*", "somedir/temporary.txt", False),
    ("temp?", "tempa", True),
    ("temp?", "temp", False),
    ("temp?", "temp/x", False),
    ("temp?", "tempab", False),
    ("**/*.go", "main.go", True),  # "**" matches no folder too
    ("**/*.go", "a/b/c/main.go", True),
    ("**/*.go", "a/b/main.py", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x/c", False),
    ("a/**", "a/x/y", True),
    ("**", "anything/at/all", True),
    ("*.md\n!README.md", "README.md", False),
    ("*.md\n!README.md", "CHANGES.md", True),
    ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
    ("*.md\n!README*.md\nREADME-secret.md", "README-other.md", False),
    ("*.md\nREADME-secret.md\n!README*.md", "README-secret.md", False),
    ("/foo/bar", "foo/bar", True),  # a leading slash is the context's root
    ("foo/bar/", "foo/bar/baz", True),  # a trailing slash is cleaned away
    ("./foo//bar", "foo/bar", True),
    ("  spaced  ", "spaced", True),
    ("#notignored", "#notignored", False),
    ("build", "build/x/y.o", True),
    ("build", "src/build", False),  # patterns are anchored at the root
    (".surefoot", ".surefoot/state.db", True),
    (".surefoot", ".surefoot/releases/3/.env", True),
    ("[ab].txt", "a.txt", True),
    ("[ab].txt", "c.txt", False),
    ("\\*.txt", "*.txt", True),
    ("\\*.txt", "x.txt", False),
    ("a.b", "aXb", False),  # "." is literal
    ("!x\n", "x", False),  # an exception with nothing excluded before it
    ("dir\n!dir/keep", "dir/keep", False),
    ("dir\n!dir/keep", "dir/other", True),
    ("", "anything", False),
]


@pytest.mark.parametrize(("text", "path", "expected"), CASES)
def test_docker_semantics(text: str, path: str, expected: bool) -> None:
    assert Matcher.from_text(text).excluded(path) is expected


def test_parse_skips_comments_and_blanks_and_marks_exceptions() -> None:
    patterns = parse("\ufeff# c\n\n  /a/b/  \n! c\n!\n")
    assert [(p.text, p.exception) for p in patterns] == [("a/b", False), ("c", True)]


def test_a_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("a\n")
    assert ignore_file(tmp_path, tmp_path / "Dockerfile") == tmp_path / ".dockerignore"
    (tmp_path / "Dockerfile.dockerignore").write_text("b\n")
    assert ignore_file(tmp_path, tmp_path / "Dockerfile") == tmp_path / "Dockerfile.dockerignore"
    assert ignore_file(tmp_path / "none") is None


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_sent_files_honours_ignore_and_leaves_the_state_out(tmp_path: Path) -> None:
    _tree(tmp_path, {"app.py": "", "docs/x.md": "", "docs/README.md": "", "node_modules/m/i.js": "",
                     "state/state.db": "", "keep/a": ""})
    matcher = Matcher.from_text("node_modules\n**/*.md\n!docs/README.md\n")
    assert sorted(sent_files(tmp_path, matcher, tmp_path / "state")) == [
        "app.py", "docs/README.md", "keep/a"]


def test_fingerprint_ignores_what_the_build_does_not_receive(tmp_path: Path) -> None:
    _tree(tmp_path, {"app.py": "print(1)\n", "surefoot.toml": "", ".surefoot/state.db": "x"})
    matcher = Matcher.from_text("surefoot.toml\n")
    before = _tree_digest(tmp_path, matcher, tmp_path / ".surefoot")
    (tmp_path / "surefoot.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / ".surefoot" / "state.db").write_text("changed")
    (tmp_path / ".surefoot" / "logs").mkdir()
    (tmp_path / ".surefoot" / "logs" / "new.log").write_text("log")
    assert _tree_digest(tmp_path, matcher, tmp_path / ".surefoot") == before
    (tmp_path / "app.py").write_text("print(2)\n")
    os.utime(tmp_path / "app.py", ns=(1, 1))
    assert _tree_digest(tmp_path, matcher, tmp_path / ".surefoot") != before


def test_state_exposed(tmp_path: Path) -> None:
    state = tmp_path / ".surefoot"
    _tree(tmp_path, {".surefoot/state.db": "", ".surefoot/logs/a.log": ""})
    assert state_exposed(tmp_path, Matcher([]), state)
    assert not state_exposed(tmp_path, Matcher.from_text(".surefoot\n"), state)
    assert not state_exposed(tmp_path, Matcher.from_text("/.surefoot/\n"), state)
    assert state_exposed(tmp_path, Matcher.from_text(".surefoot\n!.surefoot/logs\n"), state)
    assert not state_exposed(tmp_path / "sub", Matcher([]), state)  # not in this context
    assert not state_exposed(tmp_path, Matcher.from_text("*\n!app\n"), state)
