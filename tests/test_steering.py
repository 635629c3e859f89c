"""The old container's way out of rotation (hosts/steering.py) and the switch's order
(deploy/phases/rollout.py), as logic: the rules written and read back, the connections a
container still holds, and the steps of a switch on fakes. On the real engine:
tests/test_zero_downtime_plain.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fake_host import FakeHost, make_context
from fakes import FakeEngine, Script
from surefoot.deploy.phases import rollout
from surefoot.hosts import steering
from surefoot.hosts.access import Access

LISTEN_AND_TWO = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1
   1: 0300A8C0:1F40 0200A8C0:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 2
   2: 0300A8C0:1F40 0200A8C0:D2F2 01 00000000:00000000 00:00000000 00000000     0        0 3
   3: 0300A8C0:9C40 0500A8C0:1538 01 00000000:00000000 00:00000000 00000000     0        0 4
   4: 0300A8C0:1F40 0200A8C0:D2F4 06 00000000:00000000 00:00000000 00000000     0        0 5
"""


def test_a_rule_is_written_read_back_and_deleted_by_its_tag() -> None:
    rule = steering.Rule("192.168.1.2", "192.168.1.3", "surefoot shop 0123456789ab")
    assert steering.rule_argv("-I", rule) == [
        "iptables", "-w", "5", "-t", "nat", "-I", "PREROUTING", "-d", "192.168.1.2/32", "-p", "tcp",
        "-m", "comment", "--comment", "surefoot shop 0123456789ab", "-j", "DNAT", "--to-destination", "192.168.1.3"]
    listed = ("-P PREROUTING ACCEPT\n"
              '-A PREROUTING -d 192.168.1.2/32 -p tcp -m comment --comment "surefoot shop 0123456789ab" '
              "-j DNAT --to-destination 192.168.1.3\n"
              '-A PREROUTING -d 10.0.0.9/32 -p tcp -m comment --comment "surefoot other 999" -j DNAT '
              "--to-destination 10.0.0.8\n"
              "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n")
    assert steering.parse_rules(listed, "surefoot shop ") == [rule]


def test_only_accepted_connections_count_as_in_flight() -> None:
    # two requests it answers (port 8000 = 0x1F40); its own connection out (to a database) and
    # a closing one (06, TIME_WAIT) do not count
    assert steering.in_flight([LISTEN_AND_TWO, ""]) == 2
    assert steering.in_flight([LISTEN_AND_TWO.split("\n   1:")[0] + "\n"]) == 0


def test_steering_says_why_it_cannot_be_used() -> None:
    nobody = FakeHost(root=False)
    nobody.who = Access(user="ops", groups=("docker",), sudo="password")
    assert "no passwordless sudo" in (steering.Steering(nobody, "shop").unavailable() or "")
    off = FakeHost(files={steering.BRIDGE_NF: "0\n"}, commands=["iptables"])
    assert "br_netfilter is off" in (steering.Steering(off, "shop").unavailable() or "")
    on = FakeHost(files={steering.BRIDGE_NF: "1\n"}, commands=["iptables"])
    assert steering.Steering(on, "shop").unavailable() is None


def _container(cid: str, hash_: str, aliases: list[str], ip: str, status: str = "running") -> dict[str, Any]:
    return {"Id": cid, "Name": f"/shop-api-{cid}", "State": {"Status": status, "Pid": 4000 + len(cid)},
            "Config": {"Labels": {rollout.HASH_LABEL: hash_, "com.docker.compose.service": "api"}},
            "NetworkSettings": {"Networks": {"shop_default": {"Aliases": aliases, "IPAddress": ip}}}}


class SwitchEngine(FakeEngine):
    """Answers containers from a list the switch changes as the real engine would."""

    def __init__(self, items: list[dict[str, Any]], create: list[dict[str, Any]]):
        super().__init__(Script(services={"api": {"image": "api:1"}}, config_hashes={"api": "new"}))
        self.items, self.create = items, create

    def containers(self, services: Any = ()) -> list[dict[str, Any]]:
        return [dict(item) for item in self.items]

    def inspect(self, ids: Any) -> list[dict[str, Any]]:
        return [dict(item) for item in self.items if item["Id"] in ids]

    def create_beside(self, service: str, total: int, on_line: Any) -> int:
        self.items += self.create
        return super().create_beside(service, total, on_line)

    def connect(self, container: str, network: str, aliases: Any = ()) -> None:
        super().connect(container, network, aliases)
        for item in self.items:
            if item["Id"] == container:
                item["NetworkSettings"]["Networks"][network]["Aliases"] = list(aliases)

    def start_containers(self, containers: Any) -> None:
        super().start_containers(containers)
        for item in self.items:
            if item["Id"] in containers:
                item["State"]["Status"] = "running"

    def image_ids(self, images: Any) -> dict[str, str | None]:
        return {image: None for image in images}


def test_a_switch_gates_the_new_container_out_of_rotation_then_steers_the_old_one_out(tmp_path: Path) -> None:
    old = _container("old", "was", ["api", "shop-api-old"], "192.168.1.2")
    new = _container("new", "new", ["api", "shop-api-new"], "192.168.1.3", status="created")
    engine = SwitchEngine([old], [new])
    host = FakeHost(files={steering.BRIDGE_NF: "1\n", "/proc/4003/net/tcp": LISTEN_AND_TWO.split("\n   1:")[0]},
                    commands=["iptables"])
    ctx, seen = make_context(tmp_path, '[phases.services-start]\nzero_downtime = ["api"]\ndrain = "1s"\n',
                             host=host, engine=engine, name="services-start")
    ctx.facts.model = lambda: engine.model()  # type: ignore[method-assign]
    rollout.roll_out(ctx)
    steps = [(op, args) for op, args in engine.calls if op in ("disconnect", "connect", "start_containers",
                                                                "stop_containers", "remove_containers")]
    assert steps[:4] == [
        ("disconnect", {"container": "new", "network": "shop_default"}),
        ("connect", {"container": "new", "network": "shop_default", "aliases": ()}),  # out of rotation
        ("start_containers", {"containers": ("new",)}),
        ("disconnect", {"container": "new", "network": "shop_default"}),
    ]
    assert steps[4] == ("connect", {"container": "new", "network": "shop_default", "aliases": ("api", "shop-api-new")})
    assert steps[5:] == [("stop_containers", {"containers": ("old",), "timeout": 10.0}),
                         ("remove_containers", {"names": ("old",)})]
    inserted = [argv for argv in host.ran if argv[:7] == ("iptables", "-w", "5", "-t", "nat", "-I", "PREROUTING")]
    assert inserted and inserted[0][8] == "192.168.1.2/32" and inserted[0][-1] == "192.168.1.3"
    assert any("new connections to shop-api-old go to shop-api-new" in line for line in seen.lines)
