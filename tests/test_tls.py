"""HTTPS probes against a self-signed endpoint on loopback: trusted only when told to."""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import free_port
from surefoot.config.probes import ProbeSettings
from surefoot.deploy.gates.probes import http_probe, tls_context
from surefoot.deploy.phases.verify import certificate_expiry


class Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status":"healthy","checks":{"db":true}}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def self_signed(folder: Path, days: int) -> tuple[Path, Path]:
    cert, key = folder / f"cert-{days}.pem", folder / f"key-{days}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", str(days), "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def serve(cert: Path, key: Path) -> tuple[ThreadingHTTPServer, str]:
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Healthy)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"https://127.0.0.1:{port}/health"


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = self_signed(tmp_path, 365)
    server, url = serve(cert, key)
    yield url, cert
    server.shutdown()


def test_self_signed_is_refused_unless_allowed(endpoint: tuple[str, Path]) -> None:
    url, cert = endpoint
    refused = http_probe(url, 200, None, 5, context=tls_context())
    assert not refused.ok
    assert "TLS certificate not trusted" in refused.detail
    assert http_probe(url, 200, "healthy", 5, context=tls_context(insecure=True)).ok
    assert http_probe(url, 200, None, 5, context=tls_context(ca_file=str(cert))).ok
    json_ok = http_probe(url, 200, None, 5, expect_json={"checks.db": True}, context=tls_context(insecure=True))
    assert json_ok.ok
    json_bad = http_probe(url, 200, None, 5, expect_json={"status": "ok"}, context=tls_context(insecure=True))
    assert json_bad.detail == "HTTP 200, status is 'healthy', expected 'ok'"


def test_certificate_expiry_is_read(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, 10)
    server, url = serve(cert, key)
    try:
        expires = certificate_expiry(url, ProbeSettings(url=url, insecure=True), 5)
    finally:
        server.shutdown()
    import datetime as dt

    left = expires - dt.datetime.now(dt.UTC)
    assert 9 <= left.days <= 10


def verify_project(tmp_path: Path, url: str, extra: str) -> Path:
    folder = tmp_path / "site"
    folder.mkdir(exist_ok=True)
    (folder / "compose.yaml").write_text("services:\n  web:\n    image: nginx\n")
    (folder / "surefoot.toml").write_text(
        "[phases.verify]\ncontainers = false\n"
        f'[[phases.verify.urls]]\nurl = "{url}"\nconsecutive = 2\ninterval = "0.1s"\ntimeout = "2s"\n{extra}'
    )
    return folder


def surefoot_verify(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "surefoot", "-C", str(folder), "verify"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_verify_command_with_the_option_on_and_off(endpoint: tuple[str, Path], tmp_path: Path) -> None:
    url, cert = endpoint
    on = surefoot_verify(verify_project(tmp_path, url, "insecure = true\n"))
    assert on.returncode == 0, on.stdout + on.stderr
    assert "checks passed" in on.stdout
    assert "TLS 127.0.0.1" in on.stdout and "pass" in on.stdout
    off = surefoot_verify(verify_project(tmp_path, url, ""))
    assert off.returncode == 1
    assert "TLS certificate not trusted" in off.stderr
    trusted = surefoot_verify(verify_project(tmp_path, url, f'ca_file = "{cert}"\n'))
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr


def test_verify_warns_of_a_certificate_about_to_expire(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, 10)
    server, url = serve(cert, key)
    try:
        result = surefoot_verify(verify_project(tmp_path, url, "insecure = true\n"))
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"warn\s+expires in [89] days", result.stdout)
