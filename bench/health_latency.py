"""Health-gate latency: from the instant a service turns healthy to the gate passing.

surefoot's gate (the health-wait defaults: 3 passes in a row, 2 s apart, no
fixed sleep first) against the original orchestrator's timing (a fixed 10 s
sleep, then polls every 5 s until 3 passes in a row), on the same real compose
stack in the same run, alternating the contenders.

A watcher thread polls the service every 20 ms to timestamp the instant it
turns healthy; each contender's latency is its passing instant minus that one.

    .venv/bin/python bench/health_latency.py [--rounds 3] [--delay 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from surefoot.deploy.gates.probes import Probe, ProbeResult, http_probe, run_gate

COMPOSE = """
services:
  web:
    image: surefoot-test/busybox:1
    stop_signal: SIGKILL
    command: ["sh", "-c", "mkdir -p /www && sleep {delay} && echo '{{\\"status\\":\\"healthy\\"}}' > /www/health && exec httpd -f -p 8000 -h /www"]
    ports: ["127.0.0.1:{port}:8000"]
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy_instant(url: str, stop: threading.Event, found: list[float]) -> None:
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    found.append(time.monotonic())
                    return
        except OSError:
            pass
        time.sleep(0.02)


def surefoot_gate(url: str) -> None:
    probe = Probe("health", lambda: http_probe(url, 200, '"status":"healthy"', 5.0),
                  consecutive=3, interval=2.0, timeout=120.0)
    result = run_gate([probe], clock=time.monotonic, sleep=time.sleep, report=lambda run: None)
    assert result.passed, result.reason


def original_gate(url: str) -> None:
    time.sleep(10)  # the original's fixed sleep before its gate
    streak = 0
    for _ in range(60):
        ok: ProbeResult = http_probe(url, 200, '"status":"healthy"', 10.0)
        streak = streak + 1 if ok.ok else 0
        if streak >= 3:
            return
        time.sleep(5)
    raise AssertionError("the original gate gave up")


def measure(compose: list[str], url: str, gate: Callable[[str], None]) -> float:
    subprocess.run([*compose, "up", "-d", "--force-recreate", "web"], check=True, capture_output=True)
    stop, found = threading.Event(), []
    watcher = threading.Thread(target=healthy_instant, args=(url, stop, found), daemon=True)
    watcher.start()
    gate(url)
    passed = time.monotonic()
    stop.set()
    watcher.join()
    return passed - found[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delay", type=float, default=3.0, help="seconds until the service turns healthy")
    args = parser.parse_args()
    port = free_port()
    name = f"sfbench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as folder:
        compose_file = Path(folder) / "compose.yaml"
        compose_file.write_text(COMPOSE.format(delay=args.delay, port=port))
        compose = ["docker", "compose", "-p", name, "-f", str(compose_file)]
        url = f"http://127.0.0.1:{port}/health"
        results: dict[str, list[float]] = {"surefoot": [], "original": []}
        try:
            for round_number in range(1, args.rounds + 1):
                for contender, gate in (("surefoot", surefoot_gate), ("original", original_gate)):
                    latency = measure(compose, url, gate)
                    results[contender].append(latency)
                    print(f"round {round_number} {contender:<8} {latency:6.2f} s", flush=True)
        finally:
            subprocess.run([*compose, "down", "-t", "0"], capture_output=True)
    ours, theirs = statistics.median(results["surefoot"]), statistics.median(results["original"])
    print()
    print(f"{'gate':<44} {'median latency':>15}")
    print(f"{'surefoot (3 passes, 2 s apart, no sleep)':<44} {ours:>13.2f} s")
    print(f"{'original (10 s sleep, 5 s polls, 3 passes)':<44} {theirs:>13.2f} s")
    print(f"ratio original / surefoot: {theirs / ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
