"""A rollout to three servers against three deployments to one server each, in one run.

    .venv/bin/python bench/fleet.py [--rounds 3]      # a few minutes

Three test servers (tests/servers.py); the stack of tests/test_fleet.py (a database, a web
service built on each server, a health gate through the connection). Each round changes the
env (a new GREETING) and then times:

- ``surefoot deploy`` with the three targets declared (``batch = 1``: what changes nothing
  running happens on all three side by side, then one target at a time behind its gate);
- ``surefoot --target webN deploy`` three times in a row, the same update one server at a time.

Prints the medians and their ratio (the parallel work should make the rollout well under 3x
one target, i.e. well under 1.0 against the three in a row).
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

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

from test_fleet import COMPOSE, CONFIG  # noqa: E402

from servers import ServerPool  # noqa: E402

BUSYBOX = "surefoot-test/busybox:1"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(argv: list[str]) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1200)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sft-bench-fleet-"))
    pool = ServerPool(folder / "servers")
    surefoot = [sys.executable, "-m", "surefoot"]
    names = []
    try:
        if subprocess.run(["docker", "image", "inspect", BUSYBOX], capture_output=True).returncode != 0:
            raise SystemExit(f"{BUSYBOX} is missing: run the tests once (tests/conftest.py builds it)")
        servers = pool.start(3)
        for server in servers:
            server.load_image(BUSYBOX)
            server.ssh("mkdir", "-p", "/srv/flag")
        projects = {}
        for label in ("rollout", "one-by-one"):
            name = f"sft-bf-{uuid.uuid4().hex[:6]}"
            names.append(name)
            project = folder / name
            project.mkdir()
            port = free_port()
            (project / "compose.yaml").write_text(COMPOSE.format(port=port))
            config = CONFIG.format(name=name, port=port, on_failure="rollback")
            for index, server in enumerate(servers):
                config += f'\n[targets.web{index + 1}]\nhost = "{server.alias}"\nssh_config = "{server.ssh_config}"\n'
            (project / "surefoot.toml").write_text(config)
            (project / ".env").write_text("GREETING=v1\n")
            (project / "web").mkdir()
            (project / "web" / "Dockerfile").write_text(f"FROM {BUSYBOX}\nRUN echo {name} > /built\n")
            projects[label] = project
        print("first deployments (untimed) ...", flush=True)
        timed([*surefoot, "-C", str(projects["rollout"]), "deploy"])
        for index in range(3):
            timed([*surefoot, "-C", str(projects["one-by-one"]), "--target", f"web{index + 1}", "deploy"])

        times: dict[str, list[float]] = {"rollout": [], "one-by-one": []}
        for round_ in range(args.rounds):
            for project in projects.values():
                (project / ".env").write_text(f"GREETING=round{round_}\n")
            times["rollout"].append(timed([*surefoot, "-C", str(projects["rollout"]), "deploy"]))
            times["one-by-one"].append(sum(
                timed([*surefoot, "-C", str(projects["one-by-one"]), "--target", f"web{i + 1}", "deploy"])
                for i in range(3)))
            print(f"round {round_ + 1}: rollout {times['rollout'][-1]:.1f} s, "
                  f"three in a row {times['one-by-one'][-1]:.1f} s", flush=True)
        rollout, one_by_one = statistics.median(times["rollout"]), statistics.median(times["one-by-one"])
        print(f"\nupdate to 3 servers, medians of {args.rounds}: rollout {rollout:.1f} s, three single-target "
              f"deploys in a row {one_by_one:.1f} s (one target {one_by_one / 3:.1f} s): "
              f"ratio {rollout / one_by_one:.2f}x of three, {rollout / (one_by_one / 3):.2f}x of one")
    finally:
        pool.teardown()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
