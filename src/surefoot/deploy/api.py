"""What a phase sees: its context, its result, and the deployment's shared facts.

Phases and gates import this module, never the pipeline or the runner. A phase is a
function ``run(ctx) -> PhaseResult`` that raises :class:`~surefoot.base.errors.PhaseFailed`
when it cannot do its work; it never touches the state store, and it asks the engine only
through ``ctx.engine`` (:class:`~surefoot.engines.base.Engine`: its operations, never an argv).

Each phase names the inputs it depends on (:data:`InputName`); the runner fingerprints
them so that a completed phase is skipped on resume only when nothing it depends on has
changed.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from surefoot.config.configure import Prompter
from surefoot.config.dockerignore import Matcher, load, sent_files
from surefoot.config.settings import Settings
from surefoot.config.values import PhaseSettings
from surefoot.engines.base import Engine
from surefoot.engines.compose.argv import env_values
from surefoot.engines.compose.model import ComposeModel
from surefoot.hosts.base import Host
from surefoot.proc import CancelToken
from surefoot.targets.placement import Placement

InputName = Literal[
    "compose",  # the resolved compose model (compose config)
    "env",  # the env file's bytes
    "build-context",  # the files of every build context
    "images:database",  # image ids of the database services
    "images:migrate",  # image id of the migration service
    "images:all",  # image ids of every service
    "values",  # the --set values the env file does not hold yet
    "target",  # the target's own settings ([targets.NAME]: where images build, the engine, ...)
]



@dataclass(frozen=True)
class PhaseResult:
    status: Literal["completed", "skipped"]
    note: str | None = None


def done(note: str | None = None) -> PhaseResult:
    return PhaseResult("completed", note)


def skipped(reason: str) -> PhaseResult:
    return PhaseResult("skipped", reason)


@dataclass(frozen=True)
class DockerReport:
    """What keeps Docker and compose v2 from working (preflight asks, prerequisites reads it)."""

    server_version: str | None
    compose_version: str | None
    problems: tuple[str, ...]


class Facts:
    """Inputs of the deployment, computed on first use and shared by the phases.

    Phases may run side by side (pull-images beside build), so the cache is guarded:
    an invalidation waits for a computation in progress, never interleaves with it.
    """

    def __init__(self, settings: Settings, engine: Engine, state_dir: Path | None = None,
                 placement: Placement | None = None, on_model: Callable[[ComposeModel], None] = lambda model: None,
                 target: str = "local"):
        self.settings = settings
        self.target = target  # the target's settings, as one text (its fingerprint)
        self.engine = engine
        self.on_model = on_model  # told each model read (the runner masks the secrets of the files it names)
        self.placement = placement or Placement()  # which services run on this target, and whether it migrates
        self.state_dir = state_dir  # never part of a build context's fingerprint
        self._model: ComposeModel | None = None
        self._images: dict[str, str | None] | None = None
        self._lock = threading.RLock()
        self.docker_report: DockerReport | None = None  # once Docker was asked (kept when it answered)
        self.values: dict[str, str] = {}  # --set KEY=VALUE
        self.project_checked = False  # preflight ran its project checks (compose config, ports) in this run

    def model(self) -> ComposeModel:
        with self._lock:
            if self._model is None:
                self._model = self.engine.model()
                self.on_model(self._model)
            return self._model

    def env_changed(self) -> None:
        """The configuration phase rewrote the env file: the compose model must be read again."""
        with self._lock:
            self._model = None
            self._images = None
            self.engine.forget_answers()

    def images_changed(self) -> None:
        """Pull or build ran: image ids must be read again."""
        with self._lock:
            self._images = None

    def image_ids(self, services: Iterable[str]) -> dict[str, str | None]:
        with self._lock:
            model = self.model()
            if self._images is None:
                names = {name: model.image_name(name) for name in model.services}
                ids = self.engine.image_ids(sorted(set(names.values())))
                self._images = {service: ids[image] for service, image in names.items()}
            images = self._images
        return {service: images.get(service) for service in services}

    def runs(self, service: str) -> bool:
        """Whether ``service`` runs on this target."""
        return self.placement.runs(service, self.model().services)

    def here(self, services: Iterable[str]) -> list[str] | None:
        """``services`` narrowed to those that run on this target; None when every service of
        the project runs here (the model is not read then)."""
        if self.placement.declared is None and not self.placement.claimed:
            return None
        only = self.placement.only(self.model().services)
        return None if only is None else [name for name in services if name in only]

    def database_services(self) -> list[str]:
        """database-start's services: configured, or (not set) those running a known database image."""
        configured = self.settings.phases.database_start.services
        return list(configured) if configured is not None else self.model().database_services()

    def build_services(self) -> list[str]:
        configured = self.settings.phases.build.services
        return list(configured) if configured is not None else self.model().build_services()

    def env_digest(self) -> str:
        """The env file's digest; with several, one digest of each's, in order."""
        digests = [_file_digest(env) for env in self.settings.env_files]
        if not digests:
            return "none"
        if len(digests) == 1:
            return digests[0]
        return hashlib.sha256(" ".join(digests).encode()).hexdigest()

    def build_context_digest(self) -> str:
        """A stamp of what each build receives: its context's files less those its
        ``.dockerignore`` leaves out (the state folder never counts), and its Dockerfile."""
        model = self.model()
        digest = hashlib.sha256()
        for service in sorted(self.build_services()):
            context = model.build_context(service) if service in model.services else None
            digest.update(f"service {service}\n".encode())
            if context is not None:
                dockerfile = model.dockerfile(service)
                matcher, ignore = load(context, dockerfile)
                digest.update(_tree_digest(context, matcher, self.state_dir).encode())
                for extra in (dockerfile, ignore):  # read by the builder even when ignored
                    digest.update(f"{extra}\0{_stamp(extra) if extra else ''}\n".encode())
        return digest.hexdigest()

    def input(self, name: InputName) -> str:
        if name == "compose":
            return self.model().digest
        if name == "env":
            return self.env_digest()
        if name == "build-context":
            return self.build_context_digest()
        if name == "images:database":
            return _digest_mapping(self.image_ids(self.database_services()))
        if name == "images:migrate":
            service = self.settings.phases.database_migrate.service
            return _digest_mapping(self.image_ids([service] if service else []))
        if name == "images:all":
            return _digest_mapping(self.image_ids(self.model().services))
        if name == "target":
            return hashlib.sha256(self.target.encode()).hexdigest()
        if name == "values":
            current = env_values(self.settings.env_files)
            pending: dict[str, str | None] = {
                key: value for key, value in self.values.items() if current.get(key) != value
            }
            return _digest_mapping(pending) if pending else "none"
        raise AssertionError(name)


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"


def _digest_mapping(mapping: dict[str, str | None]) -> str:
    text = "\n".join(f"{k}={v}" for k, v in sorted(mapping.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _stamp(path: Path | str) -> str:
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size}\0{stat.st_mtime_ns}"


def _tree_digest(root: Path, matcher: Matcher | None = None, leave_out: Path | None = None) -> str:
    """Cheap content stamp of what a build context sends: every file's path, size and
    modification time, less what ``matcher`` (its .dockerignore) leaves out and ``leave_out``."""
    digest = hashlib.sha256()
    for rel in sent_files(root, matcher or Matcher([]), leave_out):
        stamp = _stamp(os.path.join(root, rel))
        if stamp != "missing":
            digest.update(f"{rel}\0{stamp}\n".encode())
    return digest.hexdigest()


@dataclass
class PhaseContext:
    """What a phase may use. Built by the runner for each phase run."""

    name: str
    settings: Settings
    phase_settings: PhaseSettings
    engine: Engine
    facts: Facts
    cancel: CancelToken
    clock: Callable[[], float]
    out: Callable[[str], None]  # one line to the phase log and the live view
    progress: Callable[[str], None]  # a transient status (the streak, the states)
    warn: Callable[[str], None]
    host: Host  # the server: commands and files (preflight, prerequisites, host probes and commands)
    deployment_id: int = 0
    state_dir: Path = Path(".surefoot")
    prompter: Prompter | None = None  # None: no terminal, or --non-interactive
    values: dict[str, str] = field(default_factory=dict)  # --set KEY=VALUE
    assume_yes: bool = False
    add_secret: Callable[[str], None] = lambda value: None  # mask this value from now on
    redact: Callable[[str], str] = lambda text: text  # a text with every secret known so far masked
    skip_checks: tuple[str, ...] = ()  # --skip-check NAME
    dry_run: bool = False  # prerequisites: list what would change, change nothing
    expired_tags: list[str] = field(default_factory=list)  # for cleanup: release tags past keeping
    # Announce a milestone of this phase ("database-images"): phases waiting on
    # "<phase>:<milestone>" may start before this phase ends.
    reached: Callable[[str], None] = lambda milestone: None
    control: Host | None = None  # this machine, the control machine (hooks run here); None: host
    where: str = "this machine"  # the host, as messages name it (a server: its target's name)

    @property
    def project_dir(self) -> Path:
        return self.settings.project_dir

    def model(self) -> ComposeModel:
        return self.facts.model()


def up_here(ctx: PhaseContext, on_line: Callable[[str], None], *, engine: Engine | None = None,
            **flags: Any) -> int:
    """``up`` of what runs on this target (on ``engine``, default the context's): the whole
    project, or, where targets share the services out, this target's alone (their dependencies
    run elsewhere: ``no_deps``)."""
    engine = engine or ctx.engine
    here = ctx.facts.here(ctx.model().services)
    if here is None:
        return engine.up(on_line=on_line, **flags)
    if not here:
        on_line("no service of the project runs on this target")
        return 0
    return engine.up(here, on_line=on_line, **{**flags, "no_deps": True})
