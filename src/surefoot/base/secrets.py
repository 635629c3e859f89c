"""Keeping secrets out of logs, output and the state store.

Values of env-file keys that name a secret (PASSWORD, SECRET, TOKEN, KEY, ...), in every file
compose reads values from (the configured env files or compose's own ``.env``, one fetched from
a server, the services' ``env_file:`` files), the content of ``secrets:`` files, and the secrets
the configuration phase asks for or generates, are replaced by ``********`` in every line
surefoot writes or prints, in every form a secret takes in output: raw, quoted as in the env
file, shell-escaped, JSON-escaped and URL-encoded. A value that contains one (a database URL)
is shown with that part masked.
"""

from __future__ import annotations

import json
import re
import shlex
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

SECRET_KEY = re.compile(r"(PASS|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE|AUTH|SALT)", re.IGNORECASE)
MASK = "********"
_MIN_SECRET_LENGTH = 4


def parse_env_text(text: str) -> dict[str, str]:
    """KEY=VALUE lines as compose reads them: comments, ``export``, and quoted values."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]  # literal, as compose reads it
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r'\\([\\"$n])', lambda m: "\n" if m.group(1) == "n" else m.group(1), value[1:-1])
        values[key.strip()] = value
    return values


def forms(secret: str) -> set[str]:
    """Every way ``secret`` is written out by the tools around it: raw; in the env file
    (single-quoted, or double-quoted with \\ " $ and newlines escaped); shell-escaped
    (``shlex.quote``, and with backslashes); JSON-escaped (ASCII-only or not); URL-encoded."""
    found = {secret}
    found.add(secret.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("\n", "\\n"))
    found.add(shlex.quote(secret))
    found.add(re.sub(r"([^A-Za-z0-9_./:@%+=,-])", r"\\\1", secret))  # sh with backslashes (printf %q)
    for ascii_only in (True, False):
        found.add(json.dumps(secret, ensure_ascii=ascii_only)[1:-1])
    found.add(urllib.parse.quote(secret, safe=""))
    found.add(urllib.parse.quote_plus(secret))
    return {form for form in found if len(form) >= _MIN_SECRET_LENGTH}


class Redactor:
    def __init__(self, secrets: set[str]):
        self._raw: set[str] = set()
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    @classmethod
    def from_env_file(cls, paths: Path | Sequence[Path] | None) -> Redactor:
        """The secrets of an env file (or of several)."""
        redactor = cls(set())
        redactor.add_env_files(paths)
        return redactor

    def add_env_files(self, paths: Path | Sequence[Path] | None) -> None:
        """Mask the secrets of these env files too (read now: one may have arrived since)."""
        for path in [paths] if isinstance(paths, Path) else paths or []:
            try:
                values = parse_env_text(path.read_text(errors="replace"))
            except OSError:
                continue
            for key, value in values.items():
                if SECRET_KEY.search(key):
                    self.add(value)

    def add_file(self, path: Path) -> None:
        """Mask the content of a secret's file (compose's ``secrets: NAME: file:``)."""
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return
        # Whole, and line by line (a key file is printed a line at a time); short lines, which
        # could be any word, only as part of the whole.
        for secret in {text, text.strip()} | {line.strip() for line in text.splitlines() if len(line.strip()) >= 8}:
            self.add(secret)

    def add(self, secret: str) -> None:
        if len(secret) >= _MIN_SECRET_LENGTH and secret not in self._raw:
            self._raw.add(secret)
            # Longest first, so a form that contains another (or another secret) is masked whole.
            self._secrets = sorted({*self._secrets, *forms(secret)}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if self._secrets and ("…" in text or "..." in text):
            text = self._cut_ends(text)
        return text

    def _cut_ends(self, text: str) -> str:
        """A secret cut short where a text was shortened ("abc…"): its start, masked too."""
        longest = len(self._secrets[0])
        for mark in ("…", "..."):
            start = 0
            while (at := text.find(mark, start)) >= 0:
                before = text[max(0, at - longest):at]
                size = next((k for k in range(len(before), _MIN_SECRET_LENGTH - 1, -1)
                             if any(secret.startswith(before[-k:]) for secret in self._secrets)), 0)
                if size:
                    text = text[:at - size] + MASK + text[at:]
                    at += len(MASK) - size
                start = at + len(mark)
        return text
