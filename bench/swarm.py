"""A rolling update of a 3-replica API on a 3-node swarm: surefoot against `docker stack deploy
--detach=false` alone, in one run.

    .venv/bin/python bench/swarm.py [--rounds 3]      # about six minutes

Three test servers (tests/servers.py) made one swarm (server-0 the manager, as tests/test_swarm.py
does). The stack: one service ``api`` (busybox httpd, 3 replicas, a 1s healthcheck, stop_signal
SIGKILL, ``update_config.parallelism: 1``, the swarm's default update monitor of 5s). Each round
changes GREETING, so each side does one real rolling update of its own 3 tasks, in turn (the
order rotates from round to round):

- ``surefoot deploy`` with ``[targets.cluster] engine = "swarm"``, no probe (the swarm gate alone,
  health-wait's default monitor of 5s);
- the same with ``[phases.health-wait] monitor = "0s"`` (another project, another stack);
- this machine's docker CLI, ``docker stack deploy --detach=false --resolve-image never`` through
  the manager's socket forwarded over ssh, of surefoot's own rendered stack file with the new
  GREETING (another stack): it returns once the CLI sees the update converged.

Each side's wall time splits at the swarm's UpdateStatus.StartedAt and CompletedAt of its service
(the servers share this machine's clock): "before" (until the swarm starts the update), "swarm"
(the update itself) and "after" (the update complete -> the command's exit); for surefoot also
the update complete -> its health-wait phase finished, and its deployment finished -> its exit.
Prints the rounds, the medians and the ratios to the CLI, and appends them to
bench/results-swarm.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

from servers import Server, ServerPool, make_swarm  # noqa: E402

BUSYBOX = "surefoot-test/busybox:1"
RESULTS = ROOT / "bench" / "results-swarm.txt"
SUREFOOT = [sys.executable, "-m", "surefoot"]

COMPOSE = """\
services:
  api:
    image: surefoot-test/busybox:1
    stop_signal: SIGKILL
    environment:
      GREETING: ${GREETING}
    command:
      - sh
      - -c
      - 'mkdir -p /srv && echo "$$GREETING" > /srv/index.html && exec httpd -f -p 8000 -h /srv'
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8000/"]
      interval: 1s
    deploy:
      replicas: 3
      endpoint_mode: dnsrr
      update_config: {parallelism: 1}
"""

CONFIG = """\
[project]
name = "{name}"
env_file = ".env"

[phases.pull-images]
enabled = false
{extra}
[targets.cluster]
host = "{manager}"
ssh_config = "{ssh_config}"
engine = "swarm"
nodes = [{nodes}]
"""


def utc(stamp: str) -> float:
    """An RFC 3339 time (the engine's nanoseconds, or surefoot's milliseconds) as a Unix time."""
    stamp = stamp.replace("Z", "+00:00")
    head, _, rest = stamp.partition(".")
    if rest:
        digits = "".join(c for c in rest if c.isdigit())
        stamp = f"{head}.{(digits + '000000')[:6]}{rest[len(digits):]}"
    return datetime.fromisoformat(stamp).timestamp()


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:8])} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-2000:]}")
    return done


def forward_socket(pool: ServerPool, manager: Server, sock: Path) -> subprocess.Popen[bytes]:
    """The manager's docker socket on ``sock`` (ssh -L), for this machine's docker CLI."""
    tunnel = subprocess.Popen(["ssh", "-F", str(pool.ssh_config), "-N", "-o", "ExitOnForwardFailure=yes",
                               "-o", "StreamLocalBindUnlink=yes", "-L", f"{sock}:/var/run/docker.sock",
                               manager.alias], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sock.exists() and subprocess.run(["docker", "-H", f"unix://{sock}", "version"],
                                            capture_output=True).returncode == 0:
            return tunnel
        if tunnel.poll() is not None:
            raise SystemExit(f"ssh -L exited ({tunnel.returncode})")
        time.sleep(0.2)
    tunnel.terminate()
    raise SystemExit("the forwarded docker socket never answered")


def update_status(manager: Server, service: str) -> dict[str, Any]:
    found = manager.ssh("docker", "service", "inspect", service, "--format", "{{json .UpdateStatus}}")
    return dict(json.loads(found.stdout) or {})


def surefoot_facts(project: Path) -> tuple[float, float, str]:
    """When the last deployment's health-wait finished, when the deployment finished, and each
    phase's seconds (one line), from ``status --json``."""
    status = json.loads(run([*SUREFOOT, "-C", str(project), "status", "--json"]).stdout)
    if status["state"] != "completed":
        raise SystemExit(f"{project.name}: deployment {status['state']}")
    parts, gate_end = [], None
    for phase in status["phases"]:
        if phase["started_at"] and phase["finished_at"]:
            took = utc(phase["finished_at"]) - utc(phase["started_at"])
            if took >= 0.05:
                parts.append(f"{phase['name']} {took:.1f}")
            if phase["name"] == "health-wait":
                gate_end = utc(phase["finished_at"])
    if gate_end is None:
        raise SystemExit(f"{project.name}: no health-wait in {status['phases']}")
    deployment = status["deployment"]
    finished = utc(deployment["finished_at"])
    return gate_end, finished, f"{', '.join(parts)}; the deployment {finished - utc(deployment['started_at']):.1f}"


class Side:
    """One way of doing the update. ``rows``: per round, total, before, swarm and after (seconds);
    with ``facts`` (surefoot), gate (update complete -> health-wait finished) and closing (the
    deployment finished -> the process's exit)."""

    def __init__(self, label: str, service: str, deploy: Callable[[int], None],
                 facts: Callable[[], tuple[float, float, str]] | None = None):
        self.label = label
        self.service = service
        self.deploy = deploy
        self.facts = facts
        self.rows: list[dict[str, float]] = []
        self.phases: list[str] = []

    def round(self, manager: Server, round_: int) -> dict[str, float]:
        started = time.time()
        self.deploy(round_)
        ended = time.time()
        status = update_status(manager, self.service)
        if status.get("State") != "completed" or not status.get("CompletedAt"):
            raise SystemExit(f"{self.label}: the update of {self.service} is not completed: {status}")
        update_start, update_end = utc(status["StartedAt"]), utc(status["CompletedAt"])
        row = {"total": ended - started, "before": update_start - started, "swarm": update_end - update_start,
               "after": ended - update_end}
        if self.facts is not None:
            gate_end, finished, phases = self.facts()
            row["gate"] = gate_end - update_end
            row["closing"] = ended - finished
            self.phases.append(phases)
        self.rows.append(row)
        return row

    def median(self, key: str) -> float:
        return statistics.median(row[key] for row in self.rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", default=str(RESULTS), help="where the summary is appended")
    args = parser.parse_args()
    if subprocess.run(["docker", "image", "inspect", BUSYBOX], capture_output=True).returncode != 0:
        raise SystemExit(f"{BUSYBOX} is missing: run the tests once (tests/conftest.py builds it)")
    if "--detach" not in run(["docker", "stack", "deploy", "--help"]).stdout:
        raise SystemExit("this docker CLI's stack deploy has no --detach: use docker service update --detach=false")
    folder = Path(tempfile.mkdtemp(prefix="sft-bench-swarm-"))
    pool = ServerPool(folder / "servers")
    tunnel: subprocess.Popen[bytes] | None = None
    out: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        out.append(line)

    try:
        started = time.monotonic()
        servers = pool.start(3)
        for server in servers:
            server.load_image(BUSYBOX)
        make_swarm(servers)
        manager = servers[0]
        engine = manager.ssh("docker", "version", "--format", "{{.Server.Version}}").stdout.strip()
        cli = run(["docker", "version", "--format", "{{.Client.Version}}"]).stdout.strip()
        say(f"swarm of 3 test servers ready in {time.monotonic() - started:.0f} s (engine {engine}, CLI {cli})")

        tag = uuid.uuid4().hex[:6]
        nodes = ", ".join(f'"{s.alias}"' for s in servers[1:])
        projects: dict[str, Path] = {}
        for label, suffix, extra in (("surefoot", "", ""),
                                     ("surefoot monitor=0s", "-m0", '\n[phases.health-wait]\nmonitor = "0s"\n')):
            project = folder / f"sft-bsw-{tag}{suffix}"
            project.mkdir()
            (project / "compose.yaml").write_text(COMPOSE)
            (project / ".env").write_text("GREETING=v0\n")
            (project / "surefoot.toml").write_text(CONFIG.format(
                name=project.name, extra=extra, manager=manager.alias, ssh_config=pool.ssh_config, nodes=nodes))
            projects[label] = project
        print("first deployments (untimed) ...", flush=True)
        for project in projects.values():
            run([*SUREFOOT, "-C", str(project), "deploy", "--non-interactive"])

        # The CLI's side: surefoot's own rendered stack file (the image it pinned and shipped to
        # every node), another stack name, GREETING changed each round.
        releases = projects["surefoot"] / ".surefoot" / "targets" / "cluster" / "releases"
        rendered = json.loads((releases / "1" / "stack.json").read_text())
        cli_stack = f"sft-bsw-{tag}-cli"
        cli_file = folder / "cli-stack.json"
        sock = folder / "manager.sock"
        tunnel = forward_socket(pool, manager, sock)
        cli_env = {key: value for key, value in os.environ.items() if key != "DOCKER_CONTEXT"}
        cli_env["DOCKER_HOST"] = f"unix://{sock}"

        def cli_deploy(round_: int) -> None:
            rendered["services"]["api"]["environment"]["GREETING"] = f"round{round_}"
            cli_file.write_text(json.dumps(rendered, indent=1))
            run(["docker", "stack", "deploy", "--detach=false", "--resolve-image", "never", "-c", str(cli_file),
                 cli_stack], env=cli_env)

        cli_deploy(-1)

        def surefoot_side(label: str, project: Path) -> Side:
            def deploy(round_: int) -> None:
                (project / ".env").write_text(f"GREETING=round{round_}\n")
                run([*SUREFOOT, "-C", str(project), "deploy", "--non-interactive"])

            return Side(label, f"{project.name}_api", deploy, lambda: surefoot_facts(project))

        sides = [surefoot_side(label, project) for label, project in projects.items()]
        sides.append(Side("stack deploy --detach=false", f"{cli_stack}_api", cli_deploy))
        for round_ in range(args.rounds):
            for side in sides[round_ % len(sides):] + sides[:round_ % len(sides)]:
                row = side.round(manager, round_)
                more = (f" (health-wait finished {row['gate']:+.1f}, deployment finished -> exit "
                        f"{row['closing']:.1f})" if side.facts else "")
                say(f"round {round_ + 1}: {side.label:<27} {row['total']:5.1f} s = before {row['before']:4.1f} "
                    f"+ swarm update {row['swarm']:4.1f} + after {row['after']:4.1f}{more}")
                if side.phases:
                    say(f"    phases (s): {side.phases[-1]}")

        base = sides[-1]
        say(f"\nrolling update of 3 replicas on a 3-node swarm, medians of {args.rounds}:")
        for side in sides:
            ratio = f"  ratio {side.median('total') / base.median('total'):.2f}x" if side is not base else ""
            say(f"  {side.label:<27} {side.median('total'):5.1f} s{ratio}  (before {side.median('before'):.1f}, "
                f"swarm update {side.median('swarm'):.1f}, after {side.median('after'):.1f})")
        say("from the swarm's UpdateStatus.CompletedAt to the side reporting it (medians):")
        for side in sides:
            gate = (f"health-wait finished {side.median('gate'):+.1f} s, exit {side.median('after'):+.1f} s "
                    f"(deployment finished -> exit {side.median('closing'):.1f} s)" if side.facts
                    else f"exit {side.median('after'):+.1f} s")
            say(f"  {side.label:<27} {gate}")
        stamp = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
        with Path(args.results).open("a") as results:
            results.write(f"# bench/swarm.py, {stamp}, {os.cpu_count()} cores (shared), three test servers, "
                          f"{args.rounds} rounds\n" + "\n".join(out) + "\n\n")
    finally:
        if tunnel is not None:
            tunnel.terminate()
            tunnel.wait(timeout=10)
        pool.teardown()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
