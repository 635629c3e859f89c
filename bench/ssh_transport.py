"""Measures the SSH transport and the test servers, in one run:

    .venv/bin/python bench/ssh_transport.py        # about a minute (plus the image build when missing)

- the test-server image build (only when it is missing), one server started until SSH
  answers and `docker info` works inside, then three at once;
- an SSH round trip (`true`): a new connection each time against the shared master;
- `docker version` on the server: DOCKER_HOST=ssh:// (the CLI's own ssh) against the socket
  forwarded over the master (DOCKER_HOST=unix://...);
- a 20-service `docker compose up -d` through the forwarded socket, and the same with
  DOCKER_HOST=ssh:// (sshd's default MaxStartups 10:30:100 drops connections past 10).

Medians of a few runs; the servers and their volumes are removed at the end.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

from servers import ServerPool, ensure_image  # noqa: E402
from surefoot.config.address import parse_target  # noqa: E402
from surefoot.hosts.ssh.connection import SshConnection  # noqa: E402

BUSYBOX = "surefoot-test/busybox:1"


def timed(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.monotonic()
        action()
        times.append(time.monotonic() - started)
    return statistics.median(times)


def ssh_shim(folder: Path, config: Path) -> dict[str, str]:
    """An environment whose `ssh` reads the test servers' config: the docker CLI runs plain
    `ssh` for DOCKER_HOST=ssh:// and has no option to pass -F."""
    shim = folder / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "ssh").write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F "{config}" "$@"\n')
    (shim / "ssh").chmod(0o755)
    return {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}


def compose_up(env: dict[str, str], cleanup: dict[str, str], folder: Path) -> tuple[float, int, str]:
    compose = folder / "compose.yaml"
    compose.write_text("services:\n" + "".join(
        f"  s{i}:\n    image: {BUSYBOX}\n    command: [\"sleep\", \"3600\"]\n    stop_signal: SIGKILL\n"
        for i in range(20)))
    name = f"sft-bench-{uuid.uuid4().hex[:8]}"
    argv = ["docker", "compose", "-p", name, "-f", str(compose)]
    started = time.monotonic()
    up = subprocess.run([*argv, "up", "-d"], env=env, capture_output=True, text=True, timeout=600)
    took = time.monotonic() - started
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={name}"],
                         env=cleanup, capture_output=True, text=True, check=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], env=cleanup, capture_output=True, check=True, timeout=300)
    last = up.stderr.strip().splitlines()[-1] if up.returncode and up.stderr.strip() else ""
    return took, up.returncode, last


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="sft-bench-ssh-"))
    started = time.monotonic()
    _, built = ensure_image(folder)
    checked = time.monotonic() - started
    print(f"server image: built in {built:.1f} s" if built
          else f"server image: present (reused, {checked:.1f} s to check)")
    pool = ServerPool(folder / "one")
    others = ServerPool(folder / "three")
    try:
        began = time.monotonic()
        server = pool.server(0)
        print(f"one server until SSH + docker info: {time.monotonic() - began:.2f} s")
        began = time.monotonic()
        others.start(3)
        print(f"three servers at once until SSH + docker info: {time.monotonic() - began:.2f} s")
        others.teardown()

        server.load_image(BUSYBOX)
        target = parse_target(server.alias, ssh_config=pool.ssh_config)
        plain = timed(lambda: server.ssh("true"), 10)
        began = time.monotonic()
        with SshConnection(target) as conn:
            opened = time.monotonic() - began
            shared = timed(lambda: conn.run(["true"], check=True), 10)
            print(f"ssh round trip (true): new connection {plain * 1000:.0f} ms, "
                  f"shared master {shared * 1000:.0f} ms (opening the master {opened * 1000:.0f} ms)")
            forwarded = conn.docker_env()
            via_ssh = {**ssh_shim(folder, pool.ssh_config), "DOCKER_HOST": f"ssh://{server.alias}"}
            version = ["docker", "version", "--format", "{{.Server.Version}}"]
            over_ssh = timed(lambda: subprocess.run(version, env=via_ssh, check=True, capture_output=True), 5)
            over_socket = timed(lambda: subprocess.run(version, env=forwarded, check=True, capture_output=True), 5)
            print(f"docker version on the server: DOCKER_HOST=ssh:// {over_ssh * 1000:.0f} ms, "
                  f"forwarded socket {over_socket * 1000:.0f} ms")
            for label, env in (("forwarded socket", forwarded), ("DOCKER_HOST=ssh://", via_ssh)):
                for attempt in range(3):
                    took, code, last = compose_up(env, forwarded, folder)
                    outcome = "ok" if code == 0 else f"FAILED ({last})"
                    print(f"20-service compose up -d, {label}, run {attempt + 1}: {took:.1f} s, {outcome}")
    finally:
        pool.teardown()
        others.teardown()


if __name__ == "__main__":
    main()
