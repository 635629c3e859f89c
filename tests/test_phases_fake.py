"""Each phase that talks to Docker, run on a FakeEngine: what it asks, in what order, and
what it makes of the answers. No engine needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import FakeEngine, Script, local_runner, phase_context, running
from surefoot.base.errors import PhaseFailed
from surefoot.deploy.phases import cleanup, database, health, images, postdeploy, services, verify
from surefoot.engines.compose.model import ContainerState

FAST = "consecutive = 1\ninterval = 0\n"


# -- services-start -----------------------------------------------------------------------

def test_services_start_brings_every_service_up_removing_orphans(tmp_path: Path) -> None:
    docker = FakeEngine()
    ctx, _ = phase_context(tmp_path, docker, "[phases.services-start]\ntimeout = 42\n", name="services-start")
    assert services.start(ctx).status == "completed"
    assert docker.ops() == ["finish_interrupted_recreates", "up"]
    assert docker.args("up") == [{"services": (), "remove_orphans": True, "timeout": 42.0}]


def test_services_start_fails_with_composes_own_reason(tmp_path: Path) -> None:
    docker = FakeEngine(Script(lines={"up": [" web Starting", "Error response from daemon: port is taken"]},
                               codes={"up": 1}))
    ctx, _ = phase_context(tmp_path, docker)
    with pytest.raises(PhaseFailed) as failed:
        services.start(ctx)
    assert failed.value.command_exit_code == 1
    assert "port is taken" in failed.value.summary


# -- database-start -------------------------------------------------------------------------

def test_database_start_starts_only_the_database_services_and_waits_for_them(tmp_path: Path) -> None:
    docker = FakeEngine(Script(services={"db": {"image": "postgres:16"}, "web": {"image": "nginx"}},
                               containers=[running("db", health="healthy")]))
    ctx, _ = phase_context(tmp_path, docker, name="database-start")
    result = database.start(ctx)
    assert result.status == "completed" and "db ready" in (result.note or "")
    assert docker.args("up") == [{"services": ("db",)}]
    assert docker.ops().index("events") < docker.ops().index("up")  # followed before it starts


def test_database_start_is_skipped_without_a_database(tmp_path: Path) -> None:
    docker = FakeEngine(Script(services={"web": {"image": "nginx"}}))
    ctx, _ = phase_context(tmp_path, docker)
    assert database.start(ctx).status == "skipped"
    assert "up" not in docker.ops()


def test_database_start_fails_when_the_database_exits(tmp_path: Path) -> None:
    exited = ContainerState("shop-db-1", "db", "exited", "", 3, id="db1")
    docker = FakeEngine(Script(services={"db": {"image": "postgres:16"}}, containers=[exited],
                               lines={"logs_tail": ["FATAL: bad config"]}))
    ctx, seen = phase_context(tmp_path, docker, "[phases.database-start]\ntimeout = 30\n")
    with pytest.raises(PhaseFailed, match="a database service is not ready"):
        database.start(ctx)
    assert "FATAL: bad config" in seen.lines


# -- database-migrate -----------------------------------------------------------------------

MIGRATE = '[phases.database-migrate]\nservice = "web"\ncommand = ["migrate", "--all"]\nentrypoint = []\n'


def test_migrate_runs_a_labelled_one_off_follows_it_and_removes_it(tmp_path: Path) -> None:
    docker = FakeEngine(Script(labelled={database.ONEOFF_LABEL: ["stale1"]}, lines={"logs": ["applied 3"]}))
    ctx, seen = phase_context(tmp_path, docker, MIGRATE, name="database-migrate")
    assert database.migrate(ctx).status == "completed"
    assert docker.ops() == ["remove_containers", "run_oneoff", "logs", "wait", "remove_containers"]
    assert docker.args("remove_containers")[0] == {"names": ("stale1",)}
    run = docker.args("run_oneoff")[0]
    assert run == {"service": "web", "command": ("migrate", "--all"), "name": "shop-surefoot-migrate",
                   "entrypoint": (), "labels": {database.ONEOFF_LABEL: "migrate"}}
    assert docker.args("logs")[0]["container"] == "shop-surefoot-migrate"
    assert "applied 3" in seen.lines


def test_a_failed_migration_fails_the_phase_and_still_removes_its_container(tmp_path: Path) -> None:
    docker = FakeEngine(Script(wait_codes={"shop-surefoot-migrate": 3}))
    ctx, _ = phase_context(tmp_path, docker, MIGRATE)
    with pytest.raises(PhaseFailed) as failed:
        database.migrate(ctx)
    assert failed.value.command_exit_code == 3
    assert docker.ops()[-1] == "remove_containers"


def test_migrate_takes_its_backup_once_per_release(tmp_path: Path) -> None:
    backup = MIGRATE + '[phases.database-migrate.backup]\nservice = "db"\ncommand = ["pg_dump"]\n'
    docker = FakeEngine(Script(containers=[running("db")], lines={"exec_to_file": ["-- dump"]}))
    ctx, _ = phase_context(tmp_path, docker, backup, deployment_id=7)
    database.migrate(ctx)
    database.migrate(ctx)
    assert [a["command"] for a in docker.args("exec_to_file")] == [("pg_dump",)]
    assert (tmp_path / "state" / "backups" / "release-7.dump").read_text() == "-- dump"


def test_migrate_is_skipped_without_a_command(tmp_path: Path) -> None:
    docker = FakeEngine()
    ctx, _ = phase_context(tmp_path, docker)
    assert database.migrate(ctx).status == "skipped"
    assert docker.calls == []


# -- pull-images and build --------------------------------------------------------------------

def test_pull_pulls_the_services_not_built_here_databases_first(tmp_path: Path) -> None:
    docker = FakeEngine(Script(services={"db": {"image": "postgres:16"}, "web": {"image": "nginx"},
                                         "app": {"build": "."}}))
    ctx, seen = phase_context(tmp_path, docker, name="pull-images")
    assert images.pull(ctx).status == "completed"
    pulled = sorted(a["services"] for a in docker.args("pull"))
    assert pulled == [("db",), ("web",)]
    assert all(a["ignore_buildable"] for a in docker.args("pull"))
    assert seen.milestones == [images.DATABASE_IMAGES]


def test_a_failed_pull_warns_and_goes_on_unless_told_to_stop(tmp_path: Path) -> None:
    script = Script(services={"web": {"image": "nginx"}}, lines={"pull": [" web Error pull access denied"]})
    ctx, seen = phase_context(tmp_path, FakeEngine(script))
    assert images.pull(ctx).note == "pull failed; local images used"
    assert seen.warnings and seen.warnings[0].startswith("could not pull web;")
    ctx, _ = phase_context(tmp_path, FakeEngine(script), "[phases.pull-images]\nfail_on_error = true\n")
    with pytest.raises(PhaseFailed, match="could not pull web"):
        images.pull(ctx)


def test_build_builds_the_services_with_a_build_section(tmp_path: Path) -> None:
    docker = FakeEngine(Script(services={"web": {"image": "nginx"}, "app": {"build": str(tmp_path)}}))
    (tmp_path / ".dockerignore").write_text("state\n")
    ctx, _ = phase_context(tmp_path, docker, name="build")
    assert images.build(ctx).note == "app"
    assert docker.args("build") == [{"services": ("app",)}]


def test_a_failed_build_fails_the_phase(tmp_path: Path) -> None:
    docker = FakeEngine(Script(services={"app": {"build": str(tmp_path)}}, codes={"build": 17}))
    (tmp_path / ".dockerignore").write_text("state\n")
    ctx, _ = phase_context(tmp_path, docker)
    with pytest.raises(PhaseFailed) as failed:
        images.build(ctx)
    assert failed.value.command_exit_code == 17


# -- cleanup ---------------------------------------------------------------------------------

def test_cleanup_untags_the_expired_tags_that_exist_and_prunes_the_projects_images(tmp_path: Path) -> None:
    docker = FakeEngine(Script(images={"shop-web:release-1": "sha256:a"}))
    ctx, _ = phase_context(tmp_path, docker, expired_tags=["shop-web:release-1", "shop-web:release-0"])
    assert "1 old release tag(s) removed" in (cleanup.prune(ctx).note or "")
    assert docker.args("remove_images") == [{"images": ("shop-web:release-1",)}]
    assert docker.args("prune_project_images") == [{"project": "shop"}]


def test_cleanup_only_warns_when_removal_fails(tmp_path: Path) -> None:
    docker = FakeEngine(Script(images={"t:1": "sha256:a"}, codes={"remove_images": 1, "prune_project_images": 1}))
    ctx, seen = phase_context(tmp_path, docker, expired_tags=["t:1"])
    assert cleanup.prune(ctx).status == "completed"
    assert len(seen.warnings) == 2


# -- health-wait -------------------------------------------------------------------------------

def test_health_wait_is_skipped_without_a_probe(tmp_path: Path) -> None:
    ctx, _ = phase_context(tmp_path, FakeEngine(), name="health-wait")
    assert health.wait(ctx).status == "skipped"


def test_health_wait_passes_on_a_running_container(tmp_path: Path) -> None:
    docker = FakeEngine(Script(containers=[running("web")]))
    toml = f'[phases.health-wait]\n{FAST}[[phases.health-wait.probes]]\nservice = "web"\n'
    ctx, _ = phase_context(tmp_path, docker, toml, name="health-wait")
    assert health.wait(ctx).status == "completed"
    assert "events" in docker.ops()


def test_health_wait_fails_at_once_when_a_container_exits(tmp_path: Path) -> None:
    docker = FakeEngine(Script(containers=[ContainerState("shop-web-1", "web", "exited", "", 1, id="w")],
                               lines={"logs_tail": ["panic: no config"]}))
    toml = f'[phases.health-wait]\n{FAST}timeout = 600\n[[phases.health-wait.probes]]\nservice = "web"\n'
    ctx, seen = phase_context(tmp_path, docker, toml)
    with pytest.raises(PhaseFailed, match="the health gate failed"):
        health.wait(ctx)
    assert "panic: no config" in seen.lines


def test_a_command_probe_runs_in_the_services_container(tmp_path: Path) -> None:
    docker = FakeEngine(Script(containers=[running("web")]))
    toml = f'[phases.health-wait]\n{FAST}[[phases.health-wait.probes]]\nservice = "web"\ncommand = ["true"]\n'
    ctx, _ = phase_context(tmp_path, docker, toml)
    health.wait(ctx)
    assert docker.args("exec_capture")[0]["command"] == ("true",)


# -- verify --------------------------------------------------------------------------------------

def test_verify_passes_when_every_service_runs(tmp_path: Path) -> None:
    docker = FakeEngine(Script(services={"web": {"image": "nginx"}}, containers=[running("web", health="healthy")]))
    ctx, seen = phase_context(tmp_path, docker, name="verify")
    assert verify.verify(ctx).status == "completed"
    assert any("container shop-web-1" in line and "pass" in line for line in seen.lines)


def test_verify_fails_on_a_missing_and_an_exited_container(tmp_path: Path) -> None:
    docker = FakeEngine(Script(services={"web": {"image": "nginx"}, "worker": {"image": "busybox"}},
                               containers=[ContainerState("shop-web-1", "web", "exited", "", 2, id="w")]))
    ctx, _ = phase_context(tmp_path, docker)
    with pytest.raises(PhaseFailed) as failed:
        verify.verify(ctx)
    assert "exited with code 2" in failed.value.summary
    assert "service worker: no container" in failed.value.summary


# -- post-deploy -----------------------------------------------------------------------------------

POST = '[[phases.post-deploy.commands]]\nservice = "web"\ncommand = ["warm", "cache"]\n'


def test_post_deploy_runs_its_commands_in_the_services_container(tmp_path: Path) -> None:
    docker = FakeEngine(Script(containers=[running("web")], lines={"exec_stream": ["warmed"]}))
    ctx, seen = phase_context(tmp_path, docker, POST, name="post-deploy")
    assert postdeploy.post_deploy(ctx).status == "completed"
    assert docker.args("exec_stream")[0]["command"] == ("warm", "cache")
    assert "warmed" in seen.lines
    assert any(line.startswith("  logs:") and "--follow" in line for line in seen.lines)


def test_post_deploy_fails_on_a_failed_command_or_no_container(tmp_path: Path) -> None:
    docker = FakeEngine(Script(containers=[running("web")], codes={"exec_stream": 5}))
    ctx, _ = phase_context(tmp_path, docker, POST)
    with pytest.raises(PhaseFailed) as failed:
        postdeploy.post_deploy(ctx)
    assert failed.value.command_exit_code == 5
    ctx, _ = phase_context(tmp_path, FakeEngine(), POST)
    with pytest.raises(PhaseFailed, match="no running container of web"):
        postdeploy.post_deploy(ctx)


# -- rollback's restore unit -------------------------------------------------------------------------

class _Keeper:
    """The release keeper's answers for one release: its images present or not, how to restore it."""

    def __init__(self, missing: list[str], force: tuple[str, ...] = ()) -> None:
        self.missing, self.force, self.restored = missing, force, False

    def missing_images(self, release: object) -> list[str]:
        return self.missing

    def restore(self, release: object, out: object) -> object:
        from surefoot.deploy.releases import Restore

        self.restored = True
        return Restore(FakeEngine(project_dir=Path("/srv/shop/.surefoot/releases/3")).project, self.force)


def _release() -> object:
    from surefoot.store import Release

    return Release(3, "shop", "2026-01-01T00:00:00", "healthy", None, {}, {"web": "shop-web:release-3"},
                   "", "", None, "/nowhere", None)


def test_a_rollback_starts_the_pinned_images_recreates_what_compose_cannot_see_and_gates(tmp_path: Path) -> None:
    from surefoot.deploy.phases import restore

    docker = FakeEngine(Script(containers=[running("web")]))
    toml = f'[phases.health-wait]\n{FAST}[[phases.health-wait.probes]]\nservice = "web"\n'
    ctx, seen = phase_context(tmp_path, docker, toml, name="rollback")
    result = restore.restore(ctx, _release(), _Keeper([], force=("web",)), ("a note",))  # type: ignore[arg-type]
    assert result.note == "release 3 restored and healthy"
    assert docker.args("up") == [
        {"services": (), "no_build": True, "pull_never": True, "remove_orphans": True},
        {"services": ("web",), "no_build": True, "pull_never": True, "no_deps": True, "force_recreate": True},
    ]
    # up ran on the release's files
    assert docker.args("with_files") == [{"files": (Path("/srv/shop/.surefoot/releases/3/compose.yaml"),)}]
    assert seen.warnings == ["a note"]


def test_a_rollback_whose_images_are_gone_starts_nothing(tmp_path: Path) -> None:
    from surefoot.deploy.phases import restore

    docker = FakeEngine()
    ctx, _ = phase_context(tmp_path, docker, name="rollback")
    keeper = _Keeper(["shop-web:release-3"])
    with pytest.raises(PhaseFailed, match="its images are gone"):
        restore.restore(ctx, _release(), keeper, ())  # type: ignore[arg-type]
    assert not keeper.restored and docker.calls == []


# -- the runner, handed its collaborators ---------------------------------------------------------

def test_the_runner_uses_the_docker_and_the_prompter_it_is_handed(tmp_path: Path) -> None:

    from surefoot.config.settings import load_settings
    from surefoot.deploy.api import PhaseContext, PhaseResult, done
    from surefoot.deploy.pipeline import PhaseSpec
    from surefoot.deploy.run.checkpoint import DeployOptions

    (tmp_path / "compose.yaml").write_text("services: {}\n")
    docker = FakeEngine()
    prompter = object()
    seen: list[object] = []

    def start(ctx: PhaseContext) -> PhaseResult:
        seen.append(ctx.prompter)
        ctx.engine.up(on_line=ctx.out, remove_orphans=True)
        return done()

    class Quiet:
        def emit(self, event: object) -> None:
            pass

    runner = local_runner(load_settings(tmp_path), tmp_path / ".surefoot", Quiet(),
                          pipeline=[PhaseSpec("services-start", start)], engine=docker, prompter=prompter)
    outcome = runner.deploy(DeployOptions())
    assert outcome.state == "completed", outcome
    assert docker.args("up") == [{"services": (), "remove_orphans": True}]
    assert seen == [prompter]


ZDT = '[phases.services-start]\nzero_downtime = ["api"]\n'


def test_services_start_zero_downtime_leaves_the_old_container_when_the_new_one_cannot_start(
    tmp_path: Path,
) -> None:
    from surefoot.base.errors import StackUntouched

    docker = FakeEngine(Script(services={"api": {"image": "api:1"}}, containers=[running("api")],
                               codes={"create_beside": 1}))
    ctx, seen = phase_context(tmp_path, docker, ZDT, name="services-start")
    with pytest.raises(StackUntouched, match="the old one keeps serving"):
        services.start(ctx)
    assert docker.args("create_beside") == [{"service": "api", "total": 2}]
    assert "stop_containers" not in docker.ops() and "up" not in docker.ops()
    assert "api: starting the new version beside shop-api-1, out of rotation" in seen.lines


def test_services_start_zero_downtime_skips_a_service_already_up_to_date(tmp_path: Path) -> None:
    docker = FakeEngine(Script(services={"api": {"image": "api:1"}}, containers=[running("api")],
                               config_hashes={"api": "h1"}))
    original = docker.containers

    def labelled(services: tuple[str, ...] = ()) -> list[dict[str, object]]:
        found = original(services)
        for item in found:
            item["Config"]["Labels"]["com.docker.compose.config-hash"] = "h1"  # type: ignore[index]
        return found

    docker.containers = labelled  # type: ignore[method-assign,assignment]
    ctx, seen = phase_context(tmp_path, docker, ZDT, name="services-start")
    services.start(ctx)
    assert "create_beside" not in docker.ops() and "up" in docker.ops()
    assert "api: up to date" in seen.lines
