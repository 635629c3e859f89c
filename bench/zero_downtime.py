"""Zero-downtime updates, measured: an update of an API behind a proxy, with a client loop through
the proxy (about 50 requests a second, at most 2,000, to 127.0.0.1), surefoot with and without
``phases.services-start.zero_downtime``, alternating, in one run.

    .venv/bin/python bench/zero_downtime.py [--rounds 3] [--proxy plain|nginx]

``plain`` (the default): a proxy of a few lines of Python that resolves the service through
Docker's DNS on every request and never retries, before an app that exits at once on SIGTERM
and listens 2 s after it starts (tests/zdt_stack.py: PLAIN_COMPOSE). ``nginx``: the example's
nginx, which retries a failed upstream, before an API that ignores SIGTERM.

For each: failed requests, the longest gap between two successful answers, and the update's
duration (the ``deploy`` command), as medians with ratios against the update in place (the
baseline: surefoot without the option).
"""

from __future__ import annotations

import argparse
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
    PROXY,
    ZDT_COMPOSE,
    ZDT_CONFIG,
    ZERO_DOWNTIME,
    Traffic,
    ensure_nginx_image,
    ensure_python_image,
    nginx_conf,
)

SUREFOOT = [sys.executable, "-m", "surefoot"]
BUSYBOX_IMAGE = "surefoot-test/busybox:1"  # as tests/conftest.py builds it


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def busybox_image() -> str:
    if subprocess.run(["docker", "image", "inspect", BUSYBOX_IMAGE], capture_output=True).returncode == 0:
        return BUSYBOX_IMAGE
    with tempfile.TemporaryDirectory() as context:
        shutil.copy("/bin/busybox", Path(context) / "busybox")
        (Path(context) / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox","sh","-c","/bin/busybox --install -s /bin && mkdir -p /tmp && chmod 1777 /tmp"]\n'
        )
        subprocess.run(["docker", "build", "-q", "-t", BUSYBOX_IMAGE, context], check=True, capture_output=True)
    return BUSYBOX_IMAGE


class Stack:
    def __init__(self, folder: Path, zero_downtime: bool, proxy: str):
        self.name = f"sfb-zdt-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.path = folder / self.name
        self.path.mkdir()
        if proxy == "plain":
            compose = PLAIN_COMPOSE.format(python=ensure_python_image(), port=self.port)
            (self.path / "app.py").write_text(APP)
            (self.path / "proxy.py").write_text(PROXY)
        else:
            compose = ZDT_COMPOSE.format(image=busybox_image(), nginx=ensure_nginx_image(), port=self.port)
            (self.path / "nginx.conf").write_text(nginx_conf())
        (self.path / "compose.yaml").write_text(compose)
        (self.path / "surefoot.toml").write_text(
            ZDT_CONFIG.format(name=self.name, port=self.port) + (ZERO_DOWNTIME if zero_downtime else ""))
        self.version = 1
        self.deploy()

    def deploy(self) -> float:
        (self.path / ".env").write_text(f"VERSION={self.version}\n")
        began = time.perf_counter()
        result = subprocess.run([*SUREFOOT, "-C", str(self.path), "deploy"], capture_output=True, text=True,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"{self.name}: deploy failed: {result.stdout[-3000:]}{result.stderr}")
        return time.perf_counter() - began

    def update(self) -> tuple[int, float, float]:
        """(failed requests, longest gap, the update's duration) of one update under traffic."""
        self.version += 1
        traffic = Traffic(self.port).start()
        time.sleep(1)
        try:
            duration = self.deploy()
            time.sleep(1)
        finally:
            traffic.stop()
        if traffic.exhausted:
            raise RuntimeError("the client loop ended before the update")
        return traffic.failed, traffic.longest_gap, duration

    def down(self) -> None:
        subprocess.run(["docker", "compose", "-p", self.name, "down", "-v", "-t", "1"], capture_output=True)
        tags = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                               f"surefoot.local/{self.name}/*"], capture_output=True, text=True).stdout.split()
        if tags:
            subprocess.run(["docker", "image", "rm", "-f", *tags], capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="zero-downtime updates: failed requests, gap, duration")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--proxy", choices=("plain", "nginx"), default="plain")
    arguments = parser.parse_args()
    rounds, proxy = arguments.rounds, arguments.proxy
    contenders = {"surefoot, update in place": False, "surefoot, zero_downtime": True}
    samples: dict[str, list[tuple[int, float, float]]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory(prefix="sfb-zdt-") as folder:
        stacks = {name: Stack(Path(folder), on, proxy) for name, on in contenders.items()}
        try:
            for _ in range(rounds):
                for name, stack in stacks.items():  # alternating
                    samples[name].append(stack.update())
                    print(f"  {name:<28} failed {samples[name][-1][0]:>4}, longest gap "
                          f"{samples[name][-1][1]:6.2f} s, update {samples[name][-1][2]:6.2f} s", flush=True)
        finally:
            for stack in stacks.values():
                stack.down()
    base = "surefoot, update in place"
    through = "a proxy that never retries" if proxy == "plain" else "nginx"
    print(f"\nmedians of {rounds} updates each (client: ~50 requests/s through {through})")
    print(f"  {'contender':<28} {'failed':>8} {'longest gap':>14} {'update':>16}")
    medians = {name: tuple(statistics.median(s[i] for s in values) for i in range(3))
               for name, values in samples.items()}
    b_failed, b_gap, b_duration = medians[base]
    for name, (failed, gap, duration) in medians.items():
        ratio = "baseline" if name == base else (
            f"gap {gap / b_gap:.2f}x, duration {duration / b_duration:.2f}x, failed "
            + (f"{failed / b_failed:.2f}x" if b_failed else "n/a"))
        print(f"  {name:<28} {failed:>8g} {gap:>12.2f} s {duration:>14.2f} s  {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
