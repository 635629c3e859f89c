"""Secrets never reach output, logs, the state store, JSON output, history or release copies.

Every byte surefoot wrote or printed is searched for each secret and for its
base64 and URL-encoded forms.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
import uuid
from pathlib import Path

import pytest

from conftest import Project, Projects
from surefoot.base.secrets import parse_env_text

pytestmark = [pytest.mark.docker, pytest.mark.reliability]
RESULTS = Path(__file__).parent / "results"

COMPOSE = """
services:
  web:
    image: {image}
    stop_signal: SIGKILL
    environment:
      DB_PASSWORD: ${{DB_PASSWORD:?}}
      API_TOKEN: ${{API_TOKEN:?}}
      SIGNING_KEY: ${{SIGNING_KEY:?}}
    command:
      - sh
      - -c
      - 'mkdir -p /www && echo "{{\\"status\\":\\"healthy\\"}}" > /www/health && exec httpd -f -p 8000 -h /www'
    ports: ["127.0.0.1:{port}:8000"]
"""

CONFIG = """
[project]
name = "{name}"
env_file = ".env.production"

[phases.pull-images]
enabled = false

[phases.database-migrate]
service = "web"
command = ["sh", "-c", "echo migrating; echo done"]

[phases.health-wait]
url = "http://127.0.0.1:{port}/health"
consecutive = 2
interval = "0.3s"

[[phases.configuration.prompts]]
key = "API_TOKEN"
question = "API token"
secret = true

[[phases.configuration.secrets]]
key = "DB_PASSWORD"

[[phases.configuration.secrets]]
key = "SIGNING_KEY"
length = 64
alphabet = "abcdefghijklmnopqrstuvwxyz0123456789+/=@:%!*"

[phases.post-deploy]
urls = ["http://127.0.0.1:{port}/"]
credentials = ["DB_PASSWORD"]
"""


def forms(secret: str) -> set[str]:
    raw = secret.encode()
    return {secret, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
            base64.b64encode(raw).decode().rstrip("="), urllib.parse.quote(secret, safe=""),
            urllib.parse.quote_plus(secret)}


@pytest.fixture
def secretive(projects: Projects) -> Project:
    return projects.new({"compose.yaml": COMPOSE, "surefoot.toml": CONFIG})


def test_no_secret_in_anything_surefoot_wrote_or_printed(secretive: Project) -> None:
    prompted = "tok_live_Qx7#p/w+d=é" + uuid.uuid4().hex
    printed: list[str] = []
    for args in (["deploy", "--non-interactive", "--set", f"API_TOKEN={prompted}"], ["deploy"],
                 ["status"], ["status", "--json"], ["history"], ["history", "--json"], ["verify"]):
        result = secretive.run(*args)
        assert result.returncode == 0, (args, result.stdout + result.stderr)
        printed += [result.stdout, result.stderr]
    env_file = secretive.path / ".env.production"
    values = parse_env_text(env_file.read_text())
    secrets = {key: values[key] for key in ("API_TOKEN", "DB_PASSWORD", "SIGNING_KEY")}
    assert secrets["API_TOKEN"] == prompted

    state = secretive.path / ".surefoot"
    files = [path for path in state.rglob("*") if path.is_file()]
    searched = [path for path in files if not (path.parent.parent.name == "releases" and path.name == "env")]
    haystacks = {f"output {i}": text.encode() for i, text in enumerate(printed)}
    haystacks.update({str(path): path.read_bytes() for path in searched})
    hits = [(where, key) for where, data in haystacks.items() for key, secret in secrets.items()
            for form in forms(secret) if form.encode() in data]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "secrets.json").write_text(json.dumps(
        {"secrets": len(secrets), "forms_each": len(forms(prompted)), "places_searched": len(haystacks),
         "bytes_searched": sum(map(len, haystacks.values())), "hits": len(hits)}, indent=1))
    assert hits == []
    assert any(path.name.endswith(".log") for path in searched) and (state / "state.db").exists()

    # The env file and every release copy are private.
    assert env_file.stat().st_mode & 0o777 == 0o600
    for path in (state / "releases").rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path
