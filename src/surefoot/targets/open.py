"""The target a run deploys to, with everything that reaches it: the engine, the host (the
server), this machine (the control machine: hooks run here), the lock and the state folder.

:func:`open_target` builds it from the choice the command line made (:mod:`surefoot.targets.choose`):
this machine (:class:`LocalTarget`), or a server over SSH (:class:`ServerTarget`: its engine is the
one ``[targets.NAME] engine`` names, from ``names.ENGINES``). The runner is handed it and does not
care which.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any, Protocol

from surefoot.base.errors import ConfigError, StateError, SurefootError
from surefoot.base.text import printable_data
from surefoot.config.settings import Settings
from surefoot.engines.api import DockerApi
from surefoot.engines.base import Engine, ServerLink, engine_class
from surefoot.engines.compose.adapter import Answers, ComposeEngine
from surefoot.engines.compose.argv import ComposeProject
from surefoot.engines.compose.edge import EDGE_FOLDER, OVERRIDE_FILE, override_text
from surefoot.engines.compose.model import ComposeModel
from surefoot.hosts.base import Host
from surefoot.hosts.local import LocalHost
from surefoot.hosts.ssh.connection import SshConnection
from surefoot.hosts.ssh.remote import TRANSLATED_SUFFIXES, PathMap, RemoteProcesses, SshHost
from surefoot.proc import CancelToken, ProcessRunner
from surefoot.store import private_folder
from surefoot.store.lock import ProjectLock
from surefoot.targets.choose import RELEASE_RECORD, TargetChoice


def compose_project(settings: Settings, state_dir: Path | None = None) -> ComposeProject:
    """The project as compose is handed it: its name, folder, compose and env files, and, with
    zero_downtime services, surefoot's override (the edge holds their ports: see engines/compose/edge.py)."""
    override = edge_override(state_dir) if state_dir is not None and settings.phases.services_start.zero_downtime \
        else None
    return ComposeProject(project_name=settings.project_name, project_dir=settings.project_dir,
                          compose_files=settings.compose_files, env_file=settings.env_file,
                          earlier_env_files=settings.earlier_env_files, override=override)


def edge_override(state_dir: Path) -> Path:
    return state_dir / EDGE_FOLDER / OVERRIDE_FILE


def write_override(settings: Settings, engine: Engine, path: Path) -> None:
    """The override that takes the ports off the listed services that publish any (read from
    the user's files as written: their values may come from an env file not written yet). An
    unreadable compose file leaves it empty: preflight then says what is wrong."""
    listed = settings.phases.services_start.zero_downtime
    try:
        services = dict(engine.raw_model(user=True).get("services") or {})
    except SurefootError:
        services = {}
    with_ports = [name for name in listed if (services.get(name) or {}).get("ports")]
    path.parent.mkdir(parents=True, exist_ok=True)
    text = override_text(with_ports) if with_ports else "# written by surefoot: no service publishes through the edge\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


class Target(Protocol):
    """A target opened for a run."""

    @property
    def choice(self) -> TargetChoice: ...
    @property
    def state_dir(self) -> Path: ...
    @property
    def cancel(self) -> CancelToken: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def host(self) -> Host:
        """The server (this machine, for the local target)."""
        ...
    @property
    def control(self) -> Host:
        """This machine: where hooks run."""
        ...

    def lock(self) -> AbstractContextManager[None]: ...

    def hold_lock(self) -> None: ...

    def check_lock(self) -> None:
        """Raises LockLost when the lock this run holds on the target was lost (a server's)."""
        ...

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
                 ahead: Answers | None = None, engine: Engine | None = None, host: Host | None = None):
        self.choice = TargetChoice("local", None, "")
        self.state_dir = state_dir
        self.cancel = cancel
        processes = ProcessRunner(cancel)
        self.engine = engine or ComposeEngine.here(compose_project(settings, state_dir), processes, ahead=ahead)
        if engine is None and settings.phases.services_start.zero_downtime:
            write_override(settings, self.engine, edge_override(state_dir))
        self.host = host or LocalHost(processes)
        self.control = self.host

    def lock(self) -> AbstractContextManager[None]:
        return _held(ProjectLock(self.state_dir))

    def hold_lock(self) -> None:
        raise NotImplementedError("several targets: each is a server")

    def check_lock(self) -> None:
        pass  # the kernel holds this machine's lock for as long as we live

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


class ServerTarget:
    """A server over SSH: the engine works in ``choice.folder`` there (see :mod:`surefoot.hosts.ssh.remote`)."""

    def __init__(self, settings: Settings, choice: TargetChoice, state_dir: Path, cancel: CancelToken,
                 conn: SshConnection | None = None):
        from surefoot.hosts.ssh.mirror import Mirror

        assert choice.ssh is not None
        self.settings = settings
        self.choice = choice
        self.state_dir = state_dir
        self.cancel = cancel
        self.conn = conn or SshConnection(choice.ssh, cancel=cancel)
        self.conn.open()  # raises SshError: one line naming the target
        folder = choice.folder
        self.paths = PathMap([(state_dir, f"{folder}/.surefoot"), (settings.project_dir, folder)])
        excluded = [".git", ".surefoot"]
        if state_dir.is_relative_to(settings.project_dir):
            excluded.append(str(state_dir.relative_to(settings.project_dir)))
        self.mirror = Mirror(self.conn, settings.project_dir, folder, exclude=excluded,
                             private=[p for p in settings.compose_env_files if p.is_relative_to(settings.project_dir)])
        self._sending = threading.Lock()
        self._held: Any = None  # the locks, while hold_lock holds them
        self.processes = RemoteProcesses(self.conn, cancel, self.paths, folder, before=self._send_named)
        self.host: Host = SshHost(self.processes)
        self.control: Host = LocalHost(ProcessRunner(cancel))
        # A user outside the docker group reaches the daemon through sudo: the engine's commands
        # run as root, and its socket (root's and the group's) is not forwarded.
        docker_prefix = self.conn.access().docker_prefix
        api = None if docker_prefix else DockerApi(self.conn.forward_docker().removeprefix("unix://"),
                                                   guard=self._guard)
        link = ServerLink(self.conn, self.processes.elevated(docker_prefix), ProcessRunner(cancel), api,
                          f"target {choice.name}",
                          choice.build, choice.registry, choice.nodes, choice.ship)
        self.engine = engine_class(choice.engine).on_server(compose_project(settings, state_dir), link)
        if settings.phases.services_start.zero_downtime:
            write_override(settings, self.engine, edge_override(state_dir))

    def lock(self) -> AbstractContextManager[None]:
        """The lock here (the state folder) and on the server; nothing more when
        :meth:`hold_lock` holds both already (a rollout takes every target's first). While it is
        held, every command to the server first asks whether it still is (hosts/ssh/lock.py)."""
        from surefoot.hosts.ssh.lock import RemoteLock

        @contextmanager
        def both() -> Iterator[None]:
            if self._held is not None:
                yield
                return
            remote = RemoteLock(self.conn, self.choice.folder, label=self.choice.name, host=socket.gethostname(),
                                pid=os.getpid())
            with ProjectLock(self.state_dir):
                self._make_folder()
                with remote:
                    self.conn.guard, self.processes.fence = remote.check, remote
                    try:
                        yield
                    finally:
                        self.conn.guard, self.processes.fence = _nothing, None
        return both()

    def _make_folder(self) -> None:
        """The project's folder there, owned by the user surefoot logs in as (made through sudo
        when its parent is root's, as /var/lib is). Raises ConfigError (exit 2, nothing changed)
        when it cannot be made: a user without root, saying the two fixes."""
        folder = self.choice.folder
        if self.conn.run(["sh", "-c", 'mkdir -p -- "$1" 2>/dev/null && [ -w "$1" ]', "sh", folder],
                         timeout=30).returncode == 0:
            return
        found = self.conn.access()
        if found.elevate is None:
            raise ConfigError(f"{found.why_not_root(f'target {self.choice.name}')}; it is needed to create "
                              f"{folder}, or create it owned by {found.user} beforehand")
        made = self.conn.run([*found.elevate, "sh", "-c", MAKE_FOLDER, "sh", folder, found.user, found.group],
                             timeout=30)
        if made.returncode != 0:
            raise ConfigError(f"target {self.choice.name}: cannot create {folder}: "
                              f"{made.stderr.strip() or 'exit ' + str(made.returncode)}")

    def _guard(self) -> None:
        self.conn.guard()

    def check_lock(self) -> None:
        self.conn.guard()

    def hold_lock(self) -> None:
        """Take the locks now and keep them until :meth:`close` (raises LockHeld)."""
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
        self.mirror.keep_private(self._secret_files())
        report = self.mirror.sync()
        out(f"project files on {self.choice.name}: {report.sent} sent, {report.removed} removed, "
            f"{report.files} in {self.choice.folder}")

    def _secret_files(self) -> list[Path]:
        """The services' ``env_file:`` files (read from the compose files as written: none when
        they cannot be read yet, which preflight reports): compose reads them, so 0600 there.
        A ``secrets:`` file keeps its own mode: it is bind-mounted, and the container's user
        (often not root: postgres reads its _FILE as postgres) must read it as it does here."""
        try:
            raw = self.engine.raw_model()
        except SurefootError:
            return []
        model = ComposeModel(self.settings.project_name, dict(raw.get("services") or {}), "", raw)
        return [path for path in model.env_files() if "$" not in str(path)]

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
                for file in state_files_to_send(path):
                    text_map = self.paths.text if file.suffix in TRANSLATED_SUFFIXES else None
                    self.mirror.put(file, self.paths.word(str(file)), text_map=text_map,
                                    mode=file.stat().st_mode & 0o777)

    def record(self, release: dict[str, Any]) -> None:
        self.host.write_text(f"{self.choice.folder}/{RELEASE_RECORD}", json.dumps(release, indent=2) + "\n")

    def running_release(self) -> dict[str, Any] | None:
        try:
            data = printable_data(json.loads(self.host.read_text(f"{self.choice.folder}/{RELEASE_RECORD}")))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def close(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None
        self.engine.close()
        self.conn.close()


def state_files_to_send(named: Path) -> list[Path]:
    """The state files a command names and those beside them (a release's model, pins and copies):
    never a release's copies of files outside the project, which on a server are its own."""
    return sorted(path for path in named.parent.rglob("*") if path.is_file()
                  and path.relative_to(named.parent).parts[:2] != ("files", "outside"))


# $1 the folder, $2 $3 its owner and group: its missing parents made as root (0755), then the
# folder itself handed to the user. One that exists is never taken over: someone else's.
MAKE_FOLDER = ('[ ! -e "$1" ] || { echo "$1 exists, and $2 may not write in it: give it to $2 (chown)" >&2; exit 3; }; '
               'mkdir -p -m 0755 -- "$1" && chown -- "$2:$3" "$1"')


def _nothing() -> None:
    pass


def open_target(settings: Settings, choice: TargetChoice, state_base: Path, cancel: CancelToken, *,
                ahead: Answers | None = None) -> Target:
    """The target ``choice`` names, connected (a server: its connection open)."""
    state_dir = choice.state_dir(state_base)
    try:
        private_folder(state_base)  # 0700, even when an older surefoot made it open to all
    except OSError as exc:
        raise StateError(f"{state_base}: cannot create the state folder: {exc.strerror}") from None
    if choice.local:
        return LocalTarget(settings, state_dir, cancel, ahead=ahead)
    if ahead is not None:
        ahead.drop()  # asked of this machine's engine: not the server's
    return ServerTarget(settings, choice, state_dir, cancel)
