"""A small stack for zero-downtime updates: an API slow to stop and to start, behind the
example's nginx (examples/shop/proxy), and a client loop that counts failed requests.
Shared by tests/test_zero_downtime.py and bench/zero_downtime.py."""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NGINX_IMAGE = "surefoot-test/nginx:1"
PROXY_DIR = REPO / "examples" / "shop" / "proxy"

# The api ignores SIGTERM (a shell or httpd as PID 1 has no handler), so stopping it takes its
# stop_grace_period; it sleeps before listening, so a recreated one leaves a real gap.
# VERSION=bad: it never listens, so it never turns healthy.
ZDT_COMPOSE = """
services:
  api:
    image: {image}
    environment:
      VERSION: ${{VERSION:?set VERSION}}
    stop_grace_period: 2s
    command:
      - sh
      - -c
      - 'mkdir -p /www && echo "version $$VERSION" > /www/index.html && sleep 2 &&
         if [ "$$VERSION" = bad ]; then exec sleep 3600; fi; exec httpd -f -p 8000 -h /www'
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8000/"]
      interval: 1s
      timeout: 2s
      retries: 3
  proxy:
    image: {nginx}
    stop_signal: SIGKILL
    volumes: ["./nginx.conf:/etc/nginx/nginx.conf:ro"]
    ports: ["127.0.0.1:{port}:80"]
"""

ZDT_CONFIG = """
[project]
name = "{name}"
env_file = ".env"

[phases.pull-images]
enabled = false

[phases.health-wait]
url = "http://127.0.0.1:{port}/"
expect_body = "version"
consecutive = 2
interval = "0.3s"
timeout = "60s"

[phases.services-start]
"""

ZERO_DOWNTIME = 'zero_downtime = ["api"]\ndrain = "1s"\n'


def ensure_nginx_image() -> str:
    """The example's proxy image, built once per machine (apt-get install nginx from Debian)."""
    if subprocess.run(["docker", "image", "inspect", NGINX_IMAGE], capture_output=True).returncode != 0:
        subprocess.run(["docker", "build", "-q", "-t", NGINX_IMAGE, str(PROXY_DIR)], check=True,
                       capture_output=True, timeout=900)
    return NGINX_IMAGE


def nginx_conf() -> str:
    return (PROXY_DIR / "nginx.conf").read_text()


class Traffic:
    """GET http://127.0.0.1:PORT/ about ``rate`` times a second, at most ``limit`` requests,
    in a thread, one at a time; counts the failures and the longest gap between answers."""

    def __init__(self, port: int, *, limit: int = 2000, rate: float = 50.0, timeout: float = 10.0, path: str = "/"):
        self.url = f"http://127.0.0.1:{port}{path}"
        self.limit, self.period, self.timeout = limit, 1.0 / rate, timeout
        self.ok = 0
        self.failed = 0
        self.errors: list[str] = []
        self.bodies: list[str] = []  # each distinct answer, in the order first seen
        self.longest_gap = 0.0  # seconds between two successful answers
        self._last_ok: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    @property
    def sent(self) -> int:
        return self.ok + self.failed

    @property
    def exhausted(self) -> bool:
        return self.sent >= self.limit

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> Traffic:
        self._stop.set()
        self._thread.join(timeout=60)
        return self

    def _run(self) -> None:
        while not self._stop.is_set() and self.sent < self.limit:
            began = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                    body = response.read().decode().strip()
                now = time.monotonic()
                if self._last_ok is not None:
                    self.longest_gap = max(self.longest_gap, now - self._last_ok)
                self._last_ok = now
                self.ok += 1
                if body not in self.bodies:
                    self.bodies.append(body)
            except (urllib.error.URLError, OSError) as exc:
                self.failed += 1
                if len(self.errors) < 5:
                    self.errors.append(str(exc))
            self._stop.wait(max(0.0, self.period - (time.monotonic() - began)))


# -- a proxy that resolves the service on every request and never retries ----------------------
PYTHON_IMAGE = "surefoot-test/python:1"
PYTHON_DOCKERFILE = """FROM debian:bookworm-slim
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 \\
 && rm -rf /var/lib/apt/lists/*
"""

# The app says which container answered; it listens 2 s after it starts, and exits at once on
# SIGTERM (as most do): so a container reached before its gate, or after its stop began, fails
# requests. VERSION=bad answers requests but its /health fails: a release that never turns
# healthy, which must never get one. GET /slow?s=N answers after N seconds.
APP = """import http.server, os, signal, socket, sys, time
VERSION = os.environ["VERSION"]
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
time.sleep(2)

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        if self.path.startswith("/slow?s="):
            time.sleep(float(self.path.split("=", 1)[1]))
        code = 500 if self.path == "/health" and VERSION == "bad" else 200
        body = f"version {VERSION} from {socket.gethostname()}\\n".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("", 8000), Handler).serve_forever()
"""

# Resolves "api" through Docker's DNS for every request (no cache), picks one address, never
# retries: a failed connection is a 502 for the client.
PROXY = """import http.client, http.server, random, socket

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        try:
            address = random.choice(socket.getaddrinfo("api", 8000, type=socket.SOCK_STREAM))[4][0]
            upstream = http.client.HTTPConnection(address, 8000, timeout=30)
            upstream.request("GET", self.path)
            answer = upstream.getresponse()
            status, body = answer.status, answer.read()
        except Exception as exc:
            status, body = 502, f"proxy: {type(exc).__name__}: {exc}\\n".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("", 80), Handler).serve_forever()
"""

PLAIN_COMPOSE = """
services:
  api:
    image: {python}
    environment:
      VERSION: ${{VERSION:?set VERSION}}
    volumes: ["./app.py:/app.py:ro"]
    command: ["python3", "-u", "/app.py"]
    stop_grace_period: 2s
    healthcheck:
      test: ["CMD", "python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
      interval: 1s
      timeout: 3s
      retries: 3
  proxy:
    image: {python}
    volumes: ["./proxy.py:/proxy.py:ro"]
    command: ["python3", "-u", "/proxy.py"]
    stop_signal: SIGKILL
    ports: ["127.0.0.1:{port}:80"]
"""


def ensure_python_image() -> str:
    """Debian's python3 in an image, built once per machine."""
    if subprocess.run(["docker", "image", "inspect", PYTHON_IMAGE], capture_output=True).returncode != 0:
        subprocess.run(["docker", "build", "-q", "-t", PYTHON_IMAGE, "-"], input=PYTHON_DOCKERFILE.encode(),
                       check=True, capture_output=True, timeout=900)
    return PYTHON_IMAGE


def plain_files(port: int, version: str = "1") -> dict[str, str]:
    """The files of the plain-proxy stack (compose.yaml, .env, app.py, proxy.py)."""
    return {"compose.yaml": PLAIN_COMPOSE.format(python=PYTHON_IMAGE, port=port), ".env": f"VERSION={version}\n",
            "app.py": APP, "proxy.py": PROXY}


# -- the edge (issue 27) ---------------------------------------------------------------------
HAPROXY_IMAGE = "surefoot-test/haproxy:1"
HAPROXY_DOCKERFILE = """FROM debian:bookworm-slim
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends haproxy \\
 && rm -rf /var/lib/apt/lists/*
"""


def ensure_haproxy_image() -> str:
    """Debian's HAProxy (2.6) in an image, built once per machine: the edge's stand-in for the
    official image, which no registry here serves."""
    if subprocess.run(["docker", "image", "inspect", HAPROXY_IMAGE], capture_output=True).returncode != 0:
        subprocess.run(["docker", "build", "-q", "-t", HAPROXY_IMAGE, "-"], input=HAPROXY_DOCKERFILE.encode(),
                       check=True, capture_output=True, timeout=900)
    return HAPROXY_IMAGE


# A line-echo server (plain TCP): each line comes back prefixed with the version.
ECHO = """import os, signal, socketserver, time
VERSION = os.environ["VERSION"]
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
time.sleep(1)

class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(f"{VERSION} {line.decode().strip()}\\n".encode())
            self.wfile.flush()

socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer(("", 7000), Handler).serve_forever()
"""

# Services that publish their ports, listed in zero_downtime: the edge holds the ports.
EDGE_COMPOSE = """
services:
  api:
    image: {python}
    environment:
      VERSION: ${{VERSION:?set VERSION}}
    volumes: ["./app.py:/app.py:ro"]
    command: ["python3", "-u", "/app.py"]
    stop_grace_period: 2s
    ports: ["127.0.0.1:{port}:8000"]
    healthcheck:
      test: ["CMD", "python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
      interval: 1s
      timeout: 3s
      retries: 3
  echo:
    image: {python}
    environment:
      VERSION: ${{VERSION:?set VERSION}}
    volumes: ["./echo.py:/echo.py:ro"]
    command: ["python3", "-u", "/echo.py"]
    stop_grace_period: 2s
    ports: ["127.0.0.1:{echo_port}:7000"]
    healthcheck:
      test: ["CMD", "python3", "-c", "import socket; s = socket.create_connection(('127.0.0.1', 7000), 2); s.sendall(b'ping' + bytes([10])); assert s.recv(64)"]
      interval: 1s
      timeout: 3s
      retries: 3
"""

EDGE_CONFIG = ZDT_CONFIG + 'zero_downtime = ["api", "echo"]\ndrain = "{drain}"\n\n[edge]\nimage = "{haproxy}"\n'
