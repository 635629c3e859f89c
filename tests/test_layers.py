"""Images that travel as layers (issue 28), on real test servers: only what a server lacks is
sent, to every server of a batch at once, big layers go through, and a cut transfer resumes.
What a server received is read off its own network interface (``rx_bytes``), not only what
surefoot says it sent."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from conftest import REPO, Project, free_port, kill_and_wait
from servers import Server, ServerPool, loopback_registry

pytestmark = pytest.mark.docker

COMPOSE = """
services:
  api:
    build: ./api
    command: ["python3", "-m", "http.server", "8000"]
    ports: ["127.0.0.1:{port}:8000"]
"""


def received(server: Server) -> int:
    """Bytes the server's network interface has received."""
    return int(server.exec("cat", "/sys/class/net/eth0/statistics/rx_bytes").stdout)


def image_size(name: str) -> int:
    return int(subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", name], capture_output=True,
                              text=True, check=True).stdout)


class Shipping(Project):
    servers: list[Server]

    def teardown(self) -> None:
        for server in self.servers:
            folder = f"/var/lib/surefoot/{self.name}"
            server.ssh("sh", "-c", f"cd {folder} 2>/dev/null && docker compose -p {self.name} down -v --rmi all "
                       f"-t 1; rm -rf {folder}; docker image ls -q 'surefoot.local/layers' | xargs -r docker rmi -f",
                       check=False, timeout=120)
        local = subprocess.run(["docker", "image", "ls", "-q", "--filter", f"reference={self.name}-*"],
                               capture_output=True, text=True).stdout.split()
        if local:
            subprocess.run(["docker", "image", "rm", "-f", *local], capture_output=True)


def project_on(servers: list[Server], folder: Path, api: str | None = None) -> Shipping:
    """The example's API image (Debian, python3, psycopg2, redis: ~340 MB), built here and
    shipped to each of ``servers`` (``api``: another Dockerfile)."""
    name = f"sft-l-{uuid.uuid4().hex[:8]}"
    project = Shipping(folder / name, name, free_port())
    project.servers = servers
    shutil.copytree(REPO / "examples" / "shop" / "api", project.path / "api")
    if api is not None:
        project.write("api/Dockerfile", api)
    project.write("compose.yaml", COMPOSE.format(port=project.port))
    config = f'[project]\nname = "{name}"\n\n[phases.pull-images]\nenabled = false\n'
    for index, server in enumerate(servers):
        config += (f'\n[targets.web{index}]\nhost = "{server.alias}"\nssh_config = "{server.ssh_config}"\n'
                   'build = "control"\n')
    if len(servers) > 1:
        config += '\n[rollout]\nbatch = "100%"\n'
    project.write("surefoot.toml", config)
    return project


@pytest.fixture
def one(test_servers: ServerPool, tmp_path: Path) -> Iterator[Shipping]:
    project = project_on([test_servers.server(0)], tmp_path)
    try:
        yield project
    finally:
        project.teardown()


def change_a_line(project: Project) -> str:
    marker = f"# changed {uuid.uuid4().hex[:8]}"
    code = project.path / "api" / "app" / "server.py"
    code.write_text(code.read_text() + marker + "\n")
    return marker


def test_a_one_line_change_sends_the_server_less_than_a_tenth_of_the_image(one: Shipping) -> None:
    server = one.servers[0]
    first = one.run("deploy", timeout=1200)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    size = image_size(f"{one.name}-api")
    assert size > 250e6  # a large base, as the issue's
    marker = change_a_line(one)
    before = received(server)
    update = one.run("deploy", timeout=1200)
    got = received(server) - before
    assert update.returncode == 0, update.stdout[-3000:] + update.stderr
    assert got < size / 10, f"the server received {got / 1e6:.1f} MB of a {size / 1e6:.0f} MB image"
    assert re.search(r"1 of \d+ layer\(s\) to send", update.stdout), update.stdout[-3000:]
    container = server.ssh("docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={one.name}").stdout
    served = server.ssh("docker", "exec", container.strip(), "tail", "-n", "1", "/app/server.py").stdout
    assert served.strip() == marker  # the change runs there
    # A new configuration over the same layers (a label): no layer sent, only the configuration.
    one.write("api/Dockerfile", (one.path / "api" / "Dockerfile").read_text() + 'LABEL surefoot.test="same layers"\n')
    before = received(server)
    relabelled = one.run("deploy", "--progress", "json", timeout=1200)
    got = received(server) - before
    assert relabelled.returncode == 0, relabelled.stdout[-3000:] + relabelled.stderr
    assert re.search(r"0 of \d+ layer\(s\) to send", relabelled.stdout), relabelled.stdout[-3000:]
    assert got < 2e6, f"the server received {got / 1e6:.2f} MB for an image whose layers it had"
    shipped = [event for event in map(json.loads, relabelled.stdout.splitlines()) if event["type"] == "shipped"]
    assert len(shipped) == 1, relabelled.stdout[-3000:]
    assert shipped[0]["target"] == "web0" and shipped[0]["layers_sent"] == 0
    layers = subprocess.run(["docker", "image", "inspect", "--format", "{{len .RootFS.Layers}}", f"{one.name}-api"],
                            capture_output=True, text=True, check=True).stdout
    assert shipped[0]["layers_skipped"] == int(layers) and 0 < shipped[0]["bytes"] < 1e6
    # A rollback to the one-line change: its image is pinned on the server, nothing travels.
    before = received(server)
    back = one.run("rollback", "--yes", timeout=600)
    got = received(server) - before
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr
    assert got < 1e6 and "layer(s) to send" not in back.stdout, f"{got / 1e6:.2f} MB"
    assert one.status()["current_release"] == 2
    container = server.ssh("docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={one.name}").stdout
    labels = server.ssh("docker", "inspect", "--format", "{{json .Config.Labels}}", container.strip()).stdout
    assert "same layers" not in labels  # release 2's image, not the relabelled one


def test_ship_images_sends_whole_images_as_before(one: Shipping) -> None:
    """``ship = "images"``, the fallback named in the config: a one-line change sends the whole
    image again (docker save | docker load), and it runs there."""
    server = one.servers[0]
    one.write("surefoot.toml", (one.path / "surefoot.toml").read_text().replace(
        'build = "control"\n', 'build = "control"\nship = "images"\n'))
    first = one.run("deploy", timeout=1200)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    size = image_size(f"{one.name}-api")
    marker = change_a_line(one)
    before = received(server)
    update = one.run("deploy", timeout=1200)
    got = received(server) - before
    assert update.returncode == 0, update.stdout[-3000:] + update.stderr
    assert got > size * 0.9, f"the server received {got / 1e6:.1f} MB of a {size / 1e6:.0f} MB image"
    assert "layer(s) to send" not in update.stdout and f"shipping {one.name}-api to" in update.stdout
    container = server.ssh("docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={one.name}").stdout
    served = server.ssh("docker", "exec", container.strip(), "tail", "-n", "1", "/app/server.py").stdout
    assert served.strip() == marker


def test_two_images_sharing_their_base_send_it_once(one: Shipping) -> None:
    """build's two groups (the databases', the others') ship side by side: to one server their
    images go one after the other, so the second finds the base the first sent (found by CI:
    side by side, each sent it, and one's clean-up broke the other's listing)."""
    server = one.servers[0]
    base = "FROM surefoot-test/busybox:1\nRUN head -c 100000000 /dev/urandom > /base.bin\n"  # this test's own
    for service in ("api", "store"):
        one.write(f"{service}/Dockerfile", base + f"RUN echo {service} > /{service}\nCMD [\"sleep\", \"3600\"]\n")
    one.write("compose.yaml", "services:\n  api:\n    build: ./api\n  store:\n    build: ./store\n")
    one.write("surefoot.toml", (one.path / "surefoot.toml").read_text()
              + '\n[phases.database-start]\nservices = ["store"]\n')
    before = received(server)
    result = one.run("deploy", timeout=1200)
    got = received(server) - before
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert got < 150e6, f"the server received {got / 1e6:.0f} MB for two images over one 100 MB base"
    said = re.findall(r"(\d+) of (\d+) layer\(s\) to send \([\d.]+ MB\), (\d+) already there", result.stdout)
    assert len(said) == 2, result.stdout[-3000:]
    assert sorted(int(sent) for sent, _, _ in said)[0] == 1, said  # the second: its own last layer alone
    running = server.ssh("docker", "ps", "--format", "{{.Label \"com.docker.compose.service\"}}", "--filter",
                         f"label=com.docker.compose.project={one.name}").stdout.split()
    assert sorted(running) == ["api", "store"]


def test_a_cut_transfer_resumes_without_sending_what_had_arrived(test_servers: ServerPool, tmp_path: Path) -> None:
    """Two layers of 150 MB: the deployment is killed while the second travels; the next one sends
    the second again and not the first."""
    server = test_servers.server(1)
    big = ("FROM surefoot-test/busybox:1\nRUN head -c 150000000 /dev/urandom > /one\n"
           "RUN head -c 150000000 /dev/urandom > /two\nCMD [\"sleep\", \"3600\"]\n")
    project = project_on([server], tmp_path, api=big)
    project.write("compose.yaml", "services:\n  api:\n    build: ./api\n")
    try:
        before = received(server)
        running = project.start("deploy")
        assert running.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 600
        for line in running.stdout:
            seen.append(line)
            if re.search(r"layer (\d+)/\1, [3-9]\d of 150 MB", line):  # the last, big, layer on its way
                break
            assert time.monotonic() < deadline, "".join(seen[-20:])
        else:
            raise AssertionError("the transfer never reached its last layer: " + "".join(seen[-30:]))
        kill_and_wait(running, signal.SIGKILL)
        cut = received(server) - before
        assert cut > 150e6, f"only {cut / 1e6:.0f} MB had arrived"
        before = received(server)
        resumed = project.run("deploy", timeout=1200)
        again = received(server) - before
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr
        assert re.search(r"1 of \d+ layer\(s\) to send \(150\.0 MB\)", resumed.stdout), resumed.stdout[-3000:]
        assert again < 200e6, f"the resume sent {again / 1e6:.0f} MB: the first layer went again"
    finally:
        project.teardown()


def test_a_gigabyte_layer_goes_through(test_servers: ServerPool, tmp_path: Path) -> None:
    server = test_servers.server(2)
    big = "FROM surefoot-test/busybox:1\nRUN head -c 1073741824 /dev/urandom > /big\nCMD [\"sleep\", \"3600\"]\n"
    project = project_on([server], tmp_path, api=big)
    project.write("compose.yaml", "services:\n  api:\n    build: ./api\n")
    try:
        result = project.run("deploy", timeout=1800)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        assert "of 1074 MB" in result.stdout  # the progress of the long transfer
        size = server.ssh("docker", "image", "inspect", "--format", "{{.Size}}", f"{project.name}-api").stdout
        assert int(size) > 1073741824
    finally:
        project.teardown()


def _shipping_window(log: Path) -> tuple[datetime, datetime]:
    lines = log.read_text().splitlines()
    stamps = [datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")) for line in lines
              if "shipping 1 image(s) to" in line or "shipped to" in line]
    return stamps[0], stamps[-1]


def test_three_servers_each_receive_less_than_a_tenth_and_are_fed_at_once(test_servers: ServerPool,
                                                                          tmp_path: Path) -> None:
    servers = test_servers.start(3)
    project = project_on(servers, tmp_path)
    try:
        first = project.run("deploy", timeout=1800)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr
        size = image_size(f"{project.name}-api")
        change_a_line(project)
        before = [received(server) for server in servers]
        update = project.run("deploy", "--progress", "json", timeout=1800)
        assert update.returncode == 0, update.stdout[-3000:] + update.stderr
        for server, was in zip(servers, before, strict=True):
            got = received(server) - was
            assert got < size / 10, f"{server.alias} received {got / 1e6:.1f} MB of a {size / 1e6:.0f} MB image"
        events = [json.loads(line) for line in update.stdout.splitlines()]  # every line, the rollout's end too
        shipped = {event["target"]: event for event in events if event["type"] == "shipped"}
        assert sorted(shipped) == ["web0", "web1", "web2"], update.stdout[-3000:]
        assert all(event["layers_sent"] == 1 and event["bytes"] < size / 10 for event in shipped.values())
        assert "every target (3) is healthy on the new release" in update.stderr
        windows = [_shipping_window(next((project.path / ".surefoot" / "targets" / f"web{i}" / "logs")
                                          .rglob("deployment-2/*build.log"))) for i in range(3)]
        assert max(start for start, _ in windows) < min(end for _, end in windows), windows  # side by side
    finally:
        project.teardown()


def test_a_batch_building_through_a_registry_pushes_each_image_once(test_servers: ServerPool,
                                                                     tmp_path: Path) -> None:
    """build = "registry" to three servers preparing side by side: one push (three at once
    failed), three pulls."""
    servers = test_servers.start(3)
    small = "FROM surefoot-test/busybox:1\nRUN echo pushed once > /built\nCMD [\"sleep\", \"3600\"]\n"
    project = project_on(servers, tmp_path, api=small)
    project.write("compose.yaml", "services:\n  api:\n    build: ./api\n")
    try:
        with loopback_registry(servers, tmp_path, free_port()) as registry:
            config = (project.path / "surefoot.toml").read_text().replace(
                'build = "control"\n', f'build = "registry"\nregistry = "{registry}/sft"\n')
            project.write("surefoot.toml", config)
            result = project.run("deploy", timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        assert result.stdout.count("$ docker push ") == 1, result.stdout[-3000:]
        assert result.stdout.count("pushed already by this run") == 2
        assert result.stdout.count("$ docker pull ") == 3
    finally:
        project.teardown()
        pushed = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
                                capture_output=True, text=True).stdout.split()
        ours = [image for image in pushed if f"/sft/{project.name}-" in image]  # this machine's tag of the push
        if ours:
            subprocess.run(["docker", "image", "rm", *ours], capture_output=True)
