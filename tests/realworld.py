"""Compose projects in the shapes real applications have, for tests on the real engine.

``shop``: a "database" with a read-only bind-mounted config folder and a read-write
data folder; a web service that ``extends:`` a service of another file, serves its
code from a read-only bind-mounted folder (live, as PHP or a dev server would),
reads a single bind-mounted config file, a ``secrets:`` file and a read-only file
outside the project; a worker from an ``include:``d file with its own read-only
config file; and a ``configs:`` file. ``/health`` comes from the mounted code; ``/cgi-bin/info`` prints what
the web container reads (config, secret, the extended environment, GREETING).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from conftest import Project, Projects

SHOP_COMPOSE = """
include:
  - worker.yaml
services:
  db:
    image: {image}
    command: ["sh", "-c", "touch /tmp/ready; exec sleep 3600"]
    stop_signal: SIGKILL
    volumes:
      - ./db/conf:/etc/db:ro
      - ./data:/data
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
  web:
    extends: {{file: common.yaml, service: base}}
    environment:
      GREETING: ${{GREETING:?set GREETING}}
    volumes:
      - ./site:/www:ro
      - ./web.conf:/etc/web.conf
      - {outside}:/etc/outside.conf:ro
    secrets: [token]
    configs:
      - {{source: motd, target: /etc/motd}}
    ports: ["127.0.0.1:{port}:8000"]
    depends_on:
      db: {{condition: service_healthy}}
secrets:
  token:
    file: ./secrets/token.txt
configs:
  motd:
    file: ./motd.txt
"""

SHOP_COMMON = """
services:
  base:
    image: {image}
    stop_signal: SIGKILL
    environment:
      BASE: {base}
    command: ["sh", "-c", "env > /tmp/env; exec httpd -f -p 8000 -h /www"]
"""

SHOP_WORKER = """
services:
  worker:
    image: {image}
    stop_signal: SIGKILL
    command: ["sleep", "3600"]
    volumes:
      - ./worker.conf:/etc/worker.conf:ro
"""

INFO_CGI = """#!/bin/sh
echo "Content-Type: text/plain"
echo ""
echo "conf=$(cat /etc/web.conf)"
echo "token=$(cat /run/secrets/token)"
echo "outside=$(cat /etc/outside.conf)"
echo "motd=$(cat /etc/motd)"
grep -E '^(BASE|GREETING)=' /tmp/env | sort | tr 'A-Z' 'a-z'
"""

SHOP_CONFIG = """
[project]
name = "{name}"

[phases.pull-images]
enabled = false

[phases.database-start]
services = ["db"]
timeout = "60s"

[phases.health-wait]
url = "http://127.0.0.1:{port}/health"
expect_json = {{ status = "healthy" }}
consecutive = 2
interval = "0.3s"
timeout = "{timeout}"
failure_limit = 3
"""


class Shop(Project):
    """The ``shop`` project; :meth:`release` writes one version of every file it reads."""

    outside: Path

    def release(self, tag: str, *, healthy: bool = True, greeting: str = "hello") -> None:
        self.write("site/health", json.dumps({"status": "healthy" if healthy else "degraded", "site": tag}))
        self.write("web.conf", f"conf-{tag}")
        self.write("secrets/token.txt", f"token-{tag}")
        self.write("worker.conf", f"worker-{tag}")
        self.write("motd.txt", f"motd-{tag}")
        self.write("db/conf/db.conf", "db-config")
        self.write("common.yaml", SHOP_COMMON.format(image=self.image, base=f"base-{tag}"))
        self.write(".env", f"GREETING={greeting}\n")
        self.outside.write_text(f"outside-{tag}")

    image: str = ""

    def health(self) -> dict[str, object]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as response:
            return dict(json.loads(response.read()))

    def info(self) -> dict[str, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/cgi-bin/info", timeout=5) as response:
            lines = response.read().decode().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def container(self, service: str) -> tuple[str, str]:
        """The id and start time of the service's container."""
        (container,) = self.containers(f"label=com.docker.compose.service={service}")
        started = self.docker("inspect", "--format", "{{.Id}} {{.State.StartedAt}}", container).split()
        return started[0], started[1]

    def exec(self, service: str, *argv: str) -> str:
        (container,) = self.containers(f"label=com.docker.compose.service={service}")
        return self.docker("exec", container, *argv)

    def deploy(self, expect: int = 0, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.run("deploy", *args)
        assert result.returncode == expect, result.stdout[-4000:] + result.stderr
        return result


def new_shop(projects: Projects, timeout: str = "20s") -> Shop:
    """A ``shop`` project at its first version (``r1``), not deployed yet."""
    outside = projects.folder / f"outside-{len(projects.made)}.conf"
    shop = projects.new({"compose.yaml": SHOP_COMPOSE, "worker.yaml": SHOP_WORKER, "surefoot.toml": SHOP_CONFIG},
                        cls=Shop, outside=str(outside), timeout=timeout)
    assert isinstance(shop, Shop)
    shop.outside = outside
    shop.image = projects.image
    shop.write("site/cgi-bin/info", INFO_CGI).chmod(0o755)
    shop.write("data/.keep", "")
    shop.release("r1")
    return shop


# A built web service beside a "database": a new release is a new image under the same
# name (PROJECT-web:latest), the common case.
BUILT_COMPOSE = """
services:
  db:
    image: {image}
    command: ["sh", "-c", "touch /tmp/ready; exec sleep 3600"]
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
  web:
    build: ./web
    stop_signal: SIGKILL
    ports: ["127.0.0.1:{port}:8000"]
"""

BUILT_DOCKERFILE = """
FROM {image}
COPY health /www/health
CMD ["httpd", "-f", "-p", "8000", "-h", "/www"]
"""


def new_built(projects: Projects) -> Shop:
    """``db`` and a built ``web`` whose /health comes from its build context (``web/health``)."""
    project = projects.new({"compose.yaml": BUILT_COMPOSE, "web/Dockerfile": BUILT_DOCKERFILE,
                            "surefoot.toml": SHOP_CONFIG}, cls=Shop, timeout="20s")
    assert isinstance(project, Shop)
    return project
