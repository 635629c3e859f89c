"""The runner's scheduling of phases side by side, driven with stand-in phase functions.

The phases here are plain functions, so these tests need no Docker; the concurrency
is proven with barriers and events (a phase waits for its sibling to have started),
never with timings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from fakes import local_runner
from surefoot.base import events
from surefoot.base.errors import PhaseFailed
from surefoot.config.settings import load_settings
from surefoot.deploy.api import PhaseContext, PhaseResult, done
from surefoot.deploy.pipeline import PhaseSpec, ordered
from surefoot.deploy.run.checkpoint import DeployOptions, DeployOutcome
from surefoot.deploy.run.runner import Runner
from surefoot.store import StateStore

WAIT = 10.0  # seconds a phase waits for its sibling before calling the test failed

Phase = Callable[[PhaseContext], PhaseResult]


class Recorder:
    def __init__(self) -> None:
        self.events: list[events.Event] = []
        self._lock = threading.Lock()

    def emit(self, event: events.Event) -> None:
        with self._lock:
            self.events.append(event)

    def paused(self) -> object:
        raise AssertionError("no prompt expected")

    def started(self) -> list[str]:
        return [e.phase for e in self.events if isinstance(e, events.PhaseStarted)]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: nginx\n")
    return tmp_path


def noop(ctx: PhaseContext) -> PhaseResult:
    return done()


def pipeline(pull: Phase = noop, build: Phase = noop, database: Phase = noop, migrate: Phase = noop) -> list[PhaseSpec]:
    """The real pipeline's shape around the images: pull beside build, the databases after
    the database-images milestone of each, the migration after all three."""
    return [
        PhaseSpec("preflight", noop),
        PhaseSpec("pull-images", pull, after=("preflight",), announces=("database-images",)),
        PhaseSpec("build", build, after=("preflight",), announces=("database-images",)),
        PhaseSpec("database-start", database, after=("pull-images:database-images", "build:database-images")),
        PhaseSpec("database-migrate", migrate, after=("database-start", "pull-images", "build")),
    ]


def deploy(project: Path, specs: list[PhaseSpec]) -> tuple[DeployOutcome, Recorder]:
    recorder = Recorder()
    runner = local_runner(load_settings(project), project / ".surefoot", recorder, pipeline=specs)
    return runner.deploy(DeployOptions(interactive=False)), recorder


def runs(project: Path, deployment: int) -> list[tuple[str, str]]:
    with StateStore.open(project / ".surefoot" / "state.db") as store:
        return [(run.phase, run.status) for run in store.phase_runs(deployment)]


def test_pull_and_build_run_side_by_side(project: Path) -> None:
    both = threading.Barrier(2, timeout=WAIT)  # each passes only once the other has started

    def meet(ctx: PhaseContext) -> PhaseResult:
        both.wait()
        return done()

    outcome, recorder = deploy(project, pipeline(pull=meet, build=meet))
    assert outcome.state == "completed", outcome.error
    assert recorder.started()[:1] == ["preflight"]
    assert recorder.started()[-1] == "database-migrate"


def test_databases_start_while_the_rest_still_builds(project: Path) -> None:
    databases_up = threading.Event()

    def build(ctx: PhaseContext) -> PhaseResult:
        ctx.reached("database-images")
        if not databases_up.wait(WAIT):
            raise PhaseFailed("database-start did not start while build ran")
        return done()

    def database(ctx: PhaseContext) -> PhaseResult:
        databases_up.set()
        return done()

    outcome, _ = deploy(project, pipeline(build=build, database=database))
    assert outcome.state == "completed", outcome.error


def test_a_failure_lets_the_sibling_finish_and_starts_nothing_new(project: Path) -> None:
    pull_failed = threading.Event()

    def pull(ctx: PhaseContext) -> PhaseResult:
        pull_failed.set()
        raise PhaseFailed("registry unreachable")

    def build(ctx: PhaseContext) -> PhaseResult:
        assert pull_failed.wait(WAIT)
        return done("built after pull failed")

    outcome, _ = deploy(project, pipeline(pull=pull, build=build))
    assert (outcome.state, outcome.failed_phase, outcome.error) == ("failed", "pull-images", "registry unreachable")
    assert outcome.deployment_id is not None
    assert dict(runs(project, outcome.deployment_id)) == {
        "preflight": "completed", "pull-images": "failed", "build": "completed",
    }

    # The resume runs the failed phase and what waits for it; the build is not redone.
    resumed, recorder = deploy(project, pipeline())
    assert resumed.state == "completed"
    assert resumed.deployment_id == outcome.deployment_id
    assert sorted(recorder.started()) == ["database-migrate", "database-start", "pull-images"]


def test_a_phase_waiting_on_a_milestone_is_not_redone_when_that_phase_reruns(project: Path) -> None:
    databases_done = threading.Event()
    attempts = {"build": 0}

    def build(ctx: PhaseContext) -> PhaseResult:
        attempts["build"] += 1
        ctx.reached("database-images")
        if attempts["build"] == 1:
            assert databases_done.wait(WAIT)
            raise PhaseFailed("the api image failed to build")
        return done()

    def database(ctx: PhaseContext) -> PhaseResult:
        databases_done.set()
        return done()

    first, _ = deploy(project, pipeline(build=build, database=database))
    assert (first.state, first.failed_phase) == ("failed", "build")
    assert first.deployment_id is not None
    assert ("database-start", "completed") in runs(project, first.deployment_id)

    second, recorder = deploy(project, pipeline(build=build, database=database))
    assert second.state == "completed", second.error
    assert sorted(recorder.started()) == ["build", "database-migrate"]
    skipped = {e.phase: e.reason for e in recorder.events if isinstance(e, events.PhaseSkipped)}
    assert skipped["database-start"] == "done before, inputs unchanged"


def test_an_interruption_stops_every_running_phase(project: Path) -> None:
    both = threading.Barrier(3, timeout=WAIT)
    runner_box: list[Runner] = []

    def blocked(ctx: PhaseContext) -> PhaseResult:
        both.wait()
        ctx.cancel.sleep(WAIT)  # woken by the cancel, raises Interrupted
        raise AssertionError("not interrupted")

    specs = pipeline(pull=blocked, build=blocked)
    recorder = Recorder()
    runner = local_runner(load_settings(project), project / ".surefoot", recorder, pipeline=specs)
    runner_box.append(runner)

    def interrupt() -> None:
        both.wait()
        runner.cancel.cancel(2)

    threading.Thread(target=interrupt).start()
    outcome = runner.deploy(DeployOptions(interactive=False))
    assert (outcome.state, outcome.signum) == ("interrupted", 2)
    assert outcome.deployment_id is not None
    assert dict(runs(project, outcome.deployment_id)) == {
        "preflight": "completed", "pull-images": "interrupted", "build": "interrupted",
    }


def test_the_order_must_name_earlier_phases() -> None:
    specs = [PhaseSpec("build", noop, after=("database-start",)), PhaseSpec("database-start", noop)]
    with pytest.raises(ValueError, match="build waits for database-start, which is not an earlier phase"):
        ordered(specs)
    typo = [PhaseSpec("build", noop), PhaseSpec("database-start", noop, after=("build:database-image",))]
    with pytest.raises(ValueError, match="which build does not announce"):
        ordered(typo)
    assert ordered(pipeline())["database-start"] == ("pull-images:database-images", "build:database-images")
    assert ordered([PhaseSpec("preflight", noop), PhaseSpec("build", noop)])["build"] == ("preflight",)


def test_the_databases_wait_for_their_pulled_images_but_not_for_the_other_pulls(project: Path) -> None:
    order: list[str] = []
    databases_up = threading.Event()

    def pull(ctx: PhaseContext) -> PhaseResult:
        ctx.cancel.sleep(0.2)  # long enough for a scheduler that ignored the order to start database-start
        order.append("databases' images pulled")
        ctx.reached("database-images")
        if not databases_up.wait(WAIT):  # the other images are still being pulled
            raise PhaseFailed("database-start did not start while the pull went on")
        return done()

    def build(ctx: PhaseContext) -> PhaseResult:
        ctx.reached("database-images")
        return done()

    def database(ctx: PhaseContext) -> PhaseResult:
        order.append("database started")
        databases_up.set()
        return done()

    outcome, _ = deploy(project, pipeline(pull=pull, build=build, database=database))
    assert outcome.state == "completed", outcome.error
    assert order == ["databases' images pulled", "database started"]


def test_a_phase_runs_again_when_a_phase_it_waits_for_in_full_ran_again(project: Path) -> None:
    """database-migrate waits for all of build: a build that reruns on resume makes it rerun,
    even though it had completed."""
    migrated = threading.Event()

    def build(ctx: PhaseContext) -> PhaseResult:
        ctx.reached("database-images")
        return done()

    def migrate(ctx: PhaseContext) -> PhaseResult:
        migrated.set()
        return done()

    def broken_late(ctx: PhaseContext) -> PhaseResult:
        raise PhaseFailed("services did not start")

    specs = [*pipeline(build=build, migrate=migrate), PhaseSpec("services-start", broken_late)]
    first, _ = deploy(project, specs)
    assert (first.state, first.failed_phase) == ("failed", "services-start")
    assert migrated.is_set()

    # Mark build as interrupted, as if a kill had landed in it: on resume it runs again.
    with StateStore.open(project / ".surefoot" / "state.db") as store:
        assert first.deployment_id is not None
        build_run = store.latest_runs(first.deployment_id)["build"]
        store.finish_phase(build_run.id, "interrupted")

    second, recorder = deploy(project, [*pipeline(build=build, migrate=migrate), PhaseSpec("services-start", noop)])
    assert second.state == "completed", second.error
    started = {e.phase: e.reason for e in recorder.events if isinstance(e, events.PhaseStarted)}
    assert started == {
        "build": "resuming after it was interrupted",
        "database-migrate": "build ran again",
        "services-start": "resuming after it was failed",
    }
