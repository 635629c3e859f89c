"""Images that travel as layers, measured (issue 28): the example's API (a ~340 MB image, built
here) updated after a one-line code change, shipped as layers (``ship = "layers"``), as whole
images (``ship = "images"``: docker save | docker load) and through a registry on this machine
that the servers reach by a reverse SSH forward (``build = "registry"``: Kamal 2.8's way), to
one test server and to three, in one run. For each: the bytes the servers received (their
network interfaces' counters) and the update's time (``surefoot deploy``); and the update to
three servers against one.

    .venv/bin/python bench/layers.py [--rounds 2]

Test servers: containers on this machine's engine with their own dockerd and sshd
(tests/servers.py), so the "network" is this machine's memory: the bytes are what a real
uplink would carry, the times are what this machine gives.
"""

from __future__ import annotations

import argparse
import contextlib
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
COMPOSE = 'services:\n  api:\n    build: ./api\n    command: ["python3", "-m", "http.server", "8000"]\n'


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

    def deploy(self) -> tuple[float, list[int]]:
        before = [received(server) for server in self.servers]
        began = time.perf_counter()
        result = subprocess.run([*SUREFOOT, "-C", str(self.path), "deploy", "--non-interactive"], capture_output=True,
                                text=True, stdin=subprocess.DEVNULL)
        took = time.perf_counter() - began
        if result.returncode != 0:
            raise RuntimeError(f"{self.name}: deploy failed:\n{result.stdout[-3000:]}{result.stderr}")
        return took, [received(server) - was for server, was in zip(self.servers, before, strict=True)]

    def change(self) -> None:
        code = self.path / "api" / "app" / "server.py"
        code.write_text(code.read_text() + f"# {uuid.uuid4().hex}\n")

    def remove(self) -> None:
        for server in self.servers:
            server.ssh("sh", "-c", f"docker ps -aq --filter label=com.docker.compose.project={self.name} | "
                       f"xargs -r docker rm -f; rm -rf /var/lib/surefoot/{self.name}", check=False, timeout=120)
        images = subprocess.run(["docker", "image", "ls", "-q", "--filter", f"reference={self.name}-*"],
                                capture_output=True, text=True).stdout.split()
        if images:
            subprocess.run(["docker", "image", "rm", "-f", *images], capture_output=True)


WAYS = ("images", "layers", "registry")


def main() -> int:
    parser = argparse.ArgumentParser(description="layers against whole images and a registry, to 1 and 3 servers")
    parser.add_argument("--rounds", type=int, default=2)
    rounds = parser.parse_args().rounds
    folder = Path(tempfile.mkdtemp(prefix="sfb-layers-"))
    pool = ServerPool(folder / "servers")
    results: dict[tuple[str, int], list[tuple[float, int]]] = {}
    firsts: dict[tuple[str, int], tuple[float, int]] = {}
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
                    took, got_each = project.deploy()  # the first: everything, each server lacks it all
                    firsts[(ship, count)] = took, max(got_each)
                    for _ in range(rounds):
                        project.change()
                        took, got_each = project.deploy()
                        results.setdefault((ship, count), []).append((took, max(got_each)))
                        print(f"  {ship:<8} to {count} server(s): {took:6.2f} s, each received up to "
                              f"{max(got_each) / 1e6:7.2f} MB", flush=True)
    finally:
        pool.teardown()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\nthe example's API after a one-line change, medians of {rounds}")
    medians = {key: (statistics.median(t for t, _ in values), statistics.median(b for _, b in values))
               for key, values in results.items()}
    for (ship, count), (took, got) in sorted(medians.items(), key=lambda item: (item[0][1], WAYS.index(item[0][0]))):
        base_took, base_got = medians[("images", count)]
        ratio = "baseline" if ship == "images" else f"time {took / base_took:.2f}x, bytes {got / base_got:.4f}x"
        print(f"  {ship:<8} to {count} server(s)   update {took:6.2f} s   received {got / 1e6:8.2f} MB each   {ratio}")
    print("\nthe first deploy (the servers have none of the image)")
    for (ship, count), (took, got) in sorted(firsts.items(), key=lambda item: (item[0][1], WAYS.index(item[0][0]))):
        print(f"  {ship:<8} to {count} server(s)   deploy {took:6.2f} s   received {got / 1e6:8.2f} MB each")
    print()
    for ship in WAYS:
        one, three = medians[(ship, 1)][0], medians[(ship, 3)][0]
        print(f"  {ship:<8}: 3 servers take {three / one:.2f}x the time of one ({three:.2f} s against {one:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
