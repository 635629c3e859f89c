"""The rollout over several targets (deploy/run/fleet.py), on fake targets: the batches, a failure
and what goes back, halt and the resume after it, an interrupted rollout, a target locked or
unreachable before anything changed, and the placement of services and of the migration. The
runners, the store, the releases and the rollbacks are the real ones; each target's engine is a
FakeEngine and its pipeline a scripted one (tests/test_fleet.py runs real servers)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from fakes import FakeEngine, FakeTarget, Script, running
from surefoot.base.errors import Interrupted, LockHeld, PhaseFailed, SurefootError
from surefoot.base.events import NullReporter
from surefoot.config.settings import Settings, load_settings
from surefoot.deploy.api import PhaseContext, PhaseResult, done, up_here
from surefoot.deploy.pipeline import PhaseSpec
from surefoot.deploy.run.checkpoint import DeployOptions
from surefoot.deploy.run.fleet import Fleet, FleetOutcome
from surefoot.proc import CancelToken
from surefoot.store import StateStore
from surefoot.store.lock import Holder
from surefoot.targets.choose import TargetChoice, choose_targets

TARGETS = "".join(f'[targets.web{n}]\nhost = "ssh://root@web{n}"\n' for n in (1, 2, 3))
FAST = ('[phases.health-wait]\nconsecutive = 1\ninterval = "10ms"\ntimeout = "5s"\n'
        '[[phases.health-wait.probes]]\nservice = "web"\n')
NAMES = ("preflight", "prerequisites", "configuration", "pull-images", "build", "database-start",
         "database-migrate", "services-start", "health-wait", "cleanup")


class Servers:
    """Three fake servers and the log of the phases they ran, in order, across all of them."""

    def __init__(self, tmp_path: Path, toml: str = "", services: dict[str, dict[str, str]] | None = None):
        self.project = tmp_path / "project"
        self.project.mkdir()
        (self.project / "compose.yaml").write_text("services: {}\n")
        (self.project / "surefoot.toml").write_text('[project]\nname = "shop"\n' + TARGETS + FAST + toml)
        self.settings: Settings = load_settings(self.project)
        self.state = self.project / ".surefoot"
        self.services = services or {"web": {"image": "shop-web:1"}}
        self.engines = {f"web{n}": self._engine(f"web{n}") for n in (1, 2, 3)}
        self.log: list[tuple[str, str]] = []  # (target, phase)
        self.failing: dict[tuple[str, str], type[Exception]] = {}  # (target, phase) -> what it raises
        self.migrated: list[str] = []
        self.unreachable: set[str] = set()
        self.locked: set[str] = set()
        self.opened: list[FakeTarget] = []
        self._lock = threading.Lock()

    def _engine(self, name: str) -> FakeEngine:
        engine = FakeEngine(Script(services=self.services, images={"shop-web:1": "sha256:v1", "postgres:16": "sha256:pg"},
                                   containers=[running(s) for s in self.services]), "shop", self.project)
        engine.site = name
        return engine

    def release(self, image_id: str) -> None:
        """A new version of the web image, on every server."""
        for engine in self.engines.values():
            engine.script.images["shop-web:1"] = image_id

    def phase(self, name: str) -> Callable[[PhaseContext], PhaseResult]:
        def run(ctx: PhaseContext) -> PhaseResult:
            site = ctx.engine.site
            with self._lock:
                self.log.append((site, name))
            failure = self.failing.get((site, name))
            if failure is Interrupted:
                raise Interrupted(15)
            if failure is not None:
                raise PhaseFailed(f"{name} failed on {site}")
            if name == "database-migrate" and ctx.facts.placement.migrates:
                self.migrated.append(site)
            if name == "services-start":
                up_here(ctx, ctx.out, remove_orphans=True)
            return done()
        return run

    def pipeline(self) -> list[PhaseSpec]:
        flags = {"services-start": {"release_point": True, "rollback_on_failure": True},
                 "health-wait": {"rollback_on_failure": True}}
        return [PhaseSpec(name, self.phase(name), **flags.get(name, {})) for name in NAMES]  # type: ignore[arg-type]

    def open(self, choice: TargetChoice) -> FakeTarget:
        if choice.name in self.unreachable:
            raise SurefootError(f"target {choice.name}: cannot reach the host (connection timed out)")
        holder = Holder(4242, "laptop", "2026-12-06T10:00:00Z") if choice.name in self.locked else None
        target = FakeTarget(choice, choice.state_dir(self.state), self.engines[choice.name], locked_by=holder)
        self.opened.append(target)
        return target

    def deploy(self, **options: bool) -> FleetOutcome:
        self.log.clear()
        choices = choose_targets(self.settings.targets, [], self.project, "shop")
        fleet = Fleet(self.settings, choices, self.state, NullReporter(), CancelToken(), opener=self.open,
                      pipeline=self.pipeline())
        return fleet.deploy(DeployOptions(**options))

    def ran(self, target: str) -> list[str]:
        return [phase for site, phase in self.log if site == target]

    def current(self, target: str) -> int | None:
        with StateStore.open(self.state / "targets" / target / "state.db") as store:
            return store.current_release("shop")

    def states(self, outcome: FleetOutcome) -> dict[str, str]:
        return {m.choice.name: m.state for m in outcome.members}


@pytest.fixture
def servers(tmp_path: Path) -> Servers:
    return Servers(tmp_path)


def test_a_release_reaches_every_target_one_batch_at_a_time_after_all_are_prepared(servers: Servers) -> None:
    outcome = servers.deploy()
    assert outcome.state == "completed", outcome.error
    assert servers.states(outcome) == {"web1": "completed", "web2": "completed", "web3": "completed"}
    for name in ("web1", "web2", "web3"):
        assert servers.ran(name) == list(NAMES)
    # every target prepared (up to build) before any is updated; then one at a time
    first_update = servers.log.index(next(entry for entry in servers.log if entry[1] == "database-start"))
    assert {site for site, phase in servers.log[:first_update] if phase == "build"} == {"web1", "web2", "web3"}
    updates = [site for site, phase in servers.log if phase == "services-start"]
    assert updates == ["web1", "web2", "web3"]
    for name in ("web1", "web2", "web3"):  # each target ran its whole pipeline before the next began
        starts = [i for i, entry in enumerate(servers.log) if entry == (name, "database-start")]
        ends = [i for i, entry in enumerate(servers.log) if entry == (name, "cleanup")]
        assert len(starts) == len(ends) == 1
    assert [servers.log.index((n, "cleanup")) < servers.log.index((m, "database-start"))
            for n, m in (("web1", "web2"), ("web2", "web3"))] == [True, True]
    assert all(target.closed and target.records for target in servers.opened)  # each told what runs there
    assert [servers.current(name) for name in ("web1", "web2", "web3")] == [1, 1, 1]


def test_a_failure_on_web2_brings_web1_back_and_never_touches_web3(servers: Servers) -> None:
    assert servers.deploy().state == "completed"
    servers.release("sha256:v2")
    servers.failing[("web2", "health-wait")] = PhaseFailed
    outcome = servers.deploy()
    assert outcome.state == "rolled-back"
    assert servers.states(outcome) == {"web1": "restored", "web2": "rolled-back", "web3": "untouched"}
    assert outcome.error == "web2: health-wait failed on web2"
    assert "services-start" not in servers.ran("web3")
    # web1 went back by the release's files, gated; web2 by its own runner, after its failed gate
    for name in ("web1", "web2"):
        assert servers.engines[name].args("with_files"), name
    assert [servers.current(name) for name in ("web1", "web2", "web3")] == [1, 1, 1]
    assert "web2" in "\n".join(outcome.matrix()) and "rolled-back" in "\n".join(outcome.matrix())


def test_halt_stops_there_and_the_next_deploy_goes_on_from_the_failed_target(tmp_path: Path) -> None:
    servers = Servers(tmp_path, '[rollout]\non_failure = "halt"\n')
    assert servers.deploy().state == "completed"
    servers.release("sha256:v2")
    servers.failing[("web2", "services-start")] = PhaseFailed
    halted = servers.deploy()
    assert halted.state == "halted"
    # web2 went back by its own runner (its release failed); web1 stays on the new one: halt does
    # nothing more
    assert servers.states(halted) == {"web1": "completed", "web2": "rolled-back", "web3": "untouched"}
    assert [servers.current(name) for name in ("web1", "web2", "web3")] == [2, 1, 1]
    del servers.failing[("web2", "services-start")]
    resumed = servers.deploy()
    assert resumed.state == "completed", resumed.error
    assert servers.ran("web1") == []  # done already: not deployed again
    assert "services-start" in servers.ran("web2") and "services-start" in servers.ran("web3")
    # web2's failed deployment was rolled back: a new one (3); web3's, prepared and paused, resumed (2)
    assert [servers.current(name) for name in ("web1", "web2", "web3")] == [2, 3, 2]


def test_an_interrupted_rollout_goes_on_without_deploying_again_what_it_finished(servers: Servers) -> None:
    assert servers.deploy().state == "completed"
    servers.release("sha256:v2")
    servers.failing[("web2", "health-wait")] = Interrupted
    interrupted = servers.deploy()
    assert interrupted.state == "interrupted"
    assert "services-start" not in servers.ran("web3")
    del servers.failing[("web2", "health-wait")]
    resumed = servers.deploy()
    assert resumed.state == "completed", resumed.error
    assert servers.ran("web1") == []
    assert servers.ran("web2")[0] == "health-wait"  # resumed where it stopped
    assert "services-start" in servers.ran("web3")


def test_nothing_changes_anywhere_when_a_target_is_locked_or_unreachable(servers: Servers) -> None:
    servers.locked.add("web3")
    with pytest.raises(LockHeld, match=r"web3 is locked by another deployment: pid 4242 on laptop.*nothing was changed"):
        servers.deploy()
    assert servers.log == [] and all(target.closed for target in servers.opened)
    servers.locked.clear()
    servers.unreachable.add("web2")
    with pytest.raises(SurefootError, match="cannot reach every target, nothing was changed: web2: target web2"):
        servers.deploy()
    assert servers.log == []


def test_a_target_that_cannot_be_prepared_fails_the_rollout_before_any_is_updated(servers: Servers) -> None:
    servers.failing[("web3", "build")] = PhaseFailed
    outcome = servers.deploy()
    assert outcome.state == "failed"
    assert servers.states(outcome) == {"web1": "untouched", "web2": "untouched", "web3": "failed"}
    assert not any(phase == "database-start" for _, phase in servers.log)


def test_a_percentage_batch_updates_targets_side_by_side(tmp_path: Path) -> None:
    servers = Servers(tmp_path, '[rollout]\nbatch = "50%"\n')  # of 3: 2 at a time
    assert servers.deploy().state == "completed"
    cleanup_of_first = max(servers.log.index((n, "cleanup")) for n in ("web1", "web2"))
    assert servers.log.index(("web3", "database-start")) > cleanup_of_first
    started = [servers.log.index((n, "database-start")) for n in ("web1", "web2")]
    assert max(started) < min(servers.log.index((n, "cleanup")) for n in ("web1", "web2"))  # side by side


def test_the_database_target_goes_first_and_the_migration_runs_once(tmp_path: Path) -> None:
    services = {"db": {"image": "postgres:16"}, "web": {"image": "shop-web:1"}}
    servers = Servers(tmp_path, '[phases.database-migrate]\nservice = "web"\ncommand = ["migrate"]\n', services)
    toml = servers.project / "surefoot.toml"
    toml.write_text(toml.read_text().replace('host = "ssh://root@web3"\n', 'host = "ssh://root@web3"\nservices = ["db"]\n'))
    servers.settings = load_settings(servers.project)
    outcome = servers.deploy()
    assert outcome.state == "completed", outcome.error
    assert [m.choice.name for m in outcome.members] == ["web3", "web1", "web2"]  # the database's target first
    assert [site for site, phase in servers.log if phase == "services-start"] == ["web3", "web1", "web2"]
    assert servers.migrated == ["web1"]  # once a release: on the first target that runs web
    # each target starts its own services, their dependencies elsewhere
    assert servers.engines["web3"].args("up") == [{"services": ("db",), "remove_orphans": True, "no_deps": True}]
    assert servers.engines["web1"].args("up") == [{"services": ("web",), "remove_orphans": True, "no_deps": True}]
