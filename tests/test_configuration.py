"""Interactive configuration through a real pseudo-terminal, non-interactive values,
and values that must reach the containers literally."""

from __future__ import annotations

import json
import os
import pty
import select
import time

import pytest

from conftest import Project, Projects
from surefoot.base.secrets import parse_env_text
from surefoot.config.configure import (
    DEFAULT_ALPHABET,
    check_value,
    derive,
    env_line,
    generate_secret,
    mask,
    render_env,
    valid_domain,
    valid_email,
)
from surefoot.config.settings import PromptSettings, SecretSettings

COMPOSE = """
services:
  web:
    image: {image}
    stop_signal: SIGKILL
    environment:
      DOMAIN: ${{DOMAIN:?}}
      APP_URL: ${{APP_URL:?}}
      DB_PASSWORD: ${{DB_PASSWORD:?}}
      API_KEY: ${{API_KEY:?}}
    command: ["sh", "-c", "exec sleep 3600"]
"""

CONFIG = """
[project]
name = "{name}"
env_file = ".env.production"

[phases.pull-images]
enabled = false

[[phases.configuration.prompts]]
key = "DOMAIN"
question = "Domain name"
validator = "domain"

[[phases.configuration.prompts]]
key = "API_KEY"
question = "Payment provider API key"
secret = true

[[phases.configuration.secrets]]
key = "DB_PASSWORD"
length = 40

[phases.configuration.derived]
APP_URL = "https://{{DOMAIN}}/app"

[phases.post-deploy]
urls = ["{{APP_URL}}"]
credentials = ["DB_PASSWORD"]
"""


@pytest.fixture
def site(projects: Projects) -> Project:
    return projects.new({"compose.yaml": COMPOSE, "surefoot.toml": CONFIG}, env={"SUREFOOT_PROGRESS": "plain"})


class Terminal:
    """surefoot under a pseudo-terminal, its standard input a pipe: prompts must use the tty."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            read_end, write_end = os.pipe()
            os.close(write_end)
            os.dup2(read_end, 0)
            os.execvpe(argv[0], argv, env)
        self.transcript = ""
        self._seen = 0

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 4096)
        except OSError:
            return False
        if not data:
            return False
        self.transcript += data.decode("utf-8", "replace")
        return True

    def expect(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.transcript[self._seen:]:
            if time.monotonic() > deadline or not self._read(0.5):
                raise AssertionError(f"never saw {text!r}; transcript:\n{self.transcript}")
        self._seen = self.transcript.index(text, self._seen) + len(text)

    def send(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())

    def finish(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.5):
            pass
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def terminal(project: Project, *args: str) -> Terminal:
    return Terminal(project.command("deploy", *args), {**os.environ, **project.env})


@pytest.mark.docker
def test_prompts_on_a_terminal_decline_then_accept_then_keep(site: Project) -> None:
    env_file = site.path / ".env.production"
    term = terminal(site)
    term.expect("Domain name: ")
    term.send("not a domain")
    term.expect("at least one dot")
    term.send("shop.example.com")
    term.expect("Payment provider API key: ")
    term.send("pk_live_0123456789abcdef")
    term.expect("Write these values to")
    review = term.transcript
    assert "DOMAIN" in review and "shop.example.com" in review
    assert "[hidden, 24 characters]" in review and "[generated, 40 characters]" in review
    assert "https://shop.example.com/app" in review
    term.send("n")
    assert term.finish() == 1
    assert "configuration not confirmed: nothing was written" in term.transcript
    assert not env_file.exists()
    assert "pk_live_0123456789abcdef" not in term.transcript  # hidden input is not echoed

    term = terminal(site)
    term.expect("Domain name: ")
    term.send("shop.example.com")
    term.expect("Payment provider API key: ")
    term.send("pk_live_0123456789abcdef")
    term.expect("Write these values to")
    term.send("y")
    assert term.finish() == 0, term.transcript
    assert env_file.stat().st_mode & 0o777 == 0o600
    values = parse_env_text(env_file.read_text())
    assert values["DOMAIN"] == "shop.example.com"
    assert values["API_KEY"] == "pk_live_0123456789abcdef"
    assert values["APP_URL"] == "https://shop.example.com/app"
    password = values["DB_PASSWORD"]
    assert len(password) == 40 and set(password) <= set(DEFAULT_ALPHABET)
    # The summary shows the credential masked, on the terminal, and nowhere else.
    assert f"DB_PASSWORD: {mask(password)}" in term.transcript
    assert password not in term.transcript
    assert site.compose("exec", "-T", "web", "sh", "-c", "echo $DB_PASSWORD").strip() == password
    for log in (site.path / ".surefoot").rglob("*.log"):
        text = log.read_text()
        assert password not in text and "pk_live_0123456789abcdef" not in text, log

    # A re-run asks nothing and keeps every value, the generated secret above all.
    again = site.run("deploy")
    assert again.returncode == 0, again.stdout + again.stderr
    assert parse_env_text(env_file.read_text())["DB_PASSWORD"] == password
    assert "nothing to write" in again.stdout


@pytest.mark.docker
def test_non_interactive_with_set_and_with_values_missing(site: Project) -> None:
    missing = site.run("deploy", "--non-interactive", "--set", "DOMAIN=shop.example.com")
    assert missing.returncode == 2
    assert "required values are missing: API_KEY" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert not (site.path / ".env.production").exists()

    site.env["API_KEY"] = "from-the-environment-123"
    done = site.run("deploy", "--non-interactive", "--set", "DOMAIN=shop.example.com")
    assert done.returncode == 0, done.stdout + done.stderr
    values = parse_env_text((site.path / ".env.production").read_text())
    assert values["API_KEY"] == "from-the-environment-123"
    assert "from-the-environment-123" not in done.stdout

    bad = site.run("deploy", "--fresh", "--non-interactive", "--set", "oops")
    assert bad.returncode == 2


@pytest.mark.docker
def test_a_generated_secret_with_every_allowed_character_survives_into_a_container(site: Project) -> None:
    alphabet = "".join(chr(c) for c in range(33, 127) if chr(c) not in "$'\"\\`")
    config = CONFIG.format(name=site.name).replace("length = 40", f"length = 4096\nalphabet = {json.dumps(alphabet)}")
    site.write("surefoot.toml", config)
    tricky = "it's p$ss w\"rd;`x`$(id) \\ naïve ✓"
    result = site.run("deploy", "--non-interactive", "--set", "DOMAIN=shop.example.com", "--set", f"API_KEY={tricky}")
    assert result.returncode == 0, result.stdout + result.stderr
    password = parse_env_text((site.path / ".env.production").read_text())["DB_PASSWORD"]
    assert set(alphabet) <= set(password), "4096 characters drawn from 89 cover them all (a miss has odds below 1e-17)"
    inside = site.compose("exec", "-T", "web", "sh", "-c", 'printf %s "$DB_PASSWORD"')
    assert inside == password
    # An entered value with quotes, $, backticks, a backslash and non-ASCII text arrives literally too.
    assert site.compose("exec", "-T", "web", "sh", "-c", 'printf %s "$API_KEY"') == tricky


# -- pure parts ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["shop.example.com", "a.b.co", "xn--bcher-kva.example", "EXAMPLE.COM."])
def test_valid_domains(value: str) -> None:
    assert valid_domain(value) is None


@pytest.mark.parametrize("value", ["localhost", "-bad.example.com", "a..b", "x" * 64 + ".com", "1.2.3.4", "sp ace.com"])
def test_invalid_domains(value: str) -> None:
    assert valid_domain(value) is not None


def test_validators() -> None:
    assert valid_email("ops@shop.example.com") is None
    assert valid_email("ops@localhost") is not None
    port = PromptSettings(key="PORT", question="Port", validator="port")
    assert check_value(port, "8080") is None
    assert check_value(port, "70000") is not None
    choice = PromptSettings(key="TIER", question="Tier", validator="choices", choices=["small", "large"])
    assert check_value(choice, "medium") == "choose one of: small, large"
    regex = PromptSettings(key="ID", question="Id", validator="regex", pattern=r"proj_[a-z0-9]+")
    assert check_value(regex, "proj_42") is None and check_value(regex, "x") is not None
    optional = PromptSettings(key="X", question="X", required=False)
    assert check_value(optional, "") is None


def test_generated_secrets_avoid_troublesome_characters() -> None:
    secret = generate_secret(SecretSettings(key="S", length=2000))
    assert not set(secret) & set("$'\"\\ `")
    assert len(set(secret)) > 40


def test_env_lines_read_back_literally() -> None:
    for value in ["plain", "p$ss w0rd;`x`$(id)", "it's \"quoted\" \\ $HOME", "naïve ✓", ""]:
        assert parse_env_text(env_line("K", value))["K"] == value
    assert env_line("K", "a$b") == "K='a$b'"
    assert env_line("K", "it's $x") == 'K="it\'s \\$x"'


def test_render_env_keeps_comments_and_order() -> None:
    existing = "# shop settings\nDOMAIN='old.example.com'\nKEEP=1\n"
    text = render_env(existing, {"DOMAIN": "new.example.com", "NEW": "v"})
    lines = text.splitlines()
    assert lines[:3] == ["# shop settings", "DOMAIN='new.example.com'", "KEEP=1"]
    assert lines[-1] == "NEW='v'"


def test_derive_and_mask() -> None:
    assert derive({"URL": "https://{DOMAIN}"}, {"DOMAIN": "a.example"}) == {"URL": "https://a.example"}
    with pytest.raises(ValueError, match="names DOMAIN"):
        derive({"URL": "https://{DOMAIN}"}, {})
    assert mask("abcdefghijklmnop") == "abcd...mnop"
    assert mask("short") == "*****"


