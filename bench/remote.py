"""The example's update to one test server over SSH: surefoot against the same compose commands
run by hand with DOCKER_HOST=ssh://, in one run.

    .venv/bin/python bench/remote.py [--rounds 3]     # a few minutes (the first builds on the server)

Both sides deploy their own copy of the example (bundled in examples/shop) to the same test
server (tests/servers.py): surefoot with ``[targets.bench]`` (compose runs on the server, the
health gate through the connection); by hand with the docker CLI's ``DOCKER_HOST=ssh://``:
``compose build``, the migration (``compose run --rm api python3 /app/migrate.py``) and
``compose up -d --wait``, which is what an operator types for the same update (without
surefoot's checks, release record, gate or rollback). Each round changes one file of the API
on both sides, so both rebuild the API image (cached layers otherwise) and recreate it.
Prints the medians, their ratio, and an SSH round trip through the shared connection.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

from servers import Server, ServerPool  # noqa: E402
from surefoot.config.address import parse_target  # noqa: E402
from surefoot.hosts.ssh.connection import SshConnection  # noqa: E402

BASE = "debian:bookworm-slim"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def copy_example(folder: Path, name: str, port: int) -> Path:
    project = folder / name
    shutil.copytree(ROOT / "examples" / "shop", project, ignore=shutil.ignore_patterns(".surefoot"))
    config = (project / "surefoot.toml").read_text()
    config = config.replace('name = "shop"', f'name = "{name}"').replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    (project / "surefoot.toml").write_text(config)
    env = (project / ".env.production").read_text().replace("HTTP_PORT=8080", f"HTTP_PORT={port}")
    (project / ".env.production").write_text(env)
    return project


def touch_api(project: Path, round_: int) -> None:
    (project / "api" / "app" / "bench_marker.txt").write_text(f"round {round_} {uuid.uuid4().hex}\n")


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 1800) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return took


def ssh_shim(folder: Path, config: Path) -> dict[str, str]:
    """An environment whose `ssh` reads the test servers' config (the docker CLI runs plain `ssh`)."""
    shim = folder / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "ssh").write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F "{config}" "$@"\n')
    (shim / "ssh").chmod(0o755)
    return {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sft-bench-remote-"))
    pool = ServerPool(folder / "servers")
    surefoot = [sys.executable, "-m", "surefoot"]
    try:
        server: Server = pool.server(0)
        server.load_image(BASE)
        mine = copy_example(folder, f"sft-bench-s-{uuid.uuid4().hex[:6]}", free_port())
        with (mine / "surefoot.toml").open("a") as config:
            config.write(f'\n[targets.bench]\nhost = "{server.alias}"\nssh_config = "{pool.ssh_config}"\n')
        theirs = copy_example(folder, f"sft-bench-h-{uuid.uuid4().hex[:6]}", free_port())
        by_hand_env = {**ssh_shim(folder, pool.ssh_config), "DOCKER_HOST": f"ssh://{server.alias}"}
        compose = ["docker", "compose", "-p", theirs.name, "-f", "compose.yaml", "-f", "compose.production.yaml",
                   "--env-file", ".env.production"]
        env = dict(os.environ)

        print("first deployments (untimed; the images build on the server) ...", flush=True)
        run([*surefoot, "-C", str(mine), "deploy", "--non-interactive"], env)
        run([*compose, "build"], by_hand_env, cwd=theirs)
        run([*compose, "up", "-d", "--wait", "db", "cache"], by_hand_env, cwd=theirs)
        run([*compose, "run", "--rm", "api", "python3", "/app/migrate.py"], by_hand_env, cwd=theirs)
        run([*compose, "up", "-d", "--wait"], by_hand_env, cwd=theirs)

        times: dict[str, list[float]] = {"surefoot": [], "by hand": []}
        for round_ in range(args.rounds):
            touch_api(mine, round_)
            times["surefoot"].append(run([*surefoot, "-C", str(mine), "deploy", "--non-interactive"], env))
            touch_api(theirs, round_)
            took = run([*compose, "build"], by_hand_env, cwd=theirs)
            took += run([*compose, "run", "--rm", "api", "python3", "/app/migrate.py"], by_hand_env, cwd=theirs)
            took += run([*compose, "up", "-d", "--wait"], by_hand_env, cwd=theirs)
            times["by hand"].append(took)
            print(f"round {round_ + 1}: surefoot {times['surefoot'][-1]:.1f} s, by hand {took:.1f} s", flush=True)

        with SshConnection(parse_target(server.alias, ssh_config=pool.ssh_config)) as conn:
            trips = []
            for _ in range(20):
                started = time.monotonic()
                conn.run(["true"], check=True)
                trips.append(time.monotonic() - started)
        ours, hand = statistics.median(times["surefoot"]), statistics.median(times["by hand"])
        print(f"\nexample update to one server, medians of {args.rounds}: surefoot {ours:.1f} s, "
              f"compose by hand over DOCKER_HOST=ssh:// {hand:.1f} s: ratio {ours / hand:.2f}x")
        print(f"ssh round trip through the shared connection: {statistics.median(trips) * 1000:.0f} ms")
    finally:
        pool.teardown()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
