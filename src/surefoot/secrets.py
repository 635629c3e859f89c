"""Keeping secrets out of logs, output and the state store.

Values of env-file keys that name a secret (PASSWORD, SECRET, TOKEN, KEY, ...)
are replaced by ``********`` in every line surefoot writes or prints.
"""

from __future__ import annotations

import re
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


class Redactor:
    def __init__(self, secrets: set[str]):
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted((s for s in secrets if len(s) >= _MIN_SECRET_LENGTH), key=len, reverse=True)

    @classmethod
    def from_env_file(cls, path: Path | None) -> Redactor:
        if path is None:
            return cls(set())
        try:
            values = parse_env_text(path.read_text(errors="replace"))
        except OSError:
            return cls(set())
        return cls({value for key, value in values.items() if SECRET_KEY.search(key)})

    def add(self, secret: str) -> None:
        if len(secret) >= _MIN_SECRET_LENGTH and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text
