"""The edge as logic (engines/compose/edge.py): which ports it holds, the override that takes
them off their services, HAProxy's configuration, the state status shows, and how a reload is
followed. On the real engine: tests/test_edge.py."""

from __future__ import annotations

import json
from pathlib import Path

from surefoot.cli.reports.status import edge_record
from surefoot.engines.compose import edge
from surefoot.engines.compose.model import ComposeModel, edge_processes

MODEL = ComposeModel.from_json("shop", json.dumps({"services": {
    "proxy": {"ports": [{"target": 80, "published": "8080", "host_ip": "127.0.0.1", "protocol": "tcp"},
                        {"target": 443, "published": "8443", "protocol": "tcp"}]},
    "api": {},
    "dns": {"ports": [{"target": 53, "published": "53", "protocol": "udp"}]},
    "many": {"ports": [{"target": 80, "published": "9000-9001", "protocol": "tcp"}]},
}}))


def test_the_edge_holds_the_tcp_ports_of_listed_services_and_refuses_what_it_cannot() -> None:
    assert edge.edge_services(MODEL, ["proxy", "api"]) == ["proxy"]
    fronts = edge.frontends(MODEL, ["proxy"])
    assert [front.label for front in fronts] == ["127.0.0.1:8080->proxy:80", "0.0.0.0:8443->proxy:443"]
    assert edge.unsupported_ports(MODEL, ["dns", "many", "proxy"]) == [
        "dns: 53/udp (the edge forwards TCP)", "many: the port range 9000-9001 (list each port)"]


def test_the_override_takes_the_ports_off_and_the_configuration_forwards_them() -> None:
    assert edge.override_text(["proxy"]).splitlines()[1:] == ["services:", '  "proxy":', "    ports: !reset []"]
    config = edge.render(edge.frontends(MODEL, ["proxy"]), {"proxy": [("abc123", "10.0.0.5")]}, drain=10)
    assert "    bind 127.0.0.1:8080\n    default_backend proxy-80" in config
    assert "    bind 0.0.0.0:8443\n    default_backend proxy-443" in config
    assert "backend proxy-80\n    balance roundrobin\n    server abc123 10.0.0.5:80" in config
    assert "    mode tcp" in config and f"hard-stop-after {edge.HOLD}s" in config
    assert "bind unix@/var/run/surefoot-edge-idle.sock" in config  # HAProxy needs a listener
    v6 = edge.render([edge.Frontend("proxy", "::", 80, 80)], {}, drain=1)
    assert "bind [::]:80" in v6


def test_status_reads_what_the_edge_serves(tmp_path: Path) -> None:
    assert edge_record(tmp_path) is None  # no edge: no key
    edge.write_state(tmp_path, "haproxy:2.8", edge.frontends(MODEL, ["proxy"]), {"proxy": ["c1", "c2"]})
    assert edge_record(tmp_path) == {"image": "haproxy:2.8",
                                     "ports": ["127.0.0.1:8080->proxy:80", "0.0.0.0:8443->proxy:443"],
                                     "backends": {"proxy": ["c1", "c2"]}}
    assert edge.edge_held_ports(tmp_path) == {8080, 8443}
    edge.forget_state(tmp_path)
    assert edge_record(tmp_path) is None and edge.edge_held_ports(tmp_path) == set()


def test_a_reload_is_followed_by_its_workers() -> None:
    before = edge_processes("1 100\n7 200\n")
    watch = edge.WorkerWatch(before)
    assert not watch.started(before)
    both = edge_processes("1 100\n7 200\n9 300\n")
    assert watch.started(both) and not watch.drained(both)  # the old worker still holds connections
    assert watch.drained(edge_processes("1 100\n9 300\n"))
    assert edge_processes("garbage\n1 x\n") == []
