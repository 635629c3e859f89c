"""Steering a container's new connections to another, on the engine's host: how an old
container leaves rotation without losing a request.

A proxy that finds a service by Docker's DNS keeps resolving the old container's address until
that container leaves the network, and leaving it cuts every connection it holds (its interface
goes). So the old container is taken out of rotation another way first: a DNAT rule in the
host's ``nat PREROUTING`` (bridged traffic passes it where ``br_netfilter`` is on, as Docker
sets it) sends every *new* connection to its address to the new container instead, while the
connections it holds finish; conntrack keeps both kinds whole, the steered ones even after the
old container is gone. Once it holds none (or ``drain`` passed) it is stopped; the rule stays
until proxies have stopped using the address (their DNS caches: ``drain`` again), then goes.

Each rule carries a comment ``surefoot PROJECT OLD-ID`` so that a run cut by ``kill -9`` finds
and removes what it left (:meth:`Steering.forget_except`). Where rules cannot be written (not
root and no passwordless sudo, no iptables, br_netfilter off), :meth:`Steering.unavailable` says
why and the switch falls back to taking the old container off its networks.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from surefoot.base.errors import CommandNotFound
from surefoot.hosts.base import Host

BRIDGE_NF = "/proc/sys/net/bridge/bridge-nf-call-iptables"


@dataclass(frozen=True)
class Rule:
    old: str  # the old container's address
    new: str  # where its new connections go
    tag: str  # "surefoot PROJECT OLD-ID"


def rule_argv(operation: str, rule: Rule) -> list[str]:
    """``-I`` (insert, first) or ``-D`` (delete) ``rule`` in nat PREROUTING."""
    return ["iptables", "-w", "5", "-t", "nat", operation, "PREROUTING", "-d", f"{rule.old}/32", "-p", "tcp",
            "-m", "comment", "--comment", rule.tag, "-j", "DNAT", "--to-destination", rule.new]


def list_argv() -> list[str]:
    return ["iptables", "-w", "5", "-t", "nat", "-S", "PREROUTING"]


def parse_rules(text: str, prefix: str) -> list[Rule]:
    """The rules of ``iptables -S`` whose comment starts with ``prefix``."""
    found = []
    for line in text.splitlines():
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        fields = dict(zip(words, [*words[1:], ""], strict=True))
        tag, old, new = fields.get("--comment", ""), fields.get("-d", ""), fields.get("--to-destination", "")
        if tag.startswith(prefix) and old and new:
            found.append(Rule(old.removesuffix("/32"), new, tag))
    return found


def in_flight(tables: Sequence[str]) -> int:
    """Connections a process's network namespace has accepted and still holds: ESTABLISHED
    sockets (``01``) on a port it listens on (``0A``), from ``/proc/PID/net/tcp`` and ``tcp6``."""
    listening: set[str] = set()
    established: list[str] = []
    for text in tables:
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 4:
                continue
            port = fields[1].rsplit(":", 1)[-1]
            if fields[3] == "0A":
                listening.add(port)
            elif fields[3] == "01":
                established.append(port)
    return sum(1 for port in established if port in listening)


class Steering:
    """The rules of one project on the engine's host (``host``: the server, or this machine)."""

    def __init__(self, host: Host, project: str):
        self.host = host
        self.root = host.as_root()
        self.prefix = f"surefoot {project} "

    def unavailable(self) -> str | None:
        """None when rules can be written; else why not, in a few words."""
        if self.root is None:
            return "surefoot is not root there and has no passwordless sudo"
        try:
            enabled = self.host.read_text(BRIDGE_NF).strip() == "1"
        except OSError:
            enabled = False
        if not enabled:
            return f"br_netfilter is off ({BRIDGE_NF} is not 1)"
        if not self.host.which("iptables"):
            return "iptables is not installed"
        return None

    def rules(self) -> list[Rule]:
        assert self.root is not None
        try:
            listed = self.root.run(list_argv(), timeout=30)
        except CommandNotFound:
            return []
        return parse_rules(listed.stdout, self.prefix) if listed.returncode == 0 else []

    def steer(self, old_id: str, pairs: Sequence[tuple[str, str]]) -> None:
        """New connections to each old address go to its new one (replacing earlier rules for
        ``old_id``). Raises OSError when a rule cannot be written."""
        assert self.root is not None
        self.forget(old_id)
        for old, new in pairs:
            result = self.root.run(rule_argv("-I", Rule(old, new, self.prefix + old_id[:12])), timeout=30)
            if result.returncode != 0:
                raise OSError(f"iptables: {result.stderr.strip() or 'exit ' + str(result.returncode)}")

    def forget(self, old_id: str) -> None:
        self._delete([rule for rule in self.rules() if rule.tag == self.prefix + old_id[:12]])

    def forget_except(self, keep: Collection[str]) -> int:
        """Remove the project's rules for old containers not in ``keep`` (a cut run's); how many."""
        stale = [rule for rule in self.rules() if rule.tag.removeprefix(self.prefix) not in {k[:12] for k in keep}]
        self._delete(stale)
        return len(stale)

    def _delete(self, rules: Sequence[Rule]) -> None:
        assert self.root is not None
        for rule in rules:
            self.root.run(rule_argv("-D", rule), timeout=30)

    def in_flight(self, pid: int) -> int | None:
        """The connections the container of ``pid`` has accepted and still holds (None: cannot
        be read)."""
        reader = self.root or self.host
        tables = []
        for name in ("tcp", "tcp6"):
            try:
                tables.append(reader.read_text(f"/proc/{pid}/net/{name}"))
            except OSError:
                if name == "tcp":
                    return None
        return in_flight(tables)
