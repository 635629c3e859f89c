"""FakeDocker: the Docker adapter's operations, recorded and answered from a script.

A phase handed a :class:`FakeDocker` (through :func:`phase_context`) runs without an
engine: each operation is appended to ``calls`` as ``(name, arguments)``, its output lines
come from ``script.lines[name]`` and its exit code from ``script.codes[name]`` (0 unless
scripted). Queries answer from the script's containers, images and compose model.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from surefoot.compose import ComposeModel, ContainerState, NoRunningContainer, Target, normalize_image
from surefoot.config import PhaseSettings, load_settings
from surefoot.host import Host
from surefoot.names import OPTIONAL_PHASES, PHASE_NAMES
from surefoot.phase_api import Facts, PhaseContext
from surefoot.proc import CancelToken, Captured

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


class FakeDocker:
    """Stands where :class:`surefoot.compose.Compose` stands; records, never runs."""

    def __init__(self, script: Script | None = None, project_name: str = "shop",
                 project_dir: Path = Path("/srv/shop")) -> None:
        self.script = script or Script()
        self.target = Target(project_name, project_dir, (project_dir / "compose.yaml",))
        self.calls: list[Call] = []
        self.ahead = None
        self.site = "this machine"

    def builder(self) -> FakeDocker:
        return self

    migrates = True
    swarm = None  # the engine is compose (a swarm target's adapter holds its Swarm)

    def runs(self, service: str) -> bool:
        return True

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
        return ["docker", "compose", "--project-name", self.target.project_name, "logs", "--follow"]

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
        return self._run("prune_project_images", on_line, project=self.target.project_name)

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
        return ComposeModel(self.target.project_name, dict(self.script.services), digest="fake",
                            data={"services": self.script.services})

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

    def start_beside(self, service: str, total: int, on_line: Callable[[str], None]) -> int:
        return self._run("start_beside", on_line, service=service, total=total)

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


def phase_context(tmp_path: Path, docker: FakeDocker, toml: str = "", name: str = "phase",
                  host: Host | None = None, **extra: Any) -> tuple[PhaseContext, Seen]:
    """A real PhaseContext on a project folder in ``tmp_path`` (its surefoot.toml is ``toml``),
    with ``docker`` as its adapter, ``host`` as the server (default: a FakeHost that answers
    nothing) and a clock that moves one second a call."""
    from fake_host import FakeHost

    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "compose.yaml").write_text("services: {}\n")
    (project / "surefoot.toml").write_text(f'[project]\nname = "{docker.target.project_name}"\n' + toml)
    settings = load_settings(project)
    seen = Seen()
    ticks = iter(range(10**6))
    facts = Facts(settings, docker, tmp_path / "state")  # type: ignore[arg-type]
    ctx = PhaseContext(
        name=name, settings=settings,
        phase_settings=settings.phases.for_phase(name) if name in PHASE_NAMES + OPTIONAL_PHASES else PhaseSettings(),
        compose=docker,  # type: ignore[arg-type]
        facts=facts, cancel=CancelToken(), clock=lambda: float(next(ticks)), out=seen.lines.append,
        progress=lambda text: None, warn=seen.warnings.append, host=host or FakeHost(), state_dir=tmp_path / "state",
        reached=seen.milestones.append, **extra,
    )
    return ctx, seen


def local_runner(settings: Any, state_dir: Path, reporter: Any, *, pipeline: Any = None, docker: Any = None,
                 host: Any = None, prompter: Any = None) -> Any:
    """A Runner on this machine (the CLI's wiring), its collaborators handed in: a FakeDocker,
    a FakeHost, a scripted prompter. The store stays open for the test's length."""
    from surefoot.deploytarget import LocalTarget
    from surefoot.proc import CancelToken
    from surefoot.runner import STATE_DB, Runner
    from surefoot.state import StateStore

    target = LocalTarget(settings, state_dir, CancelToken(), docker=docker, host=host)
    return Runner(settings, target, StateStore.open(state_dir / STATE_DB), reporter, prompter, pipeline=pipeline)
