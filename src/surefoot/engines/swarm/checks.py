"""Preflight's checks of a swarm (``engine = "swarm"``): the host is a manager, every node is
ready, the stack can be scheduled as written, and what works differently on a swarm than the files
or surefoot.toml may expect is said."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from surefoot.engines.compose.model import ComposeModel
from surefoot.engines.swarm.client import SwarmClient
from surefoot.engines.swarm.stackfile import problems, render
from surefoot.engines.swarm.state import SwarmError
from surefoot.hosts.checks import CheckResult

if TYPE_CHECKING:
    from surefoot.config.settings import Settings


def _warnings(settings: Settings, model: ComposeModel) -> list[str]:
    """What works differently on a swarm than the files or surefoot.toml may expect."""
    warnings = []
    project = settings.project_dir.resolve()
    for name, spec in sorted((model.data.get("services") or {}).items()):
        constraints = ((spec.get("deploy") or {}).get("placement") or {}).get("constraints") or []
        pinned = any(c.replace(" ", "") in ("node.role==manager",) or c.replace(" ", "").startswith("node.hostname==")
                     for c in constraints)
        binds = [str(v.get("source")) for v in spec.get("volumes") or []
                 if isinstance(v, dict) and v.get("type") == "bind" and v.get("source")
                 and Path(str(v["source"])).resolve().is_relative_to(project)]
        if binds and not pinned:
            warnings.append(f"{name}: bind mounts of project files ({', '.join(binds)}) exist only on the manager, "
                            "where surefoot sends the project: constrain the service to it "
                            "(deploy.placement.constraints: node.role == manager), or use configs")
    if settings.phases.services_start.zero_downtime:
        warnings.append("phases.services-start.zero_downtime is not used on a swarm: set "
                        "deploy.update_config.order: start-first on those services instead")
    probes = [p.label for p in settings.phases.health_wait.all_probes() if p.type in ("container", "command")]
    if probes:
        warnings.append(f"health-wait probes {', '.join(probes)} (container, command) are not run on a swarm: "
                        "the swarm gate checks every service's tasks")
    return warnings


def swarm_checks(swarm: SwarmClient, settings: Settings, model: ComposeModel) -> list[CheckResult]:
    """The host is a manager, every node is ready, the stack can be scheduled as written."""
    results: list[CheckResult] = []
    record = results.append
    try:
        problem = swarm.manager_problem()
        nodes = swarm.nodes() if problem is None else []
    except SwarmError as exc:
        problem, nodes = str(exc), []
    if problem is not None:
        record(CheckResult("swarm", "fail", problem))
        return results
    down = [f"{(n.get('Description') or {}).get('Hostname')} ({(n.get('Status') or {}).get('State')})"
            for n in nodes if (n.get("Status") or {}).get("State") != "ready"]
    if down:
        record(CheckResult("swarm", "fail", f"node(s) not ready: {', '.join(down)}", "every node ready",
                           "bring them back, or remove them (docker node rm)"))
        return results
    stack = render(model.data, {})
    found = problems(stack)
    if settings.phases.database_migrate.backup is not None:
        found.append("phases.database-migrate.backup is not supported with engine = \"swarm\" yet "
                     "(take the backup in a pre-migrate hook)")
    if found:
        record(CheckResult("swarm", "fail", "; ".join(found)))
        return results
    for warning in _warnings(settings, model):
        record(CheckResult("swarm", "warn", warning))
    defaulted = [name for name, spec in (model.data.get("services") or {}).items()
                 if "failure_action" not in ((spec.get("deploy") or {}).get("update_config") or {})]
    record(CheckResult("swarm", "pass", f"a manager; {len(nodes)} node(s) ready"
                       + (f"; update_config.failure_action rollback for {', '.join(sorted(defaulted))} "
                          "(the files set none)" if defaulted else "")))
    return results
