"""The edge (of the compose engine): one HAProxy per project, holding the host ports of the ``zero_downtime`` services
that publish ports, forwarding each (TCP: HTTP, TLS, WebSockets or anything) to the service's
current containers. See docs/edge.md for why HAProxy, and how.

The user's compose files keep their ``ports:``; surefoot's override (``STATE/edge/
override.yaml``, its last compose file) takes them off those services, whose containers then
publish nothing: the edge binds the ports, on the host's network. A backend change is a
configuration reload (HAProxy in master-worker mode: the new worker takes the listeners, the
old one finishes its connections and ends), so neither a new connection is refused nor an
established one dropped; the edge container itself is never
recreated by an application update. What it serves is written to ``STATE/edge/edge.json`` for
``status``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from surefoot.base.errors import PhaseFailed
from surefoot.engines.compose.model import ComposeModel

EDGE_FOLDER = "edge"
STATE_FILE = "edge.json"
OVERRIDE_FILE = "override.yaml"
ROLE_LABEL = "surefoot.edge"
HOLD = 3600  # seconds an old worker may keep connections after a reload


@dataclass(frozen=True)
class Frontend:
    """A port the edge holds: ``host_ip:host_port`` forwarded to ``service``'s ``target`` port."""

    service: str
    host_ip: str
    host_port: int
    target: int

    @property
    def label(self) -> str:
        return f"{self.host_ip or '0.0.0.0'}:{self.host_port}->{self.service}:{self.target}"


def frontends(model: ComposeModel, services: Sequence[str]) -> list[Frontend]:
    """The published TCP ports of ``services`` in the user's model (a range or UDP port is
    refused by preflight: :func:`unsupported_ports`)."""
    found = []
    for service in services:
        for port in (model.services.get(service) or {}).get("ports") or []:
            if not isinstance(port, dict) or not port.get("published") or port.get("protocol", "tcp") != "tcp":
                continue
            published = str(port["published"])
            if published.isdigit():
                found.append(Frontend(service, str(port.get("host_ip") or ""), int(published), int(port["target"])))
    return sorted(set(found), key=lambda f: (f.service, f.host_port, f.host_ip))


def unsupported_ports(model: ComposeModel, services: Sequence[str]) -> list[str]:
    """What the edge cannot hold: port ranges and UDP."""
    problems = []
    for service in services:
        for port in (model.services.get(service) or {}).get("ports") or []:
            if not isinstance(port, dict) or not port.get("published"):
                continue
            if port.get("protocol", "tcp") != "tcp":
                problems.append(f"{service}: {port['published']}/{port.get('protocol')} (the edge forwards TCP)")
            elif not str(port["published"]).isdigit():
                problems.append(f"{service}: the port range {port['published']} (list each port)")
    return problems


def edge_services(model: ComposeModel, zero_downtime: Sequence[str]) -> list[str]:
    """The listed services that publish ports (in the user's model): the edge holds them."""
    return [service for service in zero_downtime if frontends(model, [service])]


def override_text(services: Sequence[str]) -> str:
    """The compose file that takes the edge's ports off their services."""
    lines = ["# written by surefoot: the edge holds these services' ports", "services:"]
    for service in services:
        lines += [f"  {json.dumps(service)}:", "    ports: !reset []"]
    return "\n".join(lines) + "\n"


def render(fronts: Sequence[Frontend], backends: Mapping[str, Sequence[tuple[str, str]]], drain: float) -> str:
    """HAProxy's configuration: one frontend per held port, one backend per service port, a
    server per container (``(name, address)``). TCP mode: the protocol is not looked at."""
    lines = [
        "# written by surefoot",
        "global",
        # after a reload, the old worker keeps its connections: to a switched service's old
        # containers until they stop (after drain), to any other service's as long as they last
        # (a WebSocket to a service that did not change is not cut by another's update), an hour at most
        f"    hard-stop-after {max(HOLD, math.ceil(drain))}s",
        "    stats socket /var/run/surefoot-edge.sock mode 600 level admin expose-fd listeners",
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        "    timeout client 1h",
        "    timeout server 1h",
        "    timeout tunnel 1h",
        "",
        "# a listener that is never a port: HAProxy will not run without one, and the edge may",
        "# wait for its first port (held by the old containers until they stop)",
        "frontend surefoot-idle",
        "    bind unix@/var/run/surefoot-edge-idle.sock",
        "    tcp-request connection reject",
    ]
    for front in fronts:
        backend = f"{front.service}-{front.target}"
        address = front.host_ip or "0.0.0.0"
        bind = f"[{address}]:{front.host_port}" if ":" in address else f"{address}:{front.host_port}"
        lines += ["", f"frontend {front.service}-{front.host_ip or 'any'}-{front.host_port}", f"    bind {bind}",
                  f"    default_backend {backend}"]
    for service, target in sorted({(f.service, f.target) for f in fronts}):
        lines += ["", f"backend {service}-{target}", "    balance roundrobin"]
        lines += [f"    server {name} {address}:{target}" for name, address in backends.get(service, ())]
    return "\n".join(lines) + "\n"


def write_state(state_dir: Path, image: str, fronts: Sequence[Frontend], backends: Mapping[str, Sequence[str]]) -> None:
    """What ``status --json`` shows as ``edge`` (removed when there is no edge)."""
    folder = state_dir / EDGE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    data = {"image": image, "ports": [front.label for front in fronts],
            "backends": {service: list(ids) for service, ids in sorted(backends.items())}}
    temporary = folder / (STATE_FILE + ".new")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(folder / STATE_FILE)


def read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / EDGE_FOLDER / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def edge_held_ports(state_dir: Path) -> set[int]:
    """The host ports the edge holds, as its state file says (``ADDRESS:PORT->SERVICE:PORT``)."""
    data = read_state(state_dir) or {}
    held = set()
    for label in data.get("ports") or []:
        port = str(label).split("->", 1)[0].rsplit(":", 1)[-1]
        if port.isdigit():
            held.add(int(port))
    return held


def forget_state(state_dir: Path) -> None:
    (state_dir / EDGE_FOLDER / STATE_FILE).unlink(missing_ok=True)


class WorkerWatch:
    """After a reload: the new worker started (the newest process but the master, PID 1), and
    the older ones gone (their connections finished, or ``hard-stop-after`` ended them)."""

    def __init__(self, listed: list[tuple[int, int]]):
        self.before = {pid for pid, _ in listed}

    def started(self, listed: list[tuple[int, int]]) -> bool:
        return any(pid not in self.before and pid != 1 for pid, _ in listed)

    def drained(self, listed: list[tuple[int, int]]) -> bool:
        """Only the master and the workers started since the reload remain."""
        return self.started(listed) and all(pid == 1 or pid not in self.before for pid, _ in listed)


def wait_until(check: Any, timeout: float, what: str, sleep: Any, clock: Any = time.monotonic) -> None:
    deadline = clock() + timeout
    while not check():
        if clock() > deadline:
            raise PhaseFailed(f"the edge: {what} not within {timeout:g} s")
        sleep(0.1)
