"""Masking: every form a secret takes in output is masked, not only the raw string."""

from __future__ import annotations

import json
import shlex
import urllib.parse

from surefoot.base.secrets import MASK, Redactor
from surefoot.config.configure import env_line

SECRET = "p$HOME a'b \"c\" \\ naïve-0123"


def test_every_form_of_a_secret_is_masked() -> None:
    redact = Redactor({SECRET})
    in_env_file = env_line("API_KEY", SECRET).split("=", 1)[1]  # "p\$HOME a'b \"c\" \\ naïve-0123"
    shown = {
        "raw": SECRET,
        "env file": in_env_file,
        "env file, unquoted": in_env_file[1:-1],
        "shell": shlex.quote(SECRET),
        "json": json.dumps(SECRET),
        "json, ascii": json.dumps(SECRET, ensure_ascii=True),
        "json, not ascii": json.dumps(SECRET, ensure_ascii=False),
        "url": urllib.parse.quote(SECRET, safe=""),
        "url, form": urllib.parse.quote_plus(SECRET),
    }
    for what, form in shown.items():
        line = f"API_KEY={form} and more"
        masked = redact(line)
        assert MASK in masked, what
        assert "naïve" not in masked and "na\\u00efve" not in masked and "na%C3%AFve" not in masked, (what, masked)


def test_a_secret_added_later_is_masked_in_every_form_too() -> None:
    redact = Redactor(set())
    redact.add(SECRET)
    assert "naïve" not in redact(json.dumps({"token": SECRET}))
    assert redact("plain text") == "plain text"
    redact.add("abc")  # too short to mask: it would mask ordinary words
    assert redact("abcdef") == "abcdef"
