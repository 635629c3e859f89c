"""The swarm's own phases (engines/swarm/phases.py) on a fake swarm: the stack files they deploy,
the gate's verdicts (converged, a crash loop, a rollback by the swarm, a task never placed), the
migration as one task with its exit code, cleanup, restoring a release, verify, and preflight's
swarm checks. tests/test_swarm.py runs the same on a real three-node swarm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_swarm import FakeSwarm, FakeSwarmEngine

from fakes import FakeEngine, Script, phase_context
from surefoot.base.errors import PhaseFailed
from surefoot.deploy.api import PhaseContext
from surefoot.deploy.phases.verify import Check
from surefoot.engines.swarm import phases
from surefoot.engines.swarm.checks import swarm_checks
from surefoot.engines.swarm.stackfile import MIGRATE_SERVICE, SPEC_LABEL
from surefoot.store import Release

SERVICES: dict[str, dict[str, Any]] = {
    "db": {"image": "postgres:16"},
    "web": {"image": "shop-web:1", "command": ["serve"], "deploy": {"replicas": 2}},
}
IMAGES = {"postgres:16": "sha256:pg16", "shop-web:1": "sha256:web1"}
TOML = ('[phases.health-wait]\nmonitor = "0s"\ntimeout = "30s"\npending_timeout = "3s"\n'
        '[phases.database-migrate]\nservice = "web"\ncommand = ["migrate", "--all"]\ntimeout = "30s"\n')


def swarm_context(tmp_path: Path, name: str, swarm: FakeSwarm | None = None, toml: str = TOML,
                  **extra: Any) -> tuple[PhaseContext, FakeSwarm, FakeSwarmEngine, Any]:
    swarm = swarm or FakeSwarm()
    engine = FakeSwarmEngine(swarm, Script(services=dict(SERVICES), images=dict(IMAGES)))
    ctx, seen = phase_context(tmp_path, engine, toml, name=name, **extra)
    return ctx, swarm, engine, seen


def test_database_start_deploys_the_databases_alone_and_waits_for_their_tasks(tmp_path: Path) -> None:
    ctx, swarm, engine, _ = swarm_context(tmp_path, "database-start")
    result = phases.database_start(ctx)
    assert result.note == "db running on the swarm"
    assert list(swarm.deployed[0]["services"]) == ["db"]
    # each service runs the reference named after its image id, tagged on the manager
    ref = swarm.deployed[0]["services"]["db"]["image"]
    assert ref.startswith("surefoot.local/shop/db:id-") and ("tag", {"image": "sha256:pg16", "reference": ref}) \
        in engine.calls
    assert swarm.shipped == [{ref: []}]


def test_a_database_that_never_runs_fails_its_start_naming_why(tmp_path: Path) -> None:
    swarm = FakeSwarm()
    swarm.unplaced["db"] = "no suitable node (insufficient resources on 2 nodes)"
    ctx, *_ = swarm_context(tmp_path, "database-start", swarm)
    with pytest.raises(PhaseFailed, match=r"a database service is not ready: .*no suitable node"):
        phases.database_start(ctx)


def test_the_migration_runs_as_one_task_its_log_shown_and_its_exit_code_honoured(tmp_path: Path) -> None:
    ctx, swarm, _, seen = swarm_context(tmp_path, "database-migrate")
    swarm._services[swarm.service_name(MIGRATE_SERVICE)] = {"ID": "left", "Spec": {"Name": "x"}}  # a killed attempt's
    assert phases.migrate(ctx).status == "completed"
    migration = swarm.deployed[0]["services"][MIGRATE_SERVICE]
    assert migration["command"] == ["migrate", "--all"]
    assert migration["deploy"]["restart_policy"] == {"condition": "none"}
    assert "applying 2 migrations" in seen.lines
    assert swarm.removed == ["shop_surefoot-migrate", "shop_surefoot-migrate"]  # the leftover, then its own
    assert any("left by an earlier attempt" in line for line in seen.lines)
    swarm.migration_exit = 3
    with pytest.raises(PhaseFailed, match="migration command exited with code 3") as failed:
        phases.migrate(ctx)
    assert failed.value.command_exit_code == 3


def test_services_start_deploys_the_whole_stack_and_health_wait_gates_it(tmp_path: Path) -> None:
    ctx, _, _, seen = swarm_context(tmp_path, "services-start", deployment_id=4)
    assert phases.services_start(ctx).note == "2 services deployed to the swarm"
    stack = json.loads((tmp_path / "state" / "releases" / "4" / "stack.json").read_text())
    assert sorted(stack["services"]) == ["db", "web"]
    assert stack["services"]["web"]["deploy"]["update_config"]["failure_action"] == "rollback"
    assert (tmp_path / "state" / "releases" / "4" / "stack.json").stat().st_mode & 0o777 == 0o600
    ctx.name = "health-wait"
    assert phases.health_wait(ctx).note.startswith("the swarm converged: ")
    assert any(line.startswith("  shop_web 2/2") for line in seen.lines)


def test_a_crash_loop_or_a_rollback_by_the_swarm_fails_the_gate_at_once(tmp_path: Path) -> None:
    ctx, swarm, _, _ = swarm_context(tmp_path, "services-start", deployment_id=5)
    phases.services_start(ctx)
    swarm.broken.add("web")
    phases.services_start(ctx)
    with pytest.raises(PhaseFailed, match="the health gate failed: shop_web: 3 tasks of this release failed"):
        phases.health_wait(ctx)
    swarm.broken.clear()
    swarm.rolls_back.add("web")
    ctx.engine.script.images["shop-web:1"] = "sha256:web2"  # type: ignore[attr-defined]
    phases.services_start(ctx)
    with pytest.raises(PhaseFailed, match="the swarm rolled shop_web back"):
        phases.health_wait(ctx)


def test_a_stack_with_a_missing_image_or_a_service_a_swarm_cannot_run_is_refused(tmp_path: Path) -> None:
    ctx, _, engine, _ = swarm_context(tmp_path, "services-start")
    del engine.script.images["shop-web:1"]
    with pytest.raises(PhaseFailed, match="no image on the manager for web"):
        phases.services_start(ctx)
    engine.script.images["shop-web:1"] = "sha256:web1"
    engine.script.services["web"] = {"image": "shop-web:1", "network_mode": "host"}
    with pytest.raises(PhaseFailed, match="the swarm cannot run this stack: web: network_mode host"):
        phases.services_start(ctx)


def test_with_a_registry_services_run_by_digest_and_nothing_is_shipped(tmp_path: Path) -> None:
    ctx, swarm, engine, _ = swarm_context(tmp_path, "services-start", FakeSwarm(registry="registry.example.com/team"))
    phases.services_start(ctx)
    assert swarm.deployed[0]["services"]["web"]["image"] == "registry.example.com/team/shop-web@sha256:web1"
    assert "tag" not in engine.ops()


def test_cleanup_untags_the_references_of_releases_past_keeping_on_every_node(tmp_path: Path) -> None:
    ctx, swarm, engine, seen = swarm_context(tmp_path, "cleanup", deployment_id=2)
    phases.services_start(ctx)
    swarm.untagged = {"target cluster": ["surefoot.local/shop/web:id-old"], "worker1": []}
    result = phases.cleanup(ctx)
    assert result.note == "1 old image reference(s) untagged on the swarm"
    assert "prune_project_images" in engine.ops()
    assert any("target cluster: 1 image reference(s)" in line for line in seen.lines)


def test_a_release_is_restored_whole_from_its_stack_file_and_gated(tmp_path: Path) -> None:
    ctx, swarm, _, seen = swarm_context(tmp_path, "services-start", deployment_id=1)
    phases.services_start(ctx)
    folder = tmp_path / "state" / "releases" / "1"
    release = Release(1, "shop", "2026-12-06T10:00:00", "healthy", None, {}, {}, "", "", None, str(folder), None)
    before = len(swarm.deployed)
    assert phases.restore(ctx, release, None, ("a note",)).note == "release 1 restored on the swarm and healthy"  # type: ignore[arg-type]
    assert swarm.deployed[before] == json.loads((folder / "stack.json").read_text())
    assert seen.warnings == ["a note"]
    gone = Release(9, "shop", "2026-12-06T10:00:00", "healthy", None, {}, {}, "", "", None, str(tmp_path), None)
    with pytest.raises(PhaseFailed, match="release 9 cannot be restored on the swarm: it has no stack file"):
        phases.restore(ctx, gone, None, ())  # type: ignore[arg-type]


def test_verify_judges_the_services_tasks(tmp_path: Path) -> None:
    ctx, swarm, _, _ = swarm_context(tmp_path, "verify", toml=TOML + '[phases.verify]\ncontainers_timeout = "2s"\n')
    phases.services_start(ctx)
    checks = phases.swarm_service_checks(ctx, 2.0)
    assert [(c.name, c.result) for c in checks] == [("shop_db", "pass"), ("shop_web", "pass")]
    swarm.unplaced["web"] = "no node"
    phases.services_start(ctx)
    checks = phases.swarm_service_checks(ctx, 1.0)
    assert Check("shop_web", "fail", "0/2 tasks running") in checks


def test_preflight_checks_the_manager_the_nodes_and_what_a_stack_cannot_carry(tmp_path: Path) -> None:
    ctx, swarm, engine, _ = swarm_context(tmp_path, "preflight")
    settings, model = ctx.settings, engine.model()
    [passed] = [c for c in swarm_checks(swarm, settings, model) if c.result != "warn"]
    assert passed.result == "pass" and "a manager; 2 node(s) ready" in passed.measured
    swarm.node_states["worker1"] = "down"
    assert swarm_checks(swarm, settings, model)[0].measured == "node(s) not ready: worker1 (down)"
    swarm.manager = False
    assert "not a manager" in swarm_checks(swarm, settings, model)[0].measured


def test_a_swarm_phase_on_another_engine_is_a_bug_said_as_such(tmp_path: Path) -> None:
    ctx, _ = phase_context(tmp_path, FakeEngine(Script(services=dict(SERVICES), images=dict(IMAGES))))
    with pytest.raises(AssertionError, match="engine is compose"):
        phases.services_start(ctx)


def test_the_spec_label_tells_the_releases_apart(tmp_path: Path) -> None:
    ctx, swarm, engine, _ = swarm_context(tmp_path, "services-start")
    phases.services_start(ctx)
    first = swarm.deployed[-1]["services"]["web"]["deploy"]["labels"][SPEC_LABEL]
    engine.script.services["web"] = {**SERVICES["web"], "command": ["serve", "--fast"]}
    phases.services_start(ctx)
    assert swarm.deployed[-1]["services"]["web"]["deploy"]["labels"][SPEC_LABEL] != first
