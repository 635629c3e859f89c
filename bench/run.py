"""surefoot's benchmarks, in one invocation: every contender runs on this machine in the
same run, alternating, and the table reports medians and ratios.

    .venv/bin/python bench/run.py                  # everything (about 10 minutes)
    .venv/bin/python bench/run.py --only startup   # startup, resume, deploy, services, health

Sections:
  startup   `surefoot --help`, `status`, `status --json` against `python3 -c pass`,
            with 10,000 deployments in the history
  deploy    the example, fresh, as an update, and as an update with a code change, against
            (a) a shell script running the same commands with no sleeps (the floor) and (b) the
            same script with the original's timing (10 s sleep, 5 s polls with 3 passes, a
            30 x 2 s database poll); surefoot runs as shipped, and with its gates' spacing set
            to 0 so that it does exactly the floor's work
  resume    a deployment that failed at health-wait, resumed: the time before its first docker
            command, and before health-wait's first step (its `docker events`)
  services  a 30-service busybox stack: surefoot's overhead per service over `compose up` alone
  health    see bench/health_latency.py (run separately: it takes a few minutes on its own)
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUREFOOT = [sys.executable, "-m", "surefoot"]
ROWS: list[tuple[str, str, float, str]] = []  # section, contender, median seconds, note


def timed(command: list[str], env: dict[str, str] | None = None, check: bool = True) -> float:
    began = time.perf_counter()
    result = subprocess.run(command, capture_output=True, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - began
    if check and result.returncode != 0:
        raise RuntimeError(f"{command} failed: {result.stdout.decode()[-2000:]}{result.stderr.decode()[-2000:]}")
    return elapsed


def alternate(contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            samples[name].append(run())
    return {name: statistics.median(values) for name, values in samples.items()}


def report(section: str, medians: dict[str, float], baseline: str, unit: str = "s") -> None:
    base = medians[baseline]
    for name, value in medians.items():
        shown = f"{value * 1000:.0f} ms" if unit == "ms" else f"{value:.2f} s"
        ratio = f"{value / base:.2f}x {baseline}" if name != baseline else "baseline"
        ROWS.append((section, name, value, f"{shown:>10}  {ratio}"))
        print(f"  {section:<9} {name:<34} {shown:>10}  {ratio}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- startup ----------------------------------------------------------------------------
def fill_history(state_dir: Path, project: str, deployments: int) -> None:
    from surefoot.base.names import PHASE_NAMES
    from surefoot.store import StateStore

    StateStore.open(state_dir / "state.db").close()
    conn = sqlite3.connect(state_dir / "state.db")
    with conn:
        conn.executemany(
            "INSERT INTO deployments (id, project, kind, state, started_at, finished_at, pid, host, user)"
            " VALUES (?, ?, 'update', 'completed', '2026-01-01T00:00:00.000Z', '2026-01-01T00:01:00.000Z', 1, 'h', 'u')",
            [(i, project) for i in range(1, deployments + 1)],
        )
        conn.executemany(
            "INSERT INTO phase_runs (deployment_id, phase, attempt, status, started_at, finished_at, fingerprint)"
            " VALUES (?, ?, 1, 'completed', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.000Z', '{}')",
            [(i, phase) for i in range(1, deployments + 1) for phase in PHASE_NAMES],
        )
    conn.close()


def bench_startup(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder) / "shop"
        project.mkdir()
        (project / "surefoot.toml").write_text('[project]\nname = "shop"\n')
        fill_history(project / ".surefoot", "shop", 10_000)
        cli = [*SUREFOOT, "-C", str(project)]
        medians = alternate({
            "python3 -c pass": lambda: timed([sys.executable, "-c", "pass"]),
            "surefoot --help": lambda: timed([*cli, "--help"]),
            "surefoot status (10,000 deployments)": lambda: timed([*cli, "status"]),
            "surefoot status --json": lambda: timed([*cli, "status", "--json"]),
        }, rounds * 10)
        report("startup", medians, "python3 -c pass", unit="ms")


# -- the example: surefoot against scripts -------------------------------------------------
FLOOR = r"""
set -e
c() { docker compose -p "$P" --project-directory "$D" -f "$D/compose.yaml" -f "$D/compose.production.yaml" --env-file "$D/.env.production" "$@"; }
c pull --ignore-buildable -q || true
c build -q
c up -d --wait db cache
c exec -T db pg_dump --username=shop --dbname=shop > "$D/backup.dump"
c run --rm --no-deps -T api python3 /app/migrate.py
c up -d --remove-orphans
for i in 1 2 3; do until curl -fsS "$URL" 2>/dev/null | grep -q '"status":"healthy"'; do :; done; done
docker image prune -f --filter dangling=true >/dev/null
for i in 1 2; do curl -fsS "${URL%/health}/api/items" >/dev/null; done
"""

ORIGINAL = r"""
set -e
c() { docker compose -p "$P" --project-directory "$D" -f "$D/compose.yaml" -f "$D/compose.production.yaml" --env-file "$D/.env.production" "$@"; }
c pull -q || true
c build -q
c up -d db cache
for i in $(seq 1 30); do c exec -T db pg_isready -h 127.0.0.1 -U shop >/dev/null 2>&1 && break; sleep 2; done
c exec -T db pg_dump --username=shop --dbname=shop > "$D/backup.dump"
c run --rm --no-deps -T api python3 /app/migrate.py
c up -d
sleep 10
streak=0
for i in $(seq 1 60); do
  if curl -fsS --max-time 10 "$URL" 2>/dev/null | grep -q '"status":"healthy"'; then streak=$((streak+1)); else streak=0; fi
  [ "$streak" -ge 3 ] && break
  sleep 5
done
docker image prune -f --filter dangling=true >/dev/null
for i in 1 2; do curl -fsS "${URL%/health}/api/items" >/dev/null; done
"""


def example_copy(folder: Path, name: str, port: int, unspaced: bool = False) -> Path:
    """A copy of the example on its own port; ``unspaced``: its gates' passes back to back."""
    target = folder / name
    shutil.copytree(REPO / "examples" / "shop", target, ignore=shutil.ignore_patterns(".surefoot"))
    config = (target / "surefoot.toml").read_text().replace('name = "shop"', f'name = "{name}"')
    if unspaced:
        config = config.replace('interval = "1s"', 'interval = "0s"').replace('interval = "0.5s"', 'interval = "0s"')
    (target / "surefoot.toml").write_text(config.replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
    env = (target / ".env.production").read_text().replace("HTTP_PORT=8080", f"HTTP_PORT={port}")
    (target / ".env.production").write_text(env)
    return target


def down(name: str) -> None:
    subprocess.run(["docker", "compose", "-p", name, "down", "-v", "--remove-orphans", "-t", "1"],
                   capture_output=True)


def bench_deploy(rounds: int) -> None:
    contenders = ("floor script", "surefoot", "surefoot, gates unspaced", "original timing")
    with tempfile.TemporaryDirectory() as folder:
        runs: dict[str, tuple[Path, int, str]] = {}
        for contender in contenders:
            name = f"sfbench-{contender.split()[0].strip(',')}-{uuid.uuid4().hex[:6]}"
            port = free_port()
            path = example_copy(Path(folder), name, port, unspaced="unspaced" in contender)
            runs[contender] = (path, port, name)

        def run(contender: str, scenario: str) -> float:
            path, port, name = runs[contender]
            if scenario == "fresh":
                down(name)
                shutil.rmtree(path / ".surefoot", ignore_errors=True)
            if scenario == "code change":  # the API's code changed: its last image layer rebuilds
                with open(path / "api" / "app" / "server.py", "a") as source:
                    source.write(f"# change {uuid.uuid4().hex}\n")
            if contender.startswith("surefoot"):
                return timed([*SUREFOOT, "-C", str(path), "deploy"])
            script = FLOOR if contender == "floor script" else ORIGINAL
            env = {"P": name, "D": str(path), "URL": f"http://127.0.0.1:{port}/health"}
            return timed(["bash", "-c", script], env=env)

        # Warm the build cache once, so that every contender builds from it.
        run("surefoot", "fresh")
        try:
            for scenario in ("fresh", "update", "code change"):
                medians = alternate({c: (lambda c=c, s=scenario: run(c, s)) for c in runs}, rounds)
                report(f"deploy-{scenario.replace(' ', '-')}", medians, "floor script")
        finally:
            for _, _, name in runs.values():
                down(name)


def bench_resume(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        name = f"sfbench-resume-{uuid.uuid4().hex[:6]}"
        path = example_copy(Path(folder), name, port)
        config = (path / "surefoot.toml").read_text()
        samples, phase_samples = [], []
        try:
            for _ in range(rounds):
                down(name)
                shutil.rmtree(path / ".surefoot", ignore_errors=True)
                # Only health-wait is broken (database-start has a 90 s timeout of its own).
                before, gate = config.split("[phases.health-wait]")
                gate = gate.replace("/health", "/no-such-page").replace('timeout = "90s"', 'timeout = "2s"')
                broken = before + "[phases.health-wait]" + gate
                (path / "surefoot.toml").write_text(broken + "\n[rollback]\nautomatic = false\n")
                timed([*SUREFOOT, "-C", str(path), "deploy"], check=False)
                resume_at = subprocess.run([*SUREFOOT, "-C", str(path), "status", "--json"], capture_output=True,
                                           text=True).stdout
                assert '"resume_at": "health-wait"' in resume_at, resume_at
                (path / "surefoot.toml").write_text(config)
                trace = Path(folder) / "trace.txt"
                trace.unlink(missing_ok=True)
                began = time.time()
                timed([*SUREFOOT, "-C", str(path), "deploy"], env={"SUREFOOT_TRACE": str(trace)})
                lines = trace.read_text().splitlines()
                samples.append(float(lines[0].split()[0]) - began)
                # health-wait's first step: it follows the engine's events before its first probe.
                events = next(line for line in lines if " events " in line)
                phase_samples.append(float(events.split()[0]) - began)
        finally:
            down(name)
        for label, values in (("start to first docker command", samples),
                              ("start to health-wait's first step", phase_samples)):
            median = statistics.median(values)
            ROWS.append(("resume", f"surefoot: {label}", median, f"{median * 1000:.0f} ms"))
            print(f"  resume    {label:<38} {median * 1000:.0f} ms", flush=True)


SERVICE = """  s{n}:
    image: surefoot-test/busybox:1
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
"""


def bench_services(rounds: int, count: int = 30) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "many"
        path.mkdir()
        (path / "compose.yaml").write_text("services:\n" + "".join(SERVICE.format(n=n) for n in range(count)))
        name = f"sfbench-many-{uuid.uuid4().hex[:6]}"
        (path / "surefoot.toml").write_text(f'[project]\nname = "{name}"\n[phases.pull-images]\nenabled = false\n')
        compose = ["docker", "compose", "-p", name, "--project-directory", str(path), "-f", str(path / "compose.yaml")]

        def with_surefoot() -> float:
            down(name)
            return timed([*SUREFOOT, "-C", str(path), "deploy"])

        def bare() -> float:
            down(name)
            return timed([*compose, "up", "-d", "--remove-orphans"])

        try:
            medians = alternate({"compose up -d (30 services)": bare, "surefoot deploy (30 services)": with_surefoot},
                                rounds)
        finally:
            down(name)
        report("services", medians, "compose up -d (30 services)")
        per = (medians["surefoot deploy (30 services)"] - medians["compose up -d (30 services)"]) / count
        ROWS.append(("services", "overhead per service", per, f"{per * 1000:.0f} ms"))
        print(f"  services  overhead per service                    {per * 1000:.0f} ms", flush=True)


SECTIONS = {"startup": bench_startup, "resume": bench_resume, "services": bench_services, "deploy": bench_deploy}


def main() -> int:
    parser = argparse.ArgumentParser(description="surefoot's benchmarks")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    args = parser.parse_args()
    for section in args.only.split(","):
        print(f"{section}:", flush=True)
        SECTIONS[section](args.rounds)
    print("\nsection    contender                                   median")
    for section, name, _, note in ROWS:
        print(f"{section:<10} {name:<40} {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
