"""Images that travel as layers, measured (issue 28): the example's API (a ~340 MB image, built
here) updated after a one-line code change, shipped as layers (``ship = "layers"``), as whole
images (``ship = "images"``: docker save | docker load) and through a registry on this machine
that the servers reach by a reverse SSH forward (``build = "registry"``: Kamal 2.8's way), to
one test server and to three, in one run. For each: the bytes the servers received (their
network interfaces' counters) and the time of the build phase, which is, the build being
cached, the images' way to the servers (the longest of the servers'); and three servers against
one.

    .venv/bin/python bench/layers.py [--rounds 2]

Test servers: containers on this machine's engine with their own dockerd and sshd
(tests/servers.py), so the "network" is this machine's memory: the bytes are what a real
uplink would carry, the times are what this machine gives.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "src")]

from conftest import free_port  # noqa: E402
from servers import Server, ServerPool, loopback_registry  # noqa: E402

SUREFOOT = [sys.executable, "-m", "surefoot"]
# init: python as PID 1 ignores SIGTERM, and a 10 s stop would hide the rest of the update
COMPOSE = ('services:\n  api:\n    build: ./api\n    init: true\n'
           '    command: ["python3", "-m", "http.server", "8000"]\n')


def received(server: Server) -> int:
    return int(server.exec("cat", "/sys/class/net/eth0/statistics/rx_bytes").stdout)


class Project:
    def __init__(self, folder: Path, servers: list[Server], ship: str, registry: str | None = None):
        self.name = f"sfb-l-{uuid.uuid4().hex[:8]}"
        self.path = folder / self.name
        self.servers = servers
        shutil.copytree(REPO / "examples" / "shop" / "api", self.path / "api")
        (self.path / "compose.yaml").write_text(COMPOSE)
        config = f'[project]\nname = "{self.name}"\n\n[phases.pull-images]\nenabled = false\n'
        how = f'build = "registry"\nregistry = "{registry}"\n' if ship == "registry" else \
            f'build = "control"\nship = "{ship}"\n'
        for index, server in enumerate(servers):
            config += f'\n[targets.s{index}]\nhost = "{server.alias}"\nssh_config = "{server.ssh_config}"\n{how}'
        config += '\n[rollout]\nbatch = "100%"\n'
        (self.path / "surefoot.toml").write_text(config)

    def deploy(self) -> tuple[float, float, list[int]]:
        """The images' way to the servers: the build phase's time (the build is cached: it is the
        shipping, or the push and the pulls), the longest of the servers'; the whole deployment's;
        and what each server received."""
        before = [received(server) for server in self.servers]
        began = time.perf_counter()
        result = subprocess.run([*SUREFOOT, "-C", str(self.path), "deploy", "--non-interactive", "--progress", "json"],
                                capture_output=True, text=True, stdin=subprocess.DEVNULL)
        whole = time.perf_counter() - began
        if result.returncode != 0:
            raise RuntimeError(f"{self.name}: deploy failed:\n{result.stdout[-3000:]}{result.stderr}")
        events = [json.loads(line) for line in result.stdout.splitlines()]
        took = max(event["duration"] for event in events
                   if event["type"] == "phase-finished" and event["phase"].endswith("build"))
        return took, whole, [received(server) - was for server, was in zip(self.servers, before, strict=True)]

    def change(self) -> None:
        code = self.path / "api" / "app" / "server.py"
        code.write_text(code.read_text() + f"# {uuid.uuid4().hex}\n")

    def remove(self) -> None:
        for server in self.servers:  # and its images there: the next way starts from none of its layers
            server.ssh("sh", "-c", f"docker ps -aq --filter label=com.docker.compose.project={self.name} | "
                       f"xargs -r docker rm -f; rm -rf /var/lib/surefoot/{self.name}; docker image ls --format "
                       "'{{.Repository}}:{{.Tag}}' | grep -e sfb-l- -e surefoot.local/layers | xargs -r docker rmi -f",
                       check=False, timeout=120)
        images = subprocess.run(["docker", "image", "ls", "-q", "--filter", f"reference={self.name}-*"],
                                capture_output=True, text=True).stdout.split()
        if images:
            subprocess.run(["docker", "image", "rm", "-f", *images], capture_output=True)


WAYS = ("images", "layers", "registry")


def _median(runs: list[tuple[float, float, int]], index: int) -> float:
    return statistics.median(run[index] for run in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description="layers against whole images and a registry, to 1 and 3 servers")
    parser.add_argument("--rounds", type=int, default=2)
    rounds = parser.parse_args().rounds
    folder = Path(tempfile.mkdtemp(prefix="sfb-layers-"))
    pool = ServerPool(folder / "servers")
    updates: dict[tuple[str, int], list[tuple[float, float, int]]] = {}  # (shipped in, deploy, received)
    firsts: dict[tuple[str, int], tuple[float, float, int]] = {}
    try:
        servers = pool.start(3)
        for ship in WAYS:
            for count in (1, 3):
                with contextlib.ExitStack() as stack:
                    registry = None
                    if ship == "registry":  # Kamal 2.8's way: here, reached through a reverse SSH forward
                        where = folder / f"registry-{count}"
                        where.mkdir()
                        registry = stack.enter_context(loopback_registry(servers[:count], where, free_port()))
                    project = Project(folder, servers[:count], ship, f"{registry}/sfb" if registry else None)
                    stack.callback(project.remove)
                    took, whole, got = project.deploy()  # the first: the servers have none of it
                    firsts[(ship, count)] = took, whole, max(got)
                    for _ in range(rounds):
                        project.change()
                        took, whole, got = project.deploy()
                        updates.setdefault((ship, count), []).append((took, whole, max(got)))
                        print(f"  {ship:<8} to {count} server(s): shipped in {took:6.2f} s (deploy {whole:6.2f} s), "
                              f"each received up to {max(got) / 1e6:7.2f} MB", flush=True)
    finally:
        pool.teardown()
        shutil.rmtree(folder, ignore_errors=True)

    def order(key: tuple[str, int]) -> tuple[int, int]:
        return key[1], WAYS.index(key[0])

    print(f"\nthe example's API after a one-line change, medians of {rounds}")
    for key in sorted(updates, key=order):
        ship, count = key
        took, whole, got = (_median(updates[key], i) for i in range(3))
        base = updates[("images", count)]
        ratio = "baseline" if ship == "images" else \
            f"time {took / _median(base, 0):.2f}x, bytes {got / _median(base, 2):.4f}x"
        print(f"  {ship:<8} to {count} server(s)   shipped in {took:6.2f} s   deploy {whole:6.2f} s   "
              f"received {got / 1e6:8.2f} MB each   {ratio}")
    print("\nthe first deploy (the servers have none of the image)")
    for key in sorted(firsts, key=order):
        took, whole, got = firsts[key]
        print(f"  {key[0]:<8} to {key[1]} server(s)   shipped in {took:6.2f} s   deploy {whole:6.2f} s   "
              f"received {got / 1e6:8.2f} MB each")
    print("\nthe update's deployment to 3 servers against 1 (goal: at most 1.5x)")
    for ship in WAYS:
        one, three = _median(updates[(ship, 1)], 1), _median(updates[(ship, 3)], 1)
        print(f"  {ship:<8}: {three / one:.2f}x ({three:.2f} s against {one:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
