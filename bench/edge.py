"""The edge, measured in one run (issue 27):

1. the bundled example's nginx (it publishes the port) updated under a client loop (~50
   requests a second to 127.0.0.1, at most 2,000), its config changed each round, with the edge
   (``zero_downtime = ["proxy"]``) and without (compose recreates it in place), alternating:
   failed requests, the longest gap between two answers, the update's duration;
2. the latency the edge adds: 1,000 sequential requests to the plain app, through the edge and
   published directly, alternating in blocks of 100: median and p99 of each.

    .venv/bin/python bench/edge.py [--rounds 3]

The edge is Debian's HAProxy in an image here (tests/zdt_stack.py: no registry answers).
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from zdt_stack import (  # noqa: E402
    APP,
    PLAIN_COMPOSE,
    ZDT_CONFIG,
    Traffic,
    ensure_haproxy_image,
    ensure_python_image,
)

SUREFOOT = [sys.executable, "-m", "surefoot"]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deploy(path: Path) -> float:
    began = time.perf_counter()
    result = subprocess.run([*SUREFOOT, "-C", str(path), "deploy", "--non-interactive"], capture_output=True,
                            text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"{path.name}: deploy failed: {result.stdout[-3000:]}{result.stderr}")
    return time.perf_counter() - began


def down(path: Path, name: str) -> None:
    subprocess.run([*SUREFOOT, "-C", str(path), "compose", "down", "-v", "-t", "1"], capture_output=True)
    subprocess.run(["docker", "rm", "-f", f"{name}-edge"], capture_output=True)
    images = subprocess.run(["docker", "image", "ls", "-q", "--filter", f"reference={name}-*"], capture_output=True,
                            text=True).stdout.split()
    if images:
        subprocess.run(["docker", "image", "rm", "-f", *images], capture_output=True)


class Shop:
    """The example, its nginx listed in zero_downtime (through the edge) or not."""

    def __init__(self, folder: Path, edge: bool, haproxy: str):
        self.name = f"sfb-edge-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.path = folder / self.name
        shutil.copytree(REPO / "examples" / "shop", self.path, ignore=shutil.ignore_patterns(".surefoot"))
        config = (self.path / "surefoot.toml").read_text().replace('name = "shop"', f'name = "{self.name}"')
        config = config.replace("127.0.0.1:8080", f"127.0.0.1:{self.port}")
        if edge:
            config += f'\n[phases.services-start]\nzero_downtime = ["proxy"]\ndrain = "2s"\n\n[edge]\nimage = "{haproxy}"\n'
        (self.path / "surefoot.toml").write_text(config)
        env = (self.path / ".env.production").read_text().replace("HTTP_PORT=8080", f"HTTP_PORT={self.port}")
        (self.path / ".env.production").write_text(env)
        self.round = 0
        deploy(self.path)

    def update(self) -> tuple[int, float, float]:
        self.round += 1
        conf = self.path / "proxy" / "nginx.conf"
        conf.write_text(conf.read_text() + f"# round {self.round}\n")
        traffic = Traffic(self.port, path="/health").start()
        time.sleep(1)
        try:
            duration = deploy(self.path)
            time.sleep(1)
        finally:
            traffic.stop()
        if traffic.exhausted:
            raise RuntimeError("the client loop ended before the update")
        return traffic.failed, traffic.longest_gap, duration


def latencies(port: int, count: int) -> list[float]:
    found = []
    for _ in range(count):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        began = time.perf_counter()
        connection.request("GET", "/")
        connection.getresponse().read()
        found.append(time.perf_counter() - began)
        connection.close()
    return found


def plain(folder: Path, edge: bool, python: str, haproxy: str) -> tuple[Path, str, int]:
    name = f"sfb-lat-{uuid.uuid4().hex[:8]}"
    port = free_port()
    path = folder / name
    path.mkdir()
    compose = PLAIN_COMPOSE.split("  proxy:")[0].replace("    stop_grace_period: 2s\n",
                                                       f"    stop_grace_period: 2s\n    ports: [\"127.0.0.1:{port}:8000\"]\n")
    (path / "compose.yaml").write_text(compose.format(python=python, port=port))
    (path / "app.py").write_text(APP)
    (path / ".env").write_text("VERSION=1\n")
    config = ZDT_CONFIG.format(name=name, port=port)
    if edge:
        config += f'zero_downtime = ["api"]\n\n[edge]\nimage = "{haproxy}"\n'
    (path / "surefoot.toml").write_text(config)
    deploy(path)
    return path, name, port


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description="the edge: an update of the example's nginx, and latency")
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    python, haproxy = ensure_python_image(), ensure_haproxy_image()
    with tempfile.TemporaryDirectory(prefix="sfb-edge-") as folder:
        shops = {"in place (no edge)": Shop(Path(folder), False, haproxy),
                 "through the edge": Shop(Path(folder), True, haproxy)}
        samples: dict[str, list[tuple[int, float, float]]] = {name: [] for name in shops}
        try:
            for _ in range(rounds):
                for name, shop in shops.items():
                    samples[name].append(shop.update())
                    failed, gap, duration = samples[name][-1]
                    print(f"  {name:<20} failed {failed:>4}, longest gap {gap:6.2f} s, update {duration:6.2f} s",
                          flush=True)
        finally:
            for shop in shops.values():
                down(shop.path, shop.name)
        print(f"\nthe example's nginx updated, medians of {rounds} (client: ~50 requests/s to /health)")
        base = "in place (no edge)"
        medians = {name: tuple(statistics.median(s[i] for s in values) for i in range(3))
                   for name, values in samples.items()}
        for name, (failed, gap, duration) in medians.items():
            ratio = "baseline" if name == base else (f"gap {gap / medians[base][1]:.2f}x, "
                                                     f"duration {duration / medians[base][2]:.2f}x")
            print(f"  {name:<20} failed {failed:>6g}   longest gap {gap:6.2f} s   update {duration:6.2f} s   {ratio}")

        stacks = {"direct": plain(Path(folder), False, python, haproxy),
                  "through the edge": plain(Path(folder), True, python, haproxy)}
        try:
            measured: dict[str, list[float]] = {name: [] for name in stacks}
            for _ in range(10):  # alternating blocks of 100
                for name, (_, _, port) in stacks.items():
                    measured[name] += latencies(port, 100)
        finally:
            for path, name, _ in stacks.values():
                down(path, name)
        print("\nlatency of 1,000 requests each (sequential, a new connection each)")
        direct = statistics.median(measured["direct"])
        for name, values in measured.items():
            median = statistics.median(values)
            print(f"  {name:<20} median {median * 1000:6.2f} ms   p99 {p99(values) * 1000:6.2f} ms   "
                  + ("baseline" if name == "direct" else f"{(median - direct) * 1000:+.2f} ms ({median / direct:.2f}x)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
