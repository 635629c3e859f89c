"""Checks that tell the truth, pure logic: the gate's default limit of wrong answers and its
stop at a permanent failure, probe timing inherited from [phases.health-wait], the database
services recognised by their images, verify's judgement of a container, compose's reason."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_tls import self_signed, serve

from conftest import free_port
from surefoot.base.errors import ConfigError
from surefoot.config.probes import DEFAULT_ANSWER_LIMIT, HealthWaitSettings, ProbeSettings
from surefoot.config.settings import ConfigFile, load_settings
from surefoot.deploy.gates import _published_tcp_check
from surefoot.deploy.gates.probes import Probe, ProbeResult, http_probe, run_gate
from surefoot.deploy.gates.watch import ContainerHealth
from surefoot.deploy.phases.verify import _judge, one_shot_services
from surefoot.engines.compose.model import ComposeModel, compose_reason


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def gate(probe: Probe) -> tuple[bool, str | None, int]:
    clock = FakeClock()
    calls: list[int] = []
    result = run_gate([probe], clock=clock, sleep=clock.sleep, report=lambda run: calls.append(1))
    return result.passed, result.reason, len(calls)


def always(result: ProbeResult) -> Callable[[], ProbeResult]:
    return lambda: result


def test_a_steady_wrong_answer_ends_the_gate_at_the_default_limit() -> None:
    wrong = ProbeResult(False, "HTTP 500, expected 200", answered=True)
    passed, reason, calls = gate(Probe("api", always(wrong), interval=2, timeout=120,
                                       answer_limit=DEFAULT_ANSWER_LIMIT))
    assert not passed and calls == DEFAULT_ANSWER_LIMIT
    assert reason == f"api: {DEFAULT_ANSWER_LIMIT} wrong answers in a row (limit {DEFAULT_ANSWER_LIMIT}), " \
                     "last: HTTP 500, expected 200"


def test_a_service_not_answering_yet_is_waited_for_until_the_timeout() -> None:
    starting = ProbeResult(False, "connection refused")
    passed, reason, calls = gate(Probe("api", always(starting), interval=2, timeout=120,
                                       answer_limit=DEFAULT_ANSWER_LIMIT))
    assert not passed and calls > DEFAULT_ANSWER_LIMIT
    assert reason is not None and "not reached within 120s" in reason


def test_a_permanent_failure_ends_the_gate_at_once_when_the_probe_says_so() -> None:
    untrusted = ProbeResult(False, "TLS certificate not trusted: self-signed certificate", permanent=True)
    passed, reason, calls = gate(Probe("site", always(untrusted), timeout=600, stop_on_permanent=True))
    assert (passed, reason, calls) == (False, "site: TLS certificate not trusted: self-signed certificate", 1)
    passed, _, calls = gate(Probe("site", always(untrusted), interval=2, timeout=20))
    assert not passed and calls > 1  # health-wait: a proxy may serve its own certificate while it starts


class Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = int(self.path.strip("/"))
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"no")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Answer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_http_answers_that_mean_starting_are_not_counted_as_wrong(server: str) -> None:
    assert http_probe(f"{server}/500").answered
    assert http_probe(f"{server}/404").answered
    assert not http_probe(f"{server}/503").answered and not http_probe(f"{server}/502").answered
    refused = http_probe(f"http://127.0.0.1:{free_port()}/")
    assert not refused.ok and not refused.answered


def test_failure_limit_zero_turns_the_limit_off_and_a_negative_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: nginx\n")
    (tmp_path / "surefoot.toml").write_text("[phases.health-wait]\nfailure_limit = 0\n")
    assert load_settings(tmp_path).phases.health_wait.failure_limit == 0
    (tmp_path / "surefoot.toml").write_text("[phases.health-wait]\nfailure_limit = -1\n")
    with pytest.raises(ConfigError, match=r"surefoot.toml: phases.health-wait.failure_limit: .*0"):
        load_settings(tmp_path)


def test_extra_probes_inherit_the_top_level_timing_unless_they_set_it() -> None:
    settings = HealthWaitSettings.model_validate({
        "url": "http://127.0.0.1:1/health", "consecutive": 5, "interval": "0.5s", "timeout": "30s",
        "failure_limit": 4,
        "probes": [{"port": 5432}, {"service": "worker", "consecutive": 2, "timeout": "10s"}],
    })
    health, tcp, worker = settings.all_probes()
    assert (health.consecutive, health.interval, health.timeout) == (5, 0.5, 30.0)
    assert (tcp.consecutive, tcp.interval, tcp.timeout, tcp.failure_limit) == (5, 0.5, 30.0, 4)
    assert (worker.consecutive, worker.interval, worker.timeout) == (2, 0.5, 10.0)
    untouched = HealthWaitSettings.model_validate({"probes": [{"port": 5432}]}).all_probes()[0]
    assert untouched == ProbeSettings(port=5432)


def model(services: dict[str, dict[str, object]]) -> ComposeModel:
    return ComposeModel("shop", services, digest="")


def test_database_services_are_recognised_by_their_images() -> None:
    found = model({
        "db": {"image": "postgres:16-alpine"},
        "cache": {"image": "docker.io/library/redis:7"},
        "kv": {"image": "valkey/valkey@sha256:abc"},
        "sql": {"image": "registry.example.com/mirror/mariadb:11"},
        "off": {"image": "mysql:8", "deploy": {"replicas": 0}},
        "web": {"image": "nginx:1.27"},
        "api": {"build": {"context": "."}},
        "postgres-exporter": {"image": "prometheuscommunity/postgres-exporter"},
    }).database_services()
    assert found == ["db", "cache", "kv", "sql"]
    assert ConfigFile().phases.database_start.services is None  # recognised unless set


def test_one_shot_services() -> None:
    shots = one_shot_services(model({
        "migrate": {"image": "app"},
        "app": {"image": "app", "depends_on": {"migrate": {"condition": "service_completed_successfully"},
                                               "db": {"condition": "service_healthy"}}},
        "db": {"image": "postgres"},
        "seed": {"image": "app", "restart": "no"},
        "retry": {"image": "app", "restart": "on-failure:3"},
        "web": {"image": "app", "restart": "unless-stopped"},
        "job": {"image": "app", "deploy": {"restart_policy": {"condition": "none"}}},
    }))
    assert shots == {"migrate", "seed", "retry", "job"}


def container(status: str, health: str = "", exit_code: int = 0) -> ContainerHealth:
    return ContainerHealth("svc", "shop-svc-1", status, health, exit_code, 0, False)


def test_a_container_is_judged_pass_wait_or_fail() -> None:
    assert _judge(container("running"), False)[0] == "pass"
    assert _judge(container("running", "healthy"), False)[0] == "pass"
    assert _judge(container("running", "starting"), False)[0] == "wait"
    assert _judge(container("running", "unhealthy"), False)[0] == "fail"
    assert _judge(container("exited", exit_code=0), True)[0] == "pass"
    assert _judge(container("exited", exit_code=0), False)[0] == "fail"
    assert _judge(container("exited", exit_code=1), True) == ("fail", "exited with code 1")
    assert _judge(container("restarting", exit_code=1), False)[0] == "fail"
    assert _judge(container("created"), False)[0] == "fail"


def test_compose_reason_is_its_last_error_line() -> None:
    output = [
        " Container shop-db-1  Waiting",
        " Container shop-db-1  Error",
        "dependency failed to start: container shop-db-1 is unhealthy",
    ]
    assert compose_reason(output) == "dependency failed to start: container shop-db-1 is unhealthy"
    assert compose_reason([" Container shop-web-1  Started"]) is None


class Containers:
    """A stand-in for the watch: the containers it reports."""

    def __init__(self, *states: ContainerHealth):
        self.states = list(states)

    def snapshot(self, fresh: bool = False) -> list[ContainerHealth]:
        return self.states


def test_a_tcp_probe_of_a_published_port_fails_while_its_service_s_container_is_not_running() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # something accepts, as Docker's proxy would
        port = listener.getsockname()[1]
        db = ContainerHealth("db", "shop-db-1", "running", "", 0, 0, False)
        watch = Containers(db)
        check = _published_tcp_check(f"127.0.0.1:{port}", ("127.0.0.1", port), 2, "db", watch)  # type: ignore[arg-type]
        assert check().ok
        watch.states = [replace(db, status="restarting", exit_code=1)]
        stopped = check()
        assert not stopped.ok
        assert stopped.detail == f"127.0.0.1:{port} is published by db, whose container is not running (restarting)"
        watch.states = []
        assert check().detail.endswith("whose container is not running (no container)")


def test_the_service_publishing_a_port() -> None:
    ports = model({
        "db": {"ports": [{"target": 5432, "published": "5432", "host_ip": "127.0.0.1"}]},
        "web": {"ports": [{"target": 80, "published": "8080"}, {"target": 9000, "published": "9000-9002"}]},
        "other": {"ports": [{"target": 5432, "published": "5432", "host_ip": "10.0.0.5"}]},
    })
    assert ports.service_publishing(5432) == "db" and ports.service_publishing(5432, "localhost") == "db"
    assert ports.service_publishing(5432, "10.0.0.5") == "other"
    assert ports.service_publishing(8080) == "web" and ports.service_publishing(9001) == "web"
    assert ports.service_publishing(6379) is None


def test_verify_fails_at_once_on_an_untrusted_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, 365)
    server, url = serve(cert, key)
    try:
        (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: nginx\n")
        (tmp_path / "surefoot.toml").write_text(
            "[phases.verify]\ncontainers = false\n"
            f'urls = [{{ url = "{url}", interval = "0.1s", timeout = "10m", failure_limit = 0 }}]\n'
        )
        result = subprocess.run([sys.executable, "-m", "surefoot", "-C", str(tmp_path), "verify"],
                                capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    finally:
        server.shutdown()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{url}: TLS certificate not trusted: self-signed certificate" in result.stderr
    assert "not reached within" not in result.stderr
