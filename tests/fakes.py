"""FakeEngine: an engine's operations (:class:`surefoot.engines.base.Engine`), recorded and
answered from a script.

A phase handed a :class:`FakeEngine` (through :func:`phase_context`) runs without a Docker
daemon: each operation is appended to ``calls`` as ``(name, arguments)``, its output lines come
from ``script.lines[name]`` and its exit code from ``script.codes[name]`` (0 unless scripted).
Queries answer from the script's containers, images and compose model. mypy checks that it is an
``Engine`` (the assignment at the end of this file; tests/test_architecture.py runs mypy on it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from surefoot.base.errors import LockLost, NoRunningContainer
from surefoot.base.names import OPTIONAL_PHASES, PHASE_NAMES
from surefoot.config.settings import Settings, load_settings
from surefoot.config.values import PhaseSettings
from surefoot.deploy.api import Facts, PhaseContext
from surefoot.engines.base import Engine
from surefoot.engines.compose.argv import ComposeProject
from surefoot.engines.compose.model import ComposeModel, ContainerState, normalize_image
from surefoot.hosts.base import Host
from surefoot.hosts.checks import CheckResult
from surefoot.proc import CancelToken, Captured
from surefoot.store.lock import Holder
from surefoot.targets.choose import TargetChoice
from surefoot.targets.placement import Placement

Call = tuple[str, dict[str, Any]]


@dataclass
class Script:
    """What the fake engine answers."""

    services: dict[str, dict[str, Any]] = field(default_factory=dict)  # the compose model's services
    lines: dict[str, list[str]] = field(default_factory=dict)  # operation -> output lines
    codes: dict[str, int] = field(default_factory=dict)  # operation -> exit code
    images: dict[str, str] = field(default_factory=dict)  # "repo:tag" -> image id
    containers: list[ContainerState] = field(default_factory=list)
    labelled: dict[str, list[str]] = field(default_factory=dict)  # label -> container ids
    wait_codes: dict[str, int] = field(default_factory=dict)  # container -> exit code
    exec_output: dict[tuple[str, ...], Captured] = field(default_factory=dict)  # command -> answer
    unknown_image: str | None = None  # the id of an image not in ``images`` (None: not there)
    server: str | None = "20.10.24"  # the engine's version (None: the daemon does not answer)
    compose: str | None = "2.40.0"  # compose v2's version (None: no compose plugin)
    config_hashes: dict[str, str] = field(default_factory=dict)  # service -> compose config --hash


class FakeEngine:
    """Stands where an engine stands; records, never runs."""

    kind = "compose"

    def __init__(self, script: Script | None = None, project_name: str = "shop",
                 project_dir: Path = Path("/srv/shop")) -> None:
        self.script = script or Script()
        self.project = ComposeProject(project_name, project_dir, (project_dir / "compose.yaml",))
        self.calls: list[Call] = []
        self.site = "this machine"
        self.checks: list[CheckResult] = []  # what preflight_checks answers

    def build_engine(self) -> FakeEngine:
        return self

    def with_files(self, project: ComposeProject) -> FakeEngine:
        self.calls.append(("with_files", {"files": project.compose_files}))
        return self

    def forget_answers(self) -> None:
        pass

    def close(self) -> None:
        self.calls.append(("close", {}))

    def preflight_checks(self, settings: Settings, model: ComposeModel) -> list[CheckResult]:
        return list(self.checks)

    # -- what the test reads ---------------------------------------------------------
    def ops(self) -> list[str]:
        return [name for name, _ in self.calls]

    def args(self, name: str) -> list[dict[str, Any]]:
        return [arguments for op, arguments in self.calls if op == name]

    def _run(self, op: str, on_line: Callable[[str], None] | None = None, **arguments: Any) -> int:
        self.calls.append((op, arguments))
        for line in self.script.lines.get(op, []):
            if on_line is not None:
                on_line(line)
        return self.script.codes.get(op, 0)

    # -- operations --------------------------------------------------------------------
    def up(self, services: Sequence[str] = (), *, on_line: Callable[[str], None], **flags: Any) -> int:
        return self._run("up", on_line, services=tuple(services), **flags)

    def build(self, services: Sequence[str] = (), *, on_line: Callable[[str], None]) -> int:
        return self._run("build", on_line, services=tuple(services))

    def pull(self, services: Sequence[str] = (), *, on_line: Callable[[str], None],
             ignore_buildable: bool = True) -> int:
        return self._run("pull", on_line, services=tuple(services), ignore_buildable=ignore_buildable)

    def run_oneoff(self, service: str, command: Sequence[str], *, name: str, on_line: Callable[[str], None],
                   entrypoint: Sequence[str] | None = None, labels: Mapping[str, str] | None = None) -> None:
        self._run("run_oneoff", on_line, service=service, command=tuple(command), name=name,
                  entrypoint=None if entrypoint is None else tuple(entrypoint), labels=dict(labels or {}))

    def logs(self, container: str, *, on_line: Callable[[str], None], follow: bool = True,
             timeout: float | None = None) -> int:
        return self._run("logs", on_line, container=container, follow=follow, timeout=timeout)

    def logs_command(self, *, follow: bool = True) -> list[str]:
        return ["docker", "compose", "--project-name", self.project.project_name, "logs", "--follow"]

    def logs_tail(self, service: str, lines: int = 20) -> list[str]:
        self.calls.append(("logs_tail", {"service": service, "lines": lines}))
        return self.script.lines.get("logs_tail", [])[-lines:]

    def _running(self, service: str, command: Sequence[str]) -> None:
        if not any(c.service == service and c.state == "running" for c in self.script.containers):
            raise NoRunningContainer(f"no running container of {service} to run {' '.join(command)} in")

    def exec_stream(self, service: str, command: Sequence[str], *, on_line: Callable[[str], None],
                    timeout: float | None = None) -> int:
        self._running(service, command)
        return self._run("exec_stream", on_line, service=service, command=tuple(command), timeout=timeout)

    def exec_capture(self, service: str, command: Sequence[str], *, timeout: float | None = None,
                     container: str | None = None) -> Captured:
        if container is None:
            self._running(service, command)
        self._run("exec_capture", service=service, command=tuple(command), timeout=timeout, container=container)
        return self.script.exec_output.get(tuple(command), Captured(0, "", ""))

    def exec_to_file(self, service: str, command: Sequence[str], path: Path, *,
                     timeout: float | None = None) -> Captured:
        self._running(service, command)
        code = self._run("exec_to_file", service=service, command=tuple(command), path=path)
        path.write_text("\n".join(self.script.lines.get("exec_to_file", [])))
        return Captured(code, "", "backup failed\n" if code else "")

    def remove_images(self, images: Sequence[str], *, on_line: Callable[[str], None]) -> int:
        return self._run("remove_images", on_line, images=tuple(images))

    def prune_project_images(self, *, on_line: Callable[[str], None]) -> int:
        return self._run("prune_project_images", on_line, project=self.project.project_name)

    @contextmanager
    def events(self, on_event: Callable[[str], None], on_end: Callable[[], None] = lambda: None,
               since: float | None = None) -> Iterator[None]:
        self.calls.append(("events", {}))
        for line in self.script.lines.get("events", []):
            on_event(line)
        try:
            yield
        finally:
            on_end()

    def finish_interrupted_recreates(self, out: Callable[[str], None]) -> None:
        self.calls.append(("finish_interrupted_recreates", {}))

    # -- queries ----------------------------------------------------------------------
    def model(self) -> ComposeModel:
        return ComposeModel(self.project.project_name, dict(self.script.services), digest="fake",
                            data={"services": self.script.services})

    def raw_model(self, *, user: bool = False) -> dict[str, Any]:
        return {"services": self.script.services}

    def user_model(self) -> ComposeModel:
        return self.model()

    def start_edge(self, name: str, image: str, config: str, labels: Mapping[str, str]) -> None:
        self.calls.append(("start_edge", {"name": name, "image": image, "config": config}))

    def reload_edge(self, name: str, config: str) -> None:
        self.calls.append(("reload_edge", {"name": name, "config": config}))

    def edge_processes(self, name: str) -> list[tuple[int, int]]:
        return []

    def image_ids(self, images: Sequence[str]) -> dict[str, str | None]:
        return {image: self.script.images.get(normalize_image(image), self.script.unknown_image) for image in images}

    def image_present(self, image: str, *, timeout: float | None = 30) -> bool:
        self.calls.append(("image_present", {"image": image}))
        return bool(self.image_ids([image])[image])

    def compose_version(self, *, timeout: float | None = 30) -> Captured:
        self.calls.append(("compose_version", {}))
        if self.script.compose is None:
            return Captured(1, "", "'compose' is not a docker command")
        return Captured(0, self.script.compose + "\n", "")

    def server_version(self, *, timeout: float | None = 30) -> Captured:
        self.calls.append(("server_version", {}))
        if self.script.server is None:
            return Captured(1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock")
        return Captured(0, self.script.server + "\n", "")

    def daemon_info(self, *, timeout: float | None = 10) -> Captured:
        self.calls.append(("daemon_info", {}))
        return self.server_version(timeout=timeout)

    def engine_clock(self) -> str | None:
        return dt.datetime.now(dt.UTC).isoformat() if self.script.server else None

    # -- start-first updates ----------------------------------------------------------
    def config_hash(self, service: str) -> str:
        return self.script.config_hashes.get(service, "hash-" + service)

    def create_beside(self, service: str, total: int, on_line: Callable[[str], None]) -> int:
        return self._run("create_beside", on_line, service=service, total=total)

    def start_containers(self, containers: Sequence[str]) -> None:
        self.calls.append(("start_containers", {"containers": tuple(containers)}))

    def connect(self, container: str, network: str, aliases: Sequence[str] = ()) -> None:
        self.calls.append(("connect", {"container": container, "network": network, "aliases": tuple(aliases)}))

    def disconnect(self, container: str, network: str) -> None:
        self.calls.append(("disconnect", {"container": container, "network": network}))

    def stop_containers(self, containers: Sequence[str], timeout: float) -> None:
        self.calls.append(("stop_containers", {"containers": tuple(containers), "timeout": timeout}))

    def tag(self, image: str, reference: str) -> None:
        self.calls.append(("tag", {"image": image, "reference": reference}))
        self.script.images[reference] = image

    def wait(self, container: str) -> int:
        self.calls.append(("wait", {"container": container}))
        return self.script.wait_codes.get(container, 0)

    def containers_with_label(self, label: str) -> list[str]:
        return list(self.script.labelled.get(label, []))

    def remove_containers(self, names: Sequence[str]) -> None:
        self.calls.append(("remove_containers", {"names": tuple(names)}))

    def ps(self, services: Sequence[str] = (), *, all: bool = True) -> list[ContainerState]:
        return [c for c in self.script.containers if not services or c.service in services]

    def published_ports(self) -> set[int]:
        return {port for container in self.script.containers for port in container.published}

    def containers(self, services: Sequence[str] = ()) -> list[dict[str, Any]]:
        return [_inspected(c) for c in self.ps(services)]

    def inspect(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        return [_inspected(c) for c in self.script.containers if c.id in ids]


def _inspected(container: ContainerState) -> dict[str, Any]:
    """What ``docker inspect`` would say of a scripted container."""
    state: dict[str, Any] = {"Status": container.state, "ExitCode": container.exit_code, "RestartCount": 0,
                             "OOMKilled": False}
    if container.health:
        state["Health"] = {"Status": container.health}
    return {"Id": container.id or container.name, "Name": "/" + container.name, "State": state,
            "RestartCount": 0,
            "Config": {"Labels": {"com.docker.compose.service": container.service}}}


def running(service: str, number: int = 1, health: str = "") -> ContainerState:
    return ContainerState(f"shop-{service}-{number}", service, "running", health, 0, id=f"{service}{number}")


@dataclass
class Seen:
    """What a phase said: its lines and warnings."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    milestones: list[str] = field(default_factory=list)


def phase_context(tmp_path: Path, engine: FakeEngine, toml: str = "", name: str = "phase",
                  host: Host | None = None, placement: Placement | None = None,
                  **extra: Any) -> tuple[PhaseContext, Seen]:
    """A real PhaseContext on a project folder in ``tmp_path`` (its surefoot.toml is ``toml``),
    with ``engine`` as its engine, ``host`` as the server (default: a FakeHost that answers
    nothing) and a clock that moves one second a call."""
    from fake_host import FakeHost

    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "compose.yaml").write_text("services: {}\n")
    (project / "surefoot.toml").write_text(f'[project]\nname = "{engine.project.project_name}"\n' + toml)
    settings = load_settings(project)
    seen = Seen()
    ticks = iter(range(10**6))
    facts = Facts(settings, engine, tmp_path / "state", placement)
    ctx = PhaseContext(
        name=name, settings=settings,
        phase_settings=settings.phases.for_phase(name) if name in PHASE_NAMES + OPTIONAL_PHASES else PhaseSettings(),
        engine=engine,
        facts=facts, cancel=CancelToken(), clock=lambda: float(next(ticks)), out=seen.lines.append,
        progress=lambda text: None, warn=seen.warnings.append, host=host or FakeHost(), state_dir=tmp_path / "state",
        reached=seen.milestones.append, **extra,
    )
    return ctx, seen


def local_runner(settings: Any, state_dir: Path, reporter: Any, *, pipeline: Any = None, engine: Any = None,
                 host: Any = None, prompter: Any = None) -> Any:
    """A Runner on this machine (the CLI's wiring), its collaborators handed in: a FakeEngine,
    a FakeHost, a scripted prompter. The store stays open for the test's length."""
    from surefoot.deploy.run.runner import STATE_DB, Runner
    from surefoot.proc import CancelToken
    from surefoot.store import StateStore
    from surefoot.targets.open import LocalTarget

    target = LocalTarget(settings, state_dir, CancelToken(), engine=engine, host=host)
    return Runner(settings, target, StateStore.open(state_dir / STATE_DB), reporter, prompter, pipeline=pipeline)



@contextmanager
def _entered(lock: AbstractContextManager[Any]) -> Iterator[None]:
    with lock:
        yield


class FakeTarget:
    """A target that is not reached: its engine a :class:`FakeEngine`, its host a FakeHost, its
    lock the state folder's (as this machine's), its release record kept here. ``unreachable``:
    opening it fails, as a server that does not answer; ``locked_by``: another deployment holds it."""

    def __init__(self, choice: TargetChoice, state_dir: Path, engine: FakeEngine, *,
                 locked_by: Holder | None = None, cancel: CancelToken | None = None) -> None:
        from fake_host import FakeHost

        self.choice = choice
        self.state_dir = state_dir
        self.cancel = cancel or CancelToken()
        self.engine = engine
        self.host: Host = FakeHost()
        self.control: Host = self.host
        self.locked_by = locked_by
        self.records: list[dict[str, Any]] = []
        self.closed = False
        self.lost: LockLost | None = None  # set: the lock on it was lost
        self._held: ExitStack | None = None

    def lock(self) -> AbstractContextManager[None]:
        from surefoot.base.errors import LockHeld
        from surefoot.store.lock import ProjectLock

        if self._held is not None:
            return nullcontext()
        if self.locked_by is not None:
            raise LockHeld(f"target {self.choice.name} is locked by another deployment: {self.locked_by.describe()}",
                           self.locked_by.pid, self.locked_by.host, self.locked_by.since)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return _entered(ProjectLock(self.state_dir))

    def hold_lock(self) -> None:
        stack = ExitStack()
        stack.enter_context(self.lock())
        self._held = stack

    def check_lock(self) -> None:
        if self.lost is not None:
            raise self.lost

    def prepare(self, out: Callable[[str], None]) -> None:
        out(f"project files on {self.choice.name}")

    def record(self, release: dict[str, Any]) -> None:
        self.records.append(release)

    def running_release(self) -> dict[str, Any] | None:
        return self.records[-1] if self.records else None

    def close(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None
        self.closed = True


if TYPE_CHECKING:  # mypy: a FakeEngine is an Engine, a FakeHost a Host
    from fake_host import FakeHost as _FakeHost
    from surefoot.targets.open import Target

    _engine: Engine = FakeEngine()
    _host: Host = _FakeHost()
    _target: Target = FakeTarget(TargetChoice("web1", None, ""), Path("."), FakeEngine())
