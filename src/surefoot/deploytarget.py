"""The target a run deploys to, with everything that reaches it: the Docker adapter, the host
(the server), this machine (the control machine: hooks run here), the lock and the state folder.

:func:`open_target` builds it from the choice the command line made (:mod:`surefoot.targets`):
this machine, or a server over SSH (:mod:`surefoot.remote`). The runner is handed it and does
not care which.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from surefoot.compose import Answers, Compose, Target
from surefoot.config import Settings
from surefoot.engine import Engine
from surefoot.errors import PhaseFailed
from surefoot.host import Host, LocalHost
from surefoot.lock import ProjectLock
from surefoot.proc import CancelToken, ProcessRunner
from surefoot.remote import TRANSLATED_SUFFIXES, PathMap, RemoteProcesses, SshHost
from surefoot.ssh import SshConnection
from surefoot.targets import RELEASE_RECORD, TargetChoice


def local_target(settings: Settings) -> Target:
    """The project as the Docker adapter names it: its name, folder, compose and env files."""
    return Target(project_name=settings.project_name, project_dir=settings.project_dir,
                  compose_files=settings.compose_files, env_file=settings.env_file,
                  earlier_env_files=settings.earlier_env_files)


class DeployTarget(Protocol):
    choice: TargetChoice
    state_dir: Path
    cancel: CancelToken
    docker: Compose
    host: Host  # the server
    control: Host  # this machine

    def lock(self) -> AbstractContextManager[None]: ...

    def hold_lock(self) -> None: ...

    def prepare(self, out: Callable[[str], None]) -> None:
        """Before any phase: what the server needs from this machine (the project's files)."""
        ...

    def record(self, release: dict[str, Any]) -> None:
        """The release now running there, for the other control machines."""
        ...

    def running_release(self) -> dict[str, Any] | None:
        """What the target's own record says runs there (None: no record; this machine's
        store is the record)."""
        ...

    def close(self) -> None: ...


class LocalTarget:
    """This machine: compose and the engine here, the state folder beside the project."""

    def __init__(self, settings: Settings, state_dir: Path, cancel: CancelToken, *,
                 ahead: Answers | None = None, docker: Compose | None = None, host: Host | None = None):
        self.choice = TargetChoice("local", None, "")
        self.state_dir = state_dir
        self.cancel = cancel
        processes = ProcessRunner(cancel)
        self.docker = docker or Compose(local_target(settings), processes, ahead=ahead)
        self.host = host or LocalHost(processes)
        self.control = self.host

    def lock(self) -> AbstractContextManager[None]:
        return _held(ProjectLock(self.state_dir))

    def hold_lock(self) -> None:
        raise NotImplementedError("several targets: each is a server")

    def prepare(self, out: Callable[[str], None]) -> None:
        pass

    def record(self, release: dict[str, Any]) -> None:
        pass  # the state store here is the record

    def running_release(self) -> dict[str, Any] | None:
        return None

    def close(self) -> None:
        pass


@contextmanager
def _held(lock: ProjectLock) -> Iterator[None]:
    with lock:
        yield


class ControlBuilt(Compose):
    """A server's adapter whose images are built on this machine's engine, then shipped to the
    server (``docker save | docker load`` through the connection, only the images it lacks):
    ``[targets.NAME] build = "control"``."""

    def __init__(self, *args: Any, conn: SshConnection, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.conn = conn

    def build(self, services: Sequence[str] = (), *, on_line: Callable[[str], None]) -> int:
        """Build this target's images here, then :meth:`deliver` them to the server."""
        here = self.mine(services, lambda model: model.build_services())
        if here is not None:
            if not here:
                on_line("no image to build for the services of this target")
                return 0
            services = here
        code = self.builder().build(services, on_line=on_line)
        if code != 0:
            return code
        model = self.model()
        self.deliver([model.image_name(service) for service in (services or model.build_services())], on_line)
        return 0

    def deliver(self, images: list[str], on_line: Callable[[str], None]) -> None:
        """Ship the images the server lacks (``docker save | docker load``)."""
        from surefoot.imageship import describe, ship_images

        on_line(f"shipping {len(images)} image(s) to {self.conn.target.label}")
        on_line(describe(ship_images(self.reader, self.conn, images, on_line=on_line)))

    def builder(self) -> Compose:
        return Compose(self.target, self.reader)  # this machine's engine

    def for_target(self, target: Target) -> Compose:
        return self.twin(ControlBuilt(target, self.runner, engine=self.engine or False, reader=self.reader,
                                      conn=self.conn))


class RegistryShipped(ControlBuilt):
    """A server's adapter whose images are built here, pushed to a registry the user names,
    and pulled by the server from there (``build = "registry"``); images the server already
    has (the same id) are neither pushed nor pulled."""

    def __init__(self, *args: Any, registry: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.registry = registry

    def deliver(self, images: list[str], on_line: Callable[[str], None]) -> None:
        """Push the images the server lacks to the registry; the server pulls them."""
        from surefoot.imageship import local_image_ids, remote_image_ids

        ids = local_image_ids(self.reader, images)
        there = remote_image_ids(self.conn, images)
        for image in images:
            if there.get(image) == ids.get(image):
                on_line(f"{image}: already on {self.conn.target.label}")
                continue
            name = image.rsplit("/", 1)[-1].split(":")[0]
            reference = f"{self.registry}/{name}:{(ids.get(image) or '').removeprefix('sha256:')[:12]}"
            for argv, runner, what in (
                (["docker", "tag", image, reference], self.reader, "tagging"),
                (["docker", "push", reference], self.reader, "pushing"),
                (["docker", "pull", reference], self.runner, "pulling on the server"),
                (["docker", "tag", reference, image], self.runner, "tagging on the server"),
            ):
                on_line("$ " + " ".join(argv))
                if runner.stream(argv, on_line) != 0:
                    raise PhaseFailed(f"{what} {reference} failed (see the log)")

    def for_target(self, target: Target) -> Compose:
        return self.twin(RegistryShipped(target, self.runner, engine=self.engine or False, reader=self.reader,
                                         conn=self.conn, registry=self.registry))


class SshServer:
    """A server over SSH: compose runs in ``choice.folder`` there (see :mod:`surefoot.remote`)."""

    def __init__(self, settings: Settings, choice: TargetChoice, state_dir: Path, cancel: CancelToken,
                 conn: SshConnection | None = None):
        from surefoot.filesync import Mirror

        assert choice.ssh is not None
        self.settings = settings
        self.choice = choice
        self.state_dir = state_dir
        self.cancel = cancel
        self.conn = conn or SshConnection(choice.ssh)
        self.conn.open()  # raises SshError: one line naming the target
        folder = choice.folder
        self.paths = PathMap([(state_dir, f"{folder}/.surefoot"), (settings.project_dir, folder)])
        excluded = [".git", ".surefoot"]
        if state_dir.is_relative_to(settings.project_dir):
            excluded.append(str(state_dir.relative_to(settings.project_dir)))
        self.mirror = Mirror(self.conn, settings.project_dir, folder, exclude=excluded,
                             private=settings.env_files)
        self._sending = threading.Lock()
        self._held: Any = None  # the locks, while hold_lock holds them
        self.processes = RemoteProcesses(self.conn, cancel, self.paths, folder, before=self._send_named)
        self.host: Host = SshHost(self.processes)
        self.control: Host = LocalHost(ProcessRunner(cancel))
        engine = Engine(self.conn.forward_docker().removeprefix("unix://"))
        adapter: type[Compose] = {"control": ControlBuilt, "registry": RegistryShipped}.get(choice.build, Compose)
        extra: dict[str, Any] = {"conn": self.conn} if choice.build != "target" else {}
        if choice.build == "registry":
            extra["registry"] = choice.registry
        self.docker = adapter(local_target(settings), self.processes, engine=engine,  # type: ignore[arg-type]
                              reader=ProcessRunner(cancel), **extra)
        self.docker.site = f"target {choice.name}"
        self.docker.services_spec = (choice.services, choice.claimed)
        if choice.engine == "swarm":
            from surefoot.swarm import Swarm

            self.docker.swarm = Swarm(settings.project_name, engine, self.processes, ProcessRunner(cancel),
                                      self.conn, choice.nodes, f"target {choice.name}",
                                      registry=choice.registry if choice.build == "registry" else None)

    def lock(self) -> AbstractContextManager[None]:
        """The lock here (the state folder) and on the server; nothing more when
        :meth:`hold_lock` holds both already (a rollout takes every target's first)."""
        from surefoot.remotelock import RemoteLock

        @contextmanager
        def both() -> Iterator[None]:
            if self._held is not None:
                yield
                return
            with ProjectLock(self.state_dir), RemoteLock(self.conn, self.choice.folder, label=self.choice.name,
                                                         host=socket.gethostname(), pid=os.getpid()):
                yield
        return both()

    def hold_lock(self) -> None:
        """Take the locks now and keep them until :meth:`close` (raises LockHeld)."""
        from contextlib import ExitStack

        stack = ExitStack()
        try:
            stack.enter_context(self.lock())
        except BaseException:
            stack.close()
            raise
        self._held = stack

    def prepare(self, out: Callable[[str], None]) -> None:
        for env_file in self.settings.env_files:  # another control machine configured it: use its values
            if not env_file.exists():
                found = self.mirror.fetch(self.paths.word(str(env_file)))
                if found is not None:
                    env_file.touch(mode=0o600)
                    env_file.write_bytes(found)
                    out(f"{env_file.name}: taken from {self.choice.name} (written there by another control machine)")
        report = self.mirror.sync()
        out(f"project files on {self.choice.name}: {report.sent} sent, {report.removed} removed, "
            f"{report.files} in {self.choice.folder}")

    def _send_named(self, argv: Sequence[str]) -> None:
        """Before a command runs there: the env files (configuration may have just written
        them) and the folders of the state files it names (a release's model and copies).
        Phases run side by side: one sender at a time."""
        with self._sending:
            self._send_files(argv)

    def _send_files(self, argv: Sequence[str]) -> None:
        for word in argv:
            path = Path(word)
            if not path.is_absolute() or not path.is_file():
                continue
            if path in self.settings.env_files:
                self.mirror.put(path, self.paths.word(word), mode=0o600)
            elif path.is_relative_to(self.state_dir):
                for file in sorted(p for p in path.parent.rglob("*") if p.is_file()):
                    text_map = self.paths.text if file.suffix in TRANSLATED_SUFFIXES else None
                    self.mirror.put(file, self.paths.word(str(file)), text_map=text_map,
                                    mode=file.stat().st_mode & 0o777)

    def record(self, release: dict[str, Any]) -> None:
        self.host.write_text(f"{self.choice.folder}/{RELEASE_RECORD}", json.dumps(release, indent=2) + "\n")

    def running_release(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.host.read_text(f"{self.choice.folder}/{RELEASE_RECORD}"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def close(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None
        if self.docker.swarm is not None:
            self.docker.swarm.close()
        self.conn.close()


def open_target(settings: Settings, choice: TargetChoice, state_base: Path, cancel: CancelToken, *,
                ahead: Answers | None = None) -> DeployTarget:
    """The target ``choice`` names, connected (a server: its connection open)."""
    state_dir = choice.state_dir(state_base)
    if choice.local:
        return LocalTarget(settings, state_dir, cancel, ahead=ahead)
    if ahead is not None:
        ahead.drop()  # asked of this machine's engine: not the server's
    return SshServer(settings, choice, state_dir, cancel)
