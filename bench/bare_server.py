"""From a bare server to a verified deployment of the example: wall time, and how much of it is
apt, as root and as a user with passwordless sudo.

    .venv/bin/python bench/bare_server.py        # about two minutes

Each run takes a new bare test server (tests/servers.py: Debian 12 with sshd, python3 and sudo,
no Docker) and runs `surefoot deploy` of the bundled example with ``build = "control"`` (no
registry answers the servers here): Docker and compose v2 are installed there, the images built
here and shipped, the gate passed. The apt share is read off the prerequisites log (each
``$ ... apt-get`` line to the next command). The servers share one apt archive (the second run
downloads no package again): its figure is the one a server near its mirror sees.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

from servers import Server, ServerPool  # noqa: E402

STAMP = re.compile(r"^(\S+Z) (.*)$")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def apt_seconds(log: Path) -> float:
    """Seconds from each ``$ [sudo -n] apt-get`` (or dpkg) command to the next command."""
    lines = [(datetime.fromisoformat(m.group(1).replace("Z", "+00:00")), m.group(2))
             for m in map(STAMP.match, log.read_text().splitlines()) if m]
    total, started = 0.0, None
    for when, text in lines:
        is_command = text.startswith("$ ") or text.endswith(": installing") or text.startswith("completed")
        if started is not None and is_command:
            total += (when - started).total_seconds()
            started = None
        if text.startswith("$ ") and re.search(r"\b(apt-get|dpkg)\b", text):
            started = when
    return total


def deploy(server: Server, user: str, folder: Path) -> tuple[float, float, float]:
    name = f"bench-bare-{uuid.uuid4().hex[:6]}"
    project = folder / name
    shutil.copytree(ROOT / "examples" / "shop", project, ignore=shutil.ignore_patterns(".surefoot"))
    port = free_port()
    config = (project / "surefoot.toml").read_text().replace('name = "shop"', f'name = "{name}"')
    config = config.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    config += (f'\n[targets.web]\nhost = "ssh://{user}@{server.alias}"\nssh_config = "{server.ssh_config}"\n'
               'build = "control"\n')
    (project / "surefoot.toml").write_text(config)
    env = (project / ".env.production").read_text().replace("HTTP_PORT=8080", f"HTTP_PORT={port}")
    (project / ".env.production").write_text(env)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "surefoot", "-C", str(project), "deploy", "--non-interactive"],
                            capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"deploy as {user} failed:\n{result.stdout[-3000:]}{result.stderr}")
    logs = project / ".surefoot" / "targets" / "web" / "logs" / "deployment-1"
    prerequisites = next(logs.glob("*prerequisites.log"))
    lines = prerequisites.read_text().splitlines()
    first = datetime.fromisoformat(lines[0].split()[0].replace("Z", "+00:00"))
    last = datetime.fromisoformat(lines[-1].split()[0].replace("Z", "+00:00"))
    images = subprocess.run(["docker", "image", "ls", "-q", "--filter", f"reference={name}-*"],
                            capture_output=True, text=True).stdout.split()
    if images:
        subprocess.run(["docker", "image", "rm", "-f", *images], capture_output=True)
    return wall, (last - first).total_seconds(), apt_seconds(prerequisites)


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-bare-"))
    pool = ServerPool(folder / "servers")
    try:
        rows = []
        for index, user in ((0, "root"), (1, "deploy")):
            server = pool.bare(index)
            wall, prerequisites, apt = deploy(server, user, folder)
            rows.append((user, wall, prerequisites, apt))
        print("bare Debian 12 server -> the example verified (build = control), one run each")
        print(f"{'user':<8} {'wall':>8} {'prerequisites':>14} {'apt':>8}")
        for user, wall, prerequisites, apt in rows:
            print(f"{user:<8} {wall:>7.1f}s {prerequisites:>13.1f}s {apt:>7.1f}s")
    finally:
        pool.teardown(bare=True)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
