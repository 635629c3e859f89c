"""verify and the gates on the real engine: a missing container fails verify, a one-shot job
and a container still starting do not, a certain failure is not waited out, a TCP probe of a
published port is not fooled by Docker's proxy, services-start says compose's own reason and
has a timeout, database-start recognises database images."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import STACK_COMPOSE, Project, Projects, free_port, migrate_command

pytestmark = pytest.mark.docker

# The test stack, with a service scaled to 0 and one behind a profile: neither is expected to run.
WITH_IDLE_SERVICES = STACK_COMPOSE + """
  spare:
    image: {image}
    command: ["sleep", "3600"]
    scale: 0
  debug:
    image: {image}
    command: ["sleep", "3600"]
    profiles: ["debug"]
"""


def verify(project: Project, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return project.run("verify", timeout=timeout)


def test_verify_fails_when_a_service_has_no_container(projects: Projects) -> None:
    project = projects.new({"compose.yaml": WITH_IDLE_SERVICES, ".env": "GREETING=hello\n"})
    project.configure(migrate_command("true"))
    deployed = project.run("deploy")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    passed = verify(project)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "2 checks passed" in passed.stdout  # db and web; not spare (scale 0) nor debug (a profile)

    (web,) = project.containers("label=com.docker.compose.service=web")
    project.docker("rm", "--force", web)
    missing = verify(project)
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert "service web: no container" in missing.stderr

    project.compose("down", "--timeout", "0")
    nothing = verify(project)
    assert nothing.returncode == 1, nothing.stdout + nothing.stderr
    assert "2 of 2 checks failed" in nothing.stderr
    assert "service db: no container" in nothing.stderr


# A setup job the web waits for, a job that is not restarted, and a service whose healthcheck
# takes a few seconds to pass.
WITH_JOBS = """
services:
  setup:
    image: {image}
    command: ["true"]
  seed:
    image: {image}
    restart: "no"
    command: ["true"]
  slow:
    image: {image}
    stop_signal: SIGKILL
    command: ["sh", "-c", "sleep 4; touch /tmp/ready; exec sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      start_period: 60s
  web:
    image: {image}
    stop_signal: SIGKILL
    depends_on:
      setup:
        condition: service_completed_successfully
    command:
      - sh
      - -c
      - 'mkdir -p /www && echo "{{\\"status\\":\\"healthy\\"}}" > /www/health && exec httpd -f -p 8000 -h /www'
    ports: ["127.0.0.1:{port}:8000"]
"""

JOBS_CONFIG = """
[project]
name = "{name}"

[phases.pull-images]
enabled = false

[phases.health-wait]
url = "http://127.0.0.1:{port}/health"
consecutive = 2
interval = "0.3s"
timeout = "30s"

[phases.verify]
urls = [{{ url = "http://127.0.0.1:{port}/health", consecutive = 2, interval = "0.3s" }}]
containers_timeout = "60s"
"""


def test_a_one_shot_job_and_a_container_still_starting_pass_verify(projects: Projects) -> None:
    project = projects.new({"compose.yaml": WITH_JOBS, "surefoot.toml": JOBS_CONFIG})
    deployed = project.run("deploy")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "exited with code 0 (a one-shot service" in deployed.stdout
    history = json.loads(project.run("history", "--json").stdout)
    assert [r["outcome"] for r in history["releases"]] == ["healthy"]

    # A new container of slow: its healthcheck starts again, and verify waits for it.
    project.docker("compose", "--project-directory", str(project.path), "-p", project.name,
                   "up", "--detach", "--force-recreate", "--no-deps", "slow")
    result = verify(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "containers: waiting for" in result.stdout
    assert "5 checks passed" in result.stdout


def test_a_certain_failure_is_not_waited_out_and_the_url_is_named_once(projects: Projects) -> None:
    project = projects.new({"compose.yaml": STACK_COMPOSE, ".env": "GREETING=hello\n"})
    project.configure(migrate_command("true"))
    assert project.run("deploy").returncode == 0
    url = f"http://127.0.0.1:{project.port}/missing"
    project.configure(migrate_command("true"), f"""
[phases.verify]
urls = [{{ url = "{url}", consecutive = 2, interval = "0.2s", timeout = "10m", failure_limit = 0 }}]
""")
    (db,) = project.containers("label=com.docker.compose.service=db")
    project.docker("stop", db)  # a dependency is down: the verdict is certain
    result = verify(project, timeout=240)  # the URL's own timeout is 10 minutes
    assert result.returncode == 1, result.stdout + result.stderr
    message = next(line for line in result.stderr.splitlines() if "checks failed" in line)
    assert "exited with code 137" in message
    assert "HTTP 404" in message and "one try, not repeated" in message
    assert message.count(url) == 1


class Broken(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(500)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"oops\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def broken_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Broken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()


def test_a_steady_http_500_ends_the_gate_at_the_default_limit(broken_url: str, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: nginx\n")
    (tmp_path / "surefoot.toml").write_text(
        "[phases.verify]\ncontainers = false\n"
        f'urls = [{{ url = "{broken_url}", interval = "0.1s", timeout = "10m" }}]\n'
    )
    result = subprocess.run([sys.executable, "-m", "surefoot", "-C", str(tmp_path), "verify"],
                            capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "10 wrong answers in a row (limit 10), last: HTTP 500" in result.stderr
    # One line per change of answer, not one per try.
    assert result.stdout.count("fail: HTTP 500") == 1


IDLE_PORT = """
services:
  web:
    image: {image}
    stop_signal: SIGKILL
    command: ["sleep", "3600"]
    ports: ["127.0.0.1:{port}:5432"]
"""


def test_a_tcp_probe_of_a_published_port_needs_a_listener_in_the_container(projects: Projects) -> None:
    project = projects.new({"compose.yaml": IDLE_PORT, "surefoot.toml": """
[project]
name = "{name}"
[phases.pull-images]
enabled = false
[[phases.health-wait.probes]]
port = {port}
consecutive = 2
interval = "0.2s"
timeout = "4s"
"""})
    result = project.run("deploy")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the connection was closed at once (Docker's proxy" in result.stderr
    assert project.phase("health-wait")["status"] == "failed"


SICK_DEPENDENCY = """
services:
  db:
    image: {image}
    stop_signal: SIGKILL
    command: ["sleep", "3600"]
    healthcheck:
      test: ["CMD", "false"]
      interval: 1s
      retries: 1
  web:
    image: {image}
    stop_signal: SIGKILL
    command: ["sleep", "3600"]
    depends_on:
      db:
        condition: service_healthy
"""

NEVER_HEALTHY = SICK_DEPENDENCY.replace('["CMD", "false"]', '["CMD", "true"]').replace(
    "interval: 1s", "interval: 1h\n      start_period: 1h")

SERVICES_CONFIG = """
[project]
name = "{name}"
[phases.pull-images]
enabled = false
[phases.database-start]
services = []
"""


def test_services_start_records_compose_s_own_reason(projects: Projects) -> None:
    project = projects.new({"compose.yaml": SICK_DEPENDENCY, "surefoot.toml": SERVICES_CONFIG})
    result = project.run("deploy")
    assert result.returncode == 1, result.stdout + result.stderr
    error = project.phase("services-start")["error"]
    assert error.startswith("docker compose up failed (exit 1): dependency failed to start: container ")
    assert error.endswith(" is unhealthy")


def test_services_start_has_a_timeout(projects: Projects) -> None:
    project = projects.new({"compose.yaml": NEVER_HEALTHY,
                            "surefoot.toml": SERVICES_CONFIG + '[phases.services-start]\ntimeout = "3s"\n'})
    result = project.run("deploy", timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    error = project.phase("services-start")["error"]
    assert error.startswith("docker compose up did not finish within 3.0s (phases.services-start.timeout)")
    assert "; it was at: Container " in error


DATABASE_IMAGE = """
services:
  db:
    image: {db_image}
    stop_signal: SIGKILL
    command: ["sh", "-c", "touch /tmp/ready; exec sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
  web:
    image: {image}
    stop_signal: SIGKILL
    command: ["sleep", "3600"]
"""


@pytest.fixture
def postgres_image(busybox_image: str, projects: Projects) -> Iterator[str]:
    """The busybox image under a name that looks like postgres (no registry is needed)."""
    name = f"surefoot-test/{uuid.uuid4().hex[:10]}/postgres:16"
    subprocess.run(["docker", "tag", busybox_image, name], check=True, capture_output=True)
    yield name
    subprocess.run(["docker", "image", "rm", name], capture_output=True)


def test_database_start_recognises_a_database_image(projects: Projects, postgres_image: str) -> None:
    config = '[project]\nname = "{name}"\n[phases.pull-images]\nenabled = false\n'
    project = projects.new({"compose.yaml": DATABASE_IMAGE, "surefoot.toml": config}, db_image=postgres_image)
    result = project.run("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "database services recognised by their images: db" in result.stdout
    assert project.phase("database-start")["status"] == "completed"

    project.write("surefoot.toml", config.format(name=project.name)
                  + "[phases.database-start]\nservices = []\n")
    again = project.run("deploy")
    assert again.returncode == 0, again.stdout + again.stderr
    assert project.phase("database-start")["status"] == "skipped"
