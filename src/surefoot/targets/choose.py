"""Where a deployment goes: this machine, or a server reached over SSH.

``[targets.NAME]`` in surefoot.toml declares servers; ``--target NAME`` picks one, and
``--target ssh://[USER@]HOST[:PORT]`` names one ad hoc. With no target declared the one
target is this machine ("local"); with exactly one declared, it is the default.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from surefoot.base.errors import ConfigError, PhaseFailed
from surefoot.base.text import printable_data
from surefoot.config.address import SshAddress, parse_target

LOCAL = "local"
REMOTE_ROOT = "/var/lib/surefoot"
RELEASE_RECORD = ".surefoot/release.json"  # on a server: the release running there, for other control machines
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class TargetDecl(NamedTuple):
    """One ``[targets.NAME]`` table as declared (validated by ``config.TargetSettings``; read
    raw by ``status``, which must start fast)."""

    host: str
    ssh_config: str | None = None
    folder: str | None = None
    build: str = "target"
    registry: str | None = None
    services: tuple[str, ...] | None = None
    engine: str = "compose"
    nodes: tuple[str, ...] = ()
    ship: str = "layers"

    @classmethod
    def from_raw(cls, raw: Any) -> TargetDecl:
        if isinstance(raw, dict):
            services = raw.get("services")
            nodes = raw.get("nodes")
            return cls(str(raw.get("host", "")), raw.get("ssh_config"), raw.get("folder"),
                       str(raw.get("build", "target")), raw.get("registry"),
                       tuple(services) if isinstance(services, list) else None,
                       str(raw.get("engine", "compose")), tuple(nodes) if isinstance(nodes, list) else (),
                       str(raw.get("ship", "layers")))
        return cls(raw.host, raw.ssh_config, raw.folder, raw.build, raw.registry,
                   tuple(raw.services) if raw.services is not None else None, raw.engine, tuple(raw.nodes),
                   raw.ship)


class TargetChoice(NamedTuple):
    """The target of this run. ``ssh`` is None for this machine."""

    name: str
    ssh: SshAddress | None
    folder: str  # the project's folder on the target ("" for this machine: the project folder itself)
    build: str = "target"
    registry: str | None = None  # build = "registry": where images are pushed, and pulled from
    services: tuple[str, ...] | None = None  # only these run there (None: all but those claimed elsewhere)
    claimed: tuple[str, ...] = ()  # the services other targets of the deployment declare as theirs
    engine: str = "compose"  # "swarm": the host is a swarm manager (docker stack deploy)
    nodes: tuple[SshAddress, ...] = ()  # engine = "swarm": the other nodes, to ship images to
    ship: str = "layers"  # how images built here travel: "layers" or "images"

    @property
    def local(self) -> bool:
        return self.ssh is None

    @property
    def host(self) -> str:
        return self.ssh.url if self.ssh is not None else LOCAL

    def describe(self) -> dict[str, str]:
        """``status --json``'s ``target``."""
        return {"name": self.name, "host": self.host}

    def state_dir(self, base: Path) -> Path:
        """Where this target's state lives on this machine: the state folder itself for this
        machine (as always), ``targets/NAME/`` in it for a server."""
        return base if self.local else base / "targets" / self.name


def _declared(name: str, settings: TargetDecl, project_dir: Path, project: str) -> TargetChoice:
    config = None
    if settings.ssh_config is not None:
        config = Path(settings.ssh_config)
        config = config if config.is_absolute() else project_dir / config
        if not config.is_file():
            raise ConfigError(f"targets.{name}.ssh_config: file not found: {config}")
    try:
        ssh = parse_target(settings.host, ssh_config=config, name=name)
    except ConfigError as exc:
        raise ConfigError(f"targets.{name}.host: {exc}") from None
    nodes = []
    for index, node in enumerate(settings.nodes):
        try:
            nodes.append(parse_target(node, ssh_config=config, name=f"{name}.nodes[{index}]"))
        except ConfigError as exc:
            raise ConfigError(f"targets.{name}.nodes[{index}]: {exc}") from None
    return TargetChoice(name, ssh, settings.folder or f"{REMOTE_ROOT}/{project}", settings.build, settings.registry,
                        settings.services, engine=settings.engine, nodes=tuple(nodes), ship=settings.ship)


def choose_target(raw: Mapping[str, Any], flag: str | None, project_dir: Path,
                  project: str) -> TargetChoice:
    """The target ``--target`` names (a declared name, or an ssh:// URL); without the flag,
    the one declared target, or this machine when none is declared. ``raw``: the declared
    targets (``TargetSettings`` or the raw tables)."""
    declared = {name: TargetDecl.from_raw(value) for name, value in raw.items()}
    for name in declared:
        if not _NAME.match(name) or name == LOCAL:
            raise ConfigError(f"targets.{name}: a target's name is letters, digits, '.', '_' and '-' "
                              f"(and not {LOCAL!r}, which names this machine)")
    if flag is None:
        if not declared:
            return TargetChoice(LOCAL, None, "")
        if len(declared) == 1:
            name, settings = next(iter(declared.items()))
            return _declared(name, settings, project_dir, project)
        raise ConfigError(f"several targets are declared ({', '.join(declared)}): choose one with --target NAME")
    if flag == LOCAL:
        return TargetChoice(LOCAL, None, "")
    if flag in declared:
        return _declared(flag, declared[flag], project_dir, project)
    if "://" in flag or "@" in flag:
        ssh = parse_target(flag)
        return TargetChoice(_adhoc_name(ssh), ssh, f"{REMOTE_ROOT}/{project}")
    known = ", ".join([*declared, LOCAL])
    raise ConfigError(f"--target {flag}: no such target (declared: {known}; or give ssh://[USER@]HOST[:PORT])")


def choose_targets(raw: Mapping[str, Any], flags: Sequence[str], project_dir: Path,
                   project: str) -> list[TargetChoice]:
    """The targets of a deployment: those ``--target`` names (repeatable), else every declared
    one (this machine when none is declared)."""
    if flags:
        chosen = [choose_target(raw, flag, project_dir, project) for flag in dict.fromkeys(flags)]
    elif len(raw) > 1:
        chosen = [choose_target(raw, name, project_dir, project) for name in raw]
    else:
        chosen = [choose_target(raw, None, project_dir, project)]
    if len(chosen) > 1 and any(choice.local for choice in chosen):
        raise ConfigError("this machine (local) cannot be one of several targets: declare each server")
    if len(chosen) > 1:  # each target knows which services the others declare as theirs
        chosen = [c._replace(claimed=tuple(sorted({s for o in chosen if o is not c
                                                                for s in o.services or ()})))
                  for c in chosen]
    return chosen


def _adhoc_name(ssh: SshAddress) -> str:
    """A name for a target given by URL: its host (and port), safe as a folder name."""
    name = ssh.host + (f"-{ssh.port}" if ssh.port is not None else "")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def server_view(choice: TargetChoice, project: str) -> dict[str, Any]:
    """What a server itself says (for ``status``): who holds its lock, which release runs
    there, and for a swarm its services (``project`` is the stack); ``error`` when it cannot be asked."""
    from surefoot.hosts.ssh.args import SshError
    from surefoot.hosts.ssh.connection import SshConnection
    from surefoot.hosts.ssh.lock import remote_holder

    assert choice.ssh is not None
    try:
        with SshConnection(choice.ssh) as conn:
            holder = remote_holder(conn, choice.folder)
            found = conn.run(["cat", "--", f"{choice.folder}/{RELEASE_RECORD}"], timeout=30)
            services = None
            if choice.engine == "swarm":
                from surefoot.engines.swarm.state import stack_view

                services = printable_data(stack_view(conn, project))
    except (SshError, PhaseFailed) as exc:
        return {"error": str(exc)}
    release = None
    if found.returncode == 0:
        with contextlib.suppress(ValueError):
            release = printable_data(json.loads(found.stdout))  # the server's text: no escape sequences
    lock = None if holder is None else {"pid": holder.pid, "host": holder.host, "since": holder.since}
    view: dict[str, Any] = {"lock": lock, "release": release if isinstance(release, dict) else None}
    if services is not None:
        view["services"] = services
    return view
