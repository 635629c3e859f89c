"""Every source of values compose reads, through every output surefoot has.

The sources: the configured env file (a value given with --set, a generated secret, a derived
URL that holds the password), a service's ``env_file:``, a ``secrets:`` file, and, for a project
that configures no env file, compose's own ``.env``. The application's health answer leaks all
of them, so that the failed gate's reason carries them into the terminal, the logs, the state
store, ``status --json``, ``history --json``, the HTML timeline and the webhook: each is searched
for each secret in every form (raw, base64, URL-encoded). The files that hold them are private.
"""

from __future__ import annotations

import base64
import http.server
import threading
import urllib.parse
import uuid
from collections.abc import Iterator

import pytest

from conftest import Project, Projects

pytestmark = [pytest.mark.docker, pytest.mark.reliability]

LEAKY_WEB = """
  web:
    image: {image}
    stop_signal: SIGKILL
    command:
      - sh
      - -c
      - 'mkdir -p /www && printf "%s" "{{\\"status\\":\\"down\\",\\"debug\\":\\"$$LEAK $$WEB_SECRET_KEY $$(cat /run/secrets/s 2>/dev/null)\\"}}" > /www/health && exec httpd -f -p 8000 -h /www'
    ports: ["127.0.0.1:{port}:8000"]
"""

CONFIGURED = """
services:""" + LEAKY_WEB + """    env_file: [web.env]
    environment:
      LEAK: "${{API_TOKEN}} ${{DB_PASSWORD}} ${{DATABASE_URL}}"
    secrets: [s]
secrets:
  s:
    file: ./secret.txt
"""

CONFIGURED_TOML = """
[project]
name = "{name}"
env_file = ".env.production"

[phases.pull-images]
enabled = false

[phases.health-wait]
url = "http://127.0.0.1:{port}/health"
expect_body = '"status":"healthy"'
consecutive = 1
interval = "0.2s"
timeout = "20s"

[[phases.configuration.prompts]]
key = "API_TOKEN"
question = "API token"
secret = true

[[phases.configuration.secrets]]
key = "DB_PASSWORD"
length = 32

[phases.configuration.derived]
DATABASE_URL = "postgres://shop:{{DB_PASSWORD}}@db:5432/shop"

[notifications]
webhook = "{webhook}"
"""

DOTENV = """
services:""" + LEAKY_WEB + """    environment:
      LEAK: "${{B_PASSWORD}}"
"""

DOTENV_TOML = """
[project]
name = "{name}"

[phases.pull-images]
enabled = false

[phases.health-wait]
url = "http://127.0.0.1:{port}/health"
expect_body = '"status":"healthy"'
consecutive = 1
interval = "0.2s"
timeout = "20s"

[notifications]
webhook = "{webhook}"
"""


def forms(secret: str) -> set[str]:
    raw = secret.encode()
    return {secret, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
            base64.b64encode(raw).decode().rstrip("="), urllib.parse.quote(secret, safe=""),
            urllib.parse.quote_plus(secret)}


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()


def everything(project: Project, deploy_args: list[str]) -> dict[str, bytes]:
    """Every place surefoot wrote or printed to, after a deployment whose gate failed."""
    printed: dict[str, bytes] = {}
    failed = project.run(*deploy_args)
    assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr
    assert "the health gate failed" in failed.stdout + failed.stderr
    printed["deploy"] = (failed.stdout + failed.stderr).encode()
    page = project.path.parent / f"{project.name}-timeline.html"
    for args in (["status"], ["status", "--json"], ["history"], ["history", "--json"], ["history", "--html", str(page)]):
        result = project.run(*args)
        assert result.returncode == 0, (args, result.stderr)
        printed[" ".join(args)] = (result.stdout + result.stderr).encode()
    printed["timeline page"] = page.read_bytes()
    state = project.path / ".surefoot"
    for path in state.rglob("*"):
        relative = path.relative_to(state).parts
        # a release keeps the env files and the files compose hands the containers: their copies
        if path.is_file() and not (relative[0] == "releases" and (relative[2:3] in (("env",), ("files",)))):
            printed[str(path)] = path.read_bytes()
    return printed


def hits(places: dict[str, bytes], secrets: dict[str, str]) -> list[tuple[str, str]]:
    return [(where, source) for where, data in places.items() for source, secret in secrets.items()
            for form in forms(secret) if form.encode() in data]


def test_every_source_is_masked_in_every_output(projects: Projects, webhook: tuple[str, list[bytes]]) -> None:
    url, received = webhook
    token = "tok_" + uuid.uuid4().hex
    web_key = "wsk_" + uuid.uuid4().hex
    file_secret = "fsecret_" + uuid.uuid4().hex
    project = projects.new({"compose.yaml": CONFIGURED, "surefoot.toml": CONFIGURED_TOML, "web.env": "",
                            "secret.txt": ""}, webhook=url)
    project.write("web.env", f"WEB_SECRET_KEY={web_key}\n")
    project.write("secret.txt", file_secret + "\n")
    places = everything(project, ["deploy", "--non-interactive", "--yes", "--set", f"API_TOKEN={token}"])
    values = dict(line.split("=", 1) for line in (project.path / ".env.production").read_text().splitlines()
                  if "=" in line)
    password = values["DB_PASSWORD"].strip("'")
    secrets = {"--set": token, "generated": password, "env_file:": web_key, "secrets: file": file_secret}
    assert received, "the webhook heard nothing"
    places.update({f"webhook {i}": body for i, body in enumerate(received)})
    assert hits(places, secrets) == []
    # the derived URL is shown with its password masked, whole enough to be read
    assert b"postgres://shop:********@db:5432/shop" in places["deploy"]
    # what holds secrets is private: the env file, the release copies of the others, the state
    assert (project.path / ".env.production").stat().st_mode & 0o777 == 0o600
    release = next((project.path / ".surefoot" / "releases").iterdir())
    assert (project.path / ".surefoot").stat().st_mode & 0o777 == 0o700
    for copy in (release / "files").rglob("*"):
        if copy.is_file() and copy.name == "web.env":
            assert copy.stat().st_mode & 0o777 == 0o600, copy
        if copy.is_file() and copy.name == "secret.txt":  # its own mode: a container's user reads it
            assert copy.stat().st_mode == (project.path / "secret.txt").stat().st_mode, copy


def test_compose_s_own_env_file_is_masked_too(projects: Projects, webhook: tuple[str, list[bytes]]) -> None:
    url, received = webhook
    password = "bpw_" + uuid.uuid4().hex
    project = projects.new({"compose.yaml": DOTENV, "surefoot.toml": DOTENV_TOML, ".env": ""}, webhook=url)
    project.write(".env", f"B_PASSWORD={password}\n")
    places = everything(project, ["deploy"])
    places.update({f"webhook {i}": body for i, body in enumerate(received)})
    assert hits(places, {".env": password}) == []


def test_the_state_folder_is_private(projects: Projects) -> None:
    """0700 for the folder (even one an older surefoot left open), 0600 for the store and logs."""
    project = projects.new({"compose.yaml": DOTENV, "surefoot.toml": DOTENV_TOML.replace("[notifications]", "#")
                            .replace('webhook = "{webhook}"', ""), ".env": "B_PASSWORD=x\n"})
    state = project.path / ".surefoot"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    project.run("deploy")
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "state.db").stat().st_mode & 0o777 == 0o600
    logs = [path for path in (state / "logs").rglob("*")]
    assert logs and all(path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600) for path in logs), \
        [(p, oct(p.stat().st_mode)) for p in logs]
