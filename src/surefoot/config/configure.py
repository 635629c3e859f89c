"""Interactive configuration: prompts, generated secrets, derived values, the env file.

What the project needs is declared in ``[phases.configuration]``; values already
in the env file are kept (a secret, once written, is never generated again).
Nothing is written before the operator confirms the review screen; the env
file is then replaced atomically (0600), the old one backed up first. Values are
quoted so that docker compose reads them back literally.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets as random_source
import string
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Protocol

from surefoot.base.secrets import parse_env_text
from surefoot.config.settings import PromptSettings, SecretSettings

DEFAULT_ALPHABET = string.ascii_letters + string.digits + "-_.~"
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9.!#%&'*+/=?^_`{|}~-]{1,64}$")


# -- validators -----------------------------------------------------------------------
def valid_domain(value: str) -> str | None:
    """None when ``value`` is a fully qualified domain name, else why not."""
    name = value.strip().lower().rstrip(".")
    if not name or len(name) > 253:
        return "a domain name has 1 to 253 characters"
    labels = name.split(".")
    if len(labels) < 2:
        return "a fully qualified domain name has at least one dot (e.g. shop.example.com)"
    if not all(_LABEL.match(label) for label in labels):
        return "each part of a domain name is 1-63 letters, digits or '-', not starting or ending with '-'"
    if labels[-1].isdigit():
        return "the last part of a domain name is not a number"
    return None


def valid_email(value: str) -> str | None:
    local, at, domain = value.strip().rpartition("@")
    if not at or not _EMAIL_LOCAL.match(local):
        return "an e-mail address looks like name@example.com"
    problem = valid_domain(domain)
    return f"the address's domain is not valid: {problem}" if problem else None


def valid_url(value: str) -> str | None:
    parts = urllib.parse.urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "a URL starts with http:// or https:// and names a host"
    try:
        ipaddress.ip_address(parts.hostname)
        return None
    except ValueError:
        pass
    if parts.hostname != "localhost" and valid_domain(parts.hostname):
        return f"the URL's host is not valid: {valid_domain(parts.hostname)}"
    return None


def valid_port(value: str) -> str | None:
    if not value.strip().isdigit() or not 1 <= int(value) <= 65535:
        return "a port is a number from 1 to 65535"
    return None


def check_value(prompt: PromptSettings, value: str) -> str | None:
    """None when ``value`` is acceptable for ``prompt``, else a message for the operator."""
    if value == "":
        return "a value is required" if prompt.required else None
    kind = prompt.validator
    if kind == "domain":
        return valid_domain(value)
    if kind == "email":
        return valid_email(value)
    if kind == "url":
        return valid_url(value)
    if kind == "port":
        return valid_port(value)
    if kind == "regex" and not re.fullmatch(prompt.pattern or "", value):
        return f"the value must match {prompt.pattern}"
    if kind == "choices" and value not in (prompt.choices or []):
        return f"choose one of: {', '.join(prompt.choices or [])}"
    if kind == "non-empty" and not value.strip():
        return "a value is required"
    if "\n" in value or "\0" in value:
        return "a value is one line"
    return None


# -- secrets and values ----------------------------------------------------------------
def generate_secret(spec: SecretSettings) -> str:
    alphabet = spec.alphabet or DEFAULT_ALPHABET
    return "".join(random_source.choice(alphabet) for _ in range(spec.length))


def derive(templates: Mapping[str, str], values: Mapping[str, str]) -> dict[str, str]:
    """``{"APP_URL": "https://{DOMAIN}"}`` -> values; an unknown name is an error."""
    result = {}
    for key, template in templates.items():
        try:
            result[key] = template.format_map(dict(values))
        except KeyError as exc:
            raise ValueError(
                f"derived value {key}: {template!r} names {exc.args[0]}, which has no value"
            ) from None
    return result


def mask(value: str) -> str:
    """First 4 and last 4 characters, for the operator's eyes only."""
    return value[:4] + "..." + value[-4:] if len(value) > 12 else "*" * len(value)


# -- the env file -----------------------------------------------------------------------
def env_line(key: str, value: str) -> str:
    """``KEY=value`` that docker compose reads back literally: single quotes when possible
    (nothing is interpreted inside them), else double quotes with \\ " $ escaped."""
    if "'" not in value and "\n" not in value:
        return f"{key}='{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("\n", "\\n")
    return f'{key}="{escaped}"'


def render_env(existing: str, updates: Mapping[str, str]) -> str:
    """The env file with ``updates`` applied: changed keys in place, comments kept, new keys appended."""
    lines, done = [], set()
    for line in existing.splitlines():
        match = re.match(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        if match and match.group(1) in updates:
            key = match.group(1)
            lines.append(env_line(key, updates[key]))
            done.add(key)
        else:
            lines.append(line)
    new = [key for key in updates if key not in done]
    if new:
        if lines and lines[-1].strip():
            lines.append("")
        lines.append(f"# written by surefoot on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        lines += [env_line(key, updates[key]) for key in new]
    return "\n".join(lines) + "\n"


def write_env_file(path: Path, text: str) -> Path | None:
    """Replace ``path`` atomically (0600); the old file is kept as a timestamped backup (0600)."""
    backup = None
    if path.exists():
        backup = path.with_name(f"{path.name}.backup-{datetime.now(UTC):%Y%m%dT%H%M%S}")
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(path.read_bytes())
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(partial, 0o600)
    os.replace(partial, path)
    return backup


def read_env(path: Path | None) -> dict[str, str]:
    if path is None or not path.exists():
        return {}
    return parse_env_text(path.read_text(encoding="utf-8"))


# -- asking -------------------------------------------------------------------------------
class Prompter(Protocol):
    def ask(self, question: str, *, secret: bool) -> str: ...

    def confirm(self, question: str) -> bool: ...

    def show(self, text: str) -> None: ...

    def session(self) -> AbstractContextManager[None]:
        """Holds the terminal for several questions in a row (the review and its question)."""
        ...


class PausingPrompter:
    """Suspends a live view while the operator is asked something."""

    def __init__(self, inner: Prompter, pause: Callable[[], AbstractContextManager[None]]):
        self.inner = inner
        self.pause = pause

    def ask(self, question: str, *, secret: bool) -> str:
        with self.pause():
            return self.inner.ask(question, secret=secret)

    def confirm(self, question: str) -> bool:
        with self.pause():
            return self.inner.confirm(question)

    def show(self, text: str) -> None:
        with self.pause():
            self.inner.show(text)

    def session(self) -> AbstractContextManager[None]:
        return self.pause()


class TerminalPrompter:
    """Talks to the controlling terminal, even when standard input is a pipe."""

    def __init__(self, reader: IO[str], writer: IO[str]):
        self.reader = reader
        self.writer = writer

    @classmethod
    @contextmanager
    def open(cls) -> Iterator[TerminalPrompter | None]:
        try:
            fd = os.open("/dev/tty", os.O_RDWR)
        except OSError:
            yield None
            return
        reader = os.fdopen(fd, "r", encoding="utf-8", errors="replace")
        writer = os.fdopen(os.dup(fd), "w", encoding="utf-8")
        try:
            yield cls(reader, writer)
        finally:
            reader.close()
            writer.close()

    def show(self, text: str) -> None:
        self.writer.write(text + "\n")
        self.writer.flush()

    def session(self) -> AbstractContextManager[None]:
        return nullcontext()

    def ask(self, question: str, *, secret: bool) -> str:
        if not secret:
            self.writer.write(question)
            self.writer.flush()
            return self.reader.readline().rstrip("\r\n")
        import termios

        fd = self.reader.fileno()
        old = termios.tcgetattr(fd)
        new = old[:]
        new[3] &= ~termios.ECHO
        try:
            # Echo goes off before the question shows, so no keystroke can be echoed.
            termios.tcsetattr(fd, termios.TCSADRAIN, new)
            self.writer.write(question)
            self.writer.flush()
            answer = self.reader.readline().rstrip("\r\n")
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
            self.writer.write("\n")
            self.writer.flush()
        return answer

    def confirm(self, question: str) -> bool:
        answer = self.ask(f"{question} [Y/n] ", secret=False).strip().lower()
        return answer in ("", "y", "yes")


@dataclass(frozen=True)
class Plan:
    """What the configuration phase would write, before the operator confirms."""

    kept: dict[str, str]
    asked: dict[str, str]
    generated: dict[str, str]
    derived: dict[str, str]
    secret_keys: frozenset[str]
    sources: dict[str, str] = field(default_factory=dict)  # where a new value came from ("set", ...)

    @property
    def updates(self) -> dict[str, str]:
        return {**self.asked, **self.generated, **self.derived}

    def review(self, redact: Callable[[str], str] = lambda text: text) -> list[str]:
        """The review screen's lines: a secret's value hidden, any other masked where it holds
        a secret (``redact``: a derived URL with a password in it), then cut to fit."""
        width = max((len(k) for k in {**self.kept, **self.updates}), default=3)
        lines = []
        for key, value in {**self.kept, **self.updates}.items():
            if key in self.generated:
                shown = f"[generated, {len(value)} characters]"
            elif key in self.secret_keys:
                shown = f"[hidden, {len(value)} characters]"
            else:
                shown = redact(value)  # before cutting: a cut secret is no longer recognised
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
            origin = ("kept" if key in self.kept else "derived" if key in self.derived
                      else self.sources.get(key, "new"))
            lines.append(f"  {key:<{width}}  {shown}  ({origin})")
        return lines
