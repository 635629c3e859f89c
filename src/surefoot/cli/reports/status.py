"""``surefoot status``: read the store, never wait for the lock, print fast.

Import-light on purpose (no pydantic, no rich): this is the command operators
run in a loop while a deployment goes on.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from surefoot.base.errors import ConfigError
from surefoot.base.names import OPTIONAL_PHASES, PHASE_NAMES
from surefoot.store import StateStore
from surefoot.store.lock import current_holder

if TYPE_CHECKING:
    from surefoot.cli.options import GlobalOptions
    from surefoot.targets.choose import TargetChoice

DONE = ("completed", "skipped")


def collect_status(state_dir: Path, project: str, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """The contract's status object (see DESIGN.md), for one project. ``optional``: the
    phases after cleanup that the configuration runs, listed (pending) before they run."""
    holder = current_holder(state_dir)
    lock = None if holder is None else {"pid": holder.pid, "host": holder.host, "since": holder.since}
    db = state_dir / "state.db"
    deployment = None
    current_release = None
    rollbacks: list[Any] = []
    runs: dict[str, Any] = {}
    warnings: list[str] = []
    if db.exists():
        try:
            with StateStore.open(db, create=False) as store:
                deployment = store.latest_deployment(project)
                current_release = store.current_release(project)
                rollbacks = store.rollbacks(project)
                if deployment is not None:
                    all_runs = store.phase_runs(deployment.id)
                    runs = {run.phase: run for run in all_runs}
                    warnings = store.event_messages(deployment.id, "warning")
        except (FileNotFoundError, sqlite3.Error):
            deployment = None
    if deployment is None:
        return {
            "project": project,
            "state": "not-started",
            "deployment": None,
            "resume_at": None,
            "phases": [_phase(name, None, 0, False)
                       for name in PHASE_NAMES + tuple(n for n in OPTIONAL_PHASES if n in optional)],
            "lock": lock,
            "current_release": current_release,
            "rollback": None,
            "warnings": [],
        }
    state = deployment.state
    # A rollback by hand after the deployment ended: its release is no longer what runs.
    manual = next((r for r in rollbacks if r.trigger == "manual" and r.outcome == "restored" and r.finished_at
                   and deployment.finished_at and r.finished_at >= deployment.finished_at), None)
    if manual is not None and state == "completed":
        state = "rolled-back"
    holder_alive = holder is not None
    if state == "running" and not holder_alive:
        state = "interrupted"  # its holder died without a word (kill -9, power loss)
    attempts: dict[str, int] = {}
    for run in runs.values():
        attempts[run.phase] = run.attempt
    # Configured ones are listed before they run; a finished deployment lists those it ran.
    listed = optional if state not in ("completed", "rolled-back") else ()
    names = PHASE_NAMES + tuple(name for name in OPTIONAL_PHASES if name in runs or name in listed)
    phases = [_phase(name, runs.get(name), attempts.get(name, 0), holder_alive) for name in names]
    resume_at = None
    if state not in ("completed", "rolled-back"):
        resume_at = next((p["name"] for p in phases if p["status"] not in DONE), None)
    return {
        "project": project,
        "state": state,
        "deployment": {
            "id": deployment.id,
            "kind": deployment.kind,
            "started_at": deployment.started_at,
            "finished_at": deployment.finished_at,
            "host": deployment.host,
            "user": deployment.user,
            "error": deployment.error,
        },
        "resume_at": resume_at,
        "phases": phases,
        "lock": lock,
        "current_release": current_release,
        "rollback": None if manual is None else {"release": manual.to_release, "from_release": manual.from_release,
                                                 "trigger": manual.trigger, "at": manual.finished_at,
                                                 "by": f"{manual.user}@{manual.host}"},
        "warnings": warnings,
    }


def _phase(name: str, run: Any, attempts: int, holder_alive: bool) -> dict[str, Any]:
    if run is None:
        return {"name": name, "status": "pending", "started_at": None, "finished_at": None,
                "attempts": 0, "error": None, "log": None}
    status = run.status
    if status == "running" and not holder_alive:
        status = "interrupted"
    return {
        "name": name,
        "status": status,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "attempts": attempts,
        "error": run.error,
        "log": run.log_path,
    }


def _clock(iso: str | None) -> str:
    return iso.replace("T", " ")[:19] if iso else ""


def render_status(status: dict[str, Any]) -> str:
    lines = []
    dep = status["deployment"]
    head = f"{status['project']}: {status['state']}"
    if dep:
        head += f" (deployment #{dep['id']}, {dep['kind']}, started {_clock(dep['started_at'])} UTC"
        head += f" by {dep['user']}@{dep['host']})"
    lines.append(head)
    target = status.get("target")
    if target and target.get("host") != "local":
        lines.append(f"target: {target['name']} ({target['host']})")
    if status.get("current_release"):
        lines.append(f"current release: {status['current_release']}")
    rollback = status.get("rollback")
    if rollback:
        origin = f" from release {rollback['from_release']}" if rollback["from_release"] else ""
        lines.append(f"rolled back by hand to release {rollback['release']}{origin} at {_clock(rollback['at'])} UTC "
                     f"by {rollback['by']}")
    if status["lock"]:
        lock = status["lock"]
        lines.append(f"locked by pid {lock['pid']} on {lock['host']} since {_clock(lock['since'])} UTC")
    edge = status.get("edge")
    if edge:
        backends = ", ".join(f"{service}: {len(ids)} container(s)" for service, ids in edge["backends"].items())
        lines.append(f"edge ({edge['image']}): {', '.join(edge['ports']) or 'no port'}; {backends or 'no backend'}")
    lines.append("")
    width = max(len(phase["name"]) for phase in status["phases"])
    next_phase = status["resume_at"]
    header = f"  {'phase':<{width}}  {'status':<11}  {'started (UTC)':<19}  {'finished (UTC)':<19}  tries"
    lines.append(header)
    for phase in status["phases"]:
        label = phase["status"]
        if phase["name"] == next_phase and status["state"] != "running":
            label = "next" if label == "pending" else f"{label}"
        mark = ">" if phase["name"] == next_phase else " "
        lines.append(
            f"{mark} {phase['name']:<{width}}  {label:<11}  {_clock(phase['started_at']):<19}  "
            f"{_clock(phase['finished_at']):<19}  {phase['attempts'] or ''}"
        )
        if phase["error"] and phase["status"] in ("failed", "interrupted"):
            lines.append(f"  {'':<{width}}  {phase['error']}")
    if status.get("services") is not None:
        from surefoot.engines.swarm.state import render_services

        lines.append("")
        lines += render_services(status["services"])
    if status.get("warnings"):
        lines.append("")
        lines += [f"WARNING: {warning}" for warning in status["warnings"]]
    if next_phase and status["state"] in ("failed", "interrupted"):
        lines.append("")
        lines.append(f"`surefoot deploy` resumes at {next_phase}.")
    return "\n".join(lines)


def target_status(choice: TargetChoice, state_base: Path, project: str, optional: tuple[str, ...] = (),
                  data: dict[str, Any] | None = None) -> dict[str, Any]:
    """One target's status: this machine's record of it (``data``, read when not given), with
    what a server says itself (who holds its lock, which release runs there). ``target``
    holds its name and host; a target of several also has them at its top level."""
    data = data if data is not None else collect_status(choice.state_dir(state_base), project, optional)
    data["name"], data["host"] = choice.name, choice.host
    data["target"] = choice.describe()
    edge = edge_record(choice.state_dir(state_base))
    if edge is not None:
        data["edge"] = edge
    if not choice.local:
        from surefoot.targets.choose import server_view

        view = server_view(choice, project)
        if "error" in view:
            data["warnings"] = [*data.get("warnings", []), f"cannot ask the server: {view['error']}"]
        else:
            data["lock"] = view["lock"] or data["lock"]
            release = view["release"]
            data["target"]["release"] = release
            if data["current_release"] is None and release is not None:
                data["current_release"] = release.get("release")
            if "services" in view:
                data["services"] = view["services"]
    return data


def edge_record(state_dir: Path) -> dict[str, Any] | None:
    """What the edge holds and forwards to (engines/compose/edge.py writes it): ``image``,
    ``ports`` (``HOST:PORT->SERVICE:PORT``), ``backends`` (container ids per service)."""
    import json

    try:
        data = json.loads((state_dir / "edge" / "edge.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return {"image": str(data.get("image", "")), "ports": [str(p) for p in data.get("ports") or []],
            "backends": {str(k): [str(i) for i in v] for k, v in (data.get("backends") or {}).items()
                         if isinstance(v, list)}}


def rollout_record(state_base: Path) -> dict[str, Any] | None:
    """The record of the latest rollout over several targets (surefoot.deploy.run.fleet), if any."""
    import json

    try:
        found = json.loads((state_base / "rollout.json").read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def render_targets(status: dict[str, Any]) -> str:
    """Several targets: one line each (its state, its release, where it stands)."""
    rows = [("target", "host", "state", "release", "next", "lock")]
    for target in status["targets"]:
        lock = target["lock"]
        rows.append((target["name"], target["host"], target["state"], str(target["current_release"] or "-"),
                     target["resume_at"] or "-", f"pid {lock['pid']} on {lock['host']}" if lock else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"{status['project']}: {len(status['targets'])} targets"]
    rollout = status.get("rollout")
    if rollout:
        lines.append(f"latest rollout: {rollout.get('state')} (started {_clock(rollout.get('started_at'))} UTC)")
    lines.append("")
    lines += ["  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    for target in status["targets"]:
        for warning in target.get("warnings") or []:
            lines.append(f"{target['name']}: {warning}")
    return "\n".join(lines)


def render_rollouts(data: dict[str, Any]) -> str:
    """``history`` with several targets: each rollout, newest first, with each target's outcome."""
    lines = [f"{data['project']}: {len(data['rollouts'])} rollout(s)"]
    for rollout in data["rollouts"]:
        lines.append(f"rollout {rollout['rollout']}: {rollout['outcome']} "
                     f"(started {_clock(rollout.get('started_at'))} UTC)")
        for name, target in rollout["targets"].items():
            release = f"release {target['release']}" if target.get("release") else "no new release"
            lines.append(f"  {name}: {target['state']}, {release}" + (f" ({target['error']})" if target.get("error")
                                                                        else ""))
    return "\n".join(lines)


def show_status(opts: GlobalOptions, as_json: bool) -> str:
    """``surefoot status [--json]``: the text (or the JSON) to print."""
    import json

    from surefoot.config.project import configured_optional_phases, read_project_name, read_targets
    from surefoot.targets.choose import choose_targets

    if not opts.project_dir.is_dir():
        raise ConfigError(f"{opts.project_dir}: project folder not found (given with -C)")
    project = read_project_name(opts.project_dir, opts.config)
    optional = configured_optional_phases(opts.project_dir, opts.config)
    choices = choose_targets(read_targets(opts.project_dir, opts.config), opts.targets, opts.project_dir, project)
    if len(choices) > 1:  # several targets: one entry each, and the rollout's record
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(choices)) as pool:
            each = list(pool.map(lambda c: target_status(c, opts.base_state_dir(), project, optional), choices))
        several = {"project": project, "targets": each, "rollout": rollout_record(opts.base_state_dir())}
        return json.dumps(several, indent=2) if as_json else render_targets(several)
    data: dict[str, Any] = collect_status(choices[0].state_dir(opts.base_state_dir()), project, optional)
    target_status(choices[0], opts.base_state_dir(), project, optional, data)
    del data["name"], data["host"]  # one target: named in data["target"]
    return json.dumps(data, indent=2) if as_json else render_status(data)
