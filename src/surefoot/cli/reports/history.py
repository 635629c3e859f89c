"""``surefoot history``: releases newest first, with outcome, phase durations and who deployed."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from surefoot.base.units import format_duration, short_commit
from surefoot.store import StateStore


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    parse = datetime.fromisoformat
    return round((parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds(), 3)


def collect_history(state_dir: Path, project: str) -> dict[str, Any]:
    db = state_dir / "state.db"
    result: dict[str, Any] = {"project": project, "current_release": None, "releases": [], "rollbacks": []}
    if not db.exists():
        return result
    with StateStore.open(db, create=False) as store:
        result["current_release"] = store.current_release(project)
        deployments = {d.id: d for d in store.deployments(project)}
        for release in store.releases(project):
            deployment = deployments.get(release.id)
            phases: dict[str, float] = {}
            failed: list[str] = []
            for run in store.phase_runs(release.id):  # oldest first: a phase's last run decides
                took = _seconds(run.started_at, run.finished_at)
                if took is not None and run.status in ("completed", "failed"):
                    phases[run.phase] = took
                    if run.status == "failed" and run.phase not in failed:
                        failed.append(run.phase)
                    elif run.status == "completed" and run.phase in failed:
                        failed.remove(run.phase)
            result["releases"].append({
                "id": release.id,
                "created_at": release.created_at,
                "outcome": release.outcome,
                "healthy_at": release.healthy_at,
                "kind": deployment.kind if deployment else None,
                "user": deployment.user if deployment else None,
                "host": deployment.host if deployment else None,
                "duration": _seconds(deployment.started_at, deployment.finished_at) if deployment else None,
                "phases": phases,
                "failed_phases": failed,  # phases in "phases" whose last run failed
                "images": release.images,
                "compose_digest": release.compose_digest,
                "env_digest": release.env_digest,
                "git_commit": release.git_commit,
                "backup": release.backup_path,
                "not_kept": list(release.not_kept),
            })
        for rollback in store.rollbacks(project):
            result["rollbacks"].append({
                "id": rollback.id,
                "started_at": rollback.started_at,
                "finished_at": rollback.finished_at,
                "trigger": rollback.trigger,
                "from_release": rollback.from_release,
                "to_release": rollback.to_release,
                "outcome": rollback.outcome,
                "message": rollback.message,
                "user": rollback.user,
                "host": rollback.host,
            })
    return result


def render_history(data: dict[str, Any]) -> str:
    if not data["releases"] and not data["rollbacks"]:
        return f"{data['project']}: no releases yet"
    lines = [f"{data['project']}: current release {data['current_release'] or 'none'}", ""]
    lines.append(f"  {'release':<8} {'created (UTC)':<19}  {'outcome':<12} {'took':>7}  by")
    for rel in data["releases"]:
        mark = "*" if rel["id"] == data["current_release"] else " "
        took = format_duration(rel["duration"]) if rel["duration"] is not None else ""
        by = f"{rel['user']}@{rel['host']}" if rel["user"] else ""
        commit = f"  git {short_commit(rel['git_commit'])}" if rel["git_commit"] else ""
        lines.append(f"{mark} r{rel['id']:<7} {rel['created_at'].replace('T', ' ')[:19]}  "
                     f"{rel['outcome']:<12} {took:>7}  {by}{commit}")
        if rel["phases"]:
            failed = rel.get("failed_phases") or []
            slow = [n for n, _ in sorted(rel["phases"].items(), key=lambda item: -item[1]) if n not in failed]
            shown = [*failed, *slow[:max(0, 4 - len(failed))]]
            lines.append("           " + ", ".join(
                f"{name} {format_duration(rel['phases'][name])}" + (" (failed)" if name in failed else "")
                for name in shown))
        for item in rel.get("not_kept") or []:
            lines.append(f"           not kept (a rollback cannot restore it): {item}")
    if data["rollbacks"]:
        lines += ["", "rollbacks:"]
        for rb in data["rollbacks"]:
            origin = f"r{rb['from_release']}" if rb["from_release"] else "?"
            lines.append(f"  {rb['started_at'].replace('T', ' ')[:19]}  {rb['trigger']:<9} {origin} -> "
                         f"r{rb['to_release']}: {rb['outcome']} ({rb['user']}@{rb['host']})")
    return "\n".join(lines)
