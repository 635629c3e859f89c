"""Shipping images without a registry (surefoot.engines.compose.ship): `docker save | ssh TARGET docker
load` from the local engine to a real test server's engine, skipped when the target has the
same image id. Images are built locally from the session's busybox image with unique tags and
removed afterwards; the test server goes with the session."""

from __future__ import annotations

import shlex
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from servers import Server, ServerPool
from surefoot.base.errors import Interrupted
from surefoot.config.address import parse_target
from surefoot.engines.compose.ship import ShipError, describe, local_image_ids, remote_image_ids, ship_images
from surefoot.hosts.ssh.connection import SshConnection
from surefoot.proc import CancelToken, ProcessRunner

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(test_servers: ServerPool) -> Server:
    return test_servers.server(0)


@pytest.fixture
def conn(server: Server) -> Iterator[SshConnection]:
    connection = SshConnection(parse_target(server.alias, ssh_config=server.ssh_config, name="web1"))
    connection.open()
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def runner() -> ProcessRunner:
    return ProcessRunner(CancelToken())


@pytest.fixture
def build(busybox_image: str, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Builds a local image FROM busybox with a unique tag; each build gets new content (a new
    id). Removes every tag it made from the local engine at the end."""
    made: list[str] = []

    def make(tag: str | None = None, megabytes: int = 0) -> str:
        tag = tag or f"surefoot-test/ship-{uuid.uuid4().hex[:10]}:1"
        context = tmp_path / uuid.uuid4().hex
        context.mkdir()
        (context / "stamp").write_text(uuid.uuid4().hex)
        steps = [f"FROM {busybox_image}", "COPY stamp /stamp"]
        if megabytes:  # random bytes, so the size is real (no compression in docker save)
            steps.append(f"RUN head -c {megabytes * 1024 * 1024} /dev/urandom > /blob")
        (context / "Dockerfile").write_text("\n".join(steps) + "\n")
        subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], check=True, capture_output=True,
                       timeout=300)
        made.append(tag)
        return tag

    yield make
    for tag in dict.fromkeys(made):
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)


def local_id(image: str) -> str:
    return subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", image], check=True,
                          capture_output=True, text=True).stdout.strip()


def remote_id(server: Server, image: str) -> str | None:
    result = server.ssh("docker", "image", "inspect", "--format", "{{.Id}}", image, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def test_ships_once_then_skips_and_ships_a_rebuild_again(
        runner: ProcessRunner, conn: SshConnection, server: Server, build: Callable[..., str]) -> None:
    image = build()
    lines: list[str] = []

    first = ship_images(runner, conn, [image], on_line=lines.append)
    assert first.shipped == (image,) and first.present == ()
    assert first.bytes > 1024 * 1024  # busybox's layer went through
    assert remote_id(server, image) == local_id(image)
    assert any(f"Loaded image: {image}" in line for line in lines), lines

    second = ship_images(runner, conn, [image], on_line=lines.append)
    assert second.shipped == () and second.present == (image,) and second.bytes == 0
    assert "already on the target" in describe(second)

    old = local_id(image)
    build(image)  # the same tag, rebuilt: another id
    assert local_id(image) != old
    third = ship_images(runner, conn, [image], on_line=lines.append)
    assert third.shipped == (image,)
    assert remote_id(server, image) == local_id(image) != old


def test_several_images_go_in_one_stream_and_present_ones_stay(
        runner: ProcessRunner, conn: SshConnection, server: Server, build: Callable[..., str]) -> None:
    there, a, b = build(), build(), build()
    ship_images(runner, conn, [there], on_line=lambda _: None)
    lines: list[str] = []

    report = ship_images(runner, conn, [a, there, b, a], on_line=lines.append)
    assert report.shipped == (a, b) and report.present == (there,)
    assert sum("Loaded image:" in line for line in lines) == 2, lines  # one docker load
    assert {image: remote_id(server, image) for image in (a, b, there)} == \
           {image: local_id(image) for image in (a, b, there)}


def test_ids_are_read_on_both_sides_in_one_command(
        runner: ProcessRunner, conn: SshConnection, build: Callable[..., str]) -> None:
    image = build()
    unknown = f"surefoot-test/absent-{uuid.uuid4().hex[:8]}:1"
    assert local_image_ids(runner, [image, unknown]) == {image: local_id(image), unknown: None}
    assert remote_image_ids(conn, [image, unknown]) == {image: None, unknown: None}
    ship_images(runner, conn, [image], on_line=lambda _: None)
    assert remote_image_ids(conn, [unknown, image]) == {unknown: None, image: local_id(image)}
    assert remote_image_ids(conn, []) == {}


def test_an_unknown_local_image_fails_clearly_before_sending(
        runner: ProcessRunner, conn: SshConnection, server: Server, build: Callable[..., str]) -> None:
    image = build()
    unknown = f"surefoot-test/absent-{uuid.uuid4().hex[:8]}:1"
    with pytest.raises(ShipError) as caught:
        ship_images(runner, conn, [image, unknown], on_line=lambda _: None)
    message = str(caught.value)
    assert "\n" not in message
    assert unknown in message and "web1" in message and "no such image" in message
    assert remote_id(server, image) is None  # nothing was sent


@contextmanager
def docker_load_replaced(server: Server, body: str) -> Iterator[None]:
    """On the server, `docker load` runs ``body`` (sh) instead; other commands reach docker."""
    wrapper = f'#!/bin/sh\nif [ "$1" = load ]; then\n{body}\nfi\nexec /usr/bin/docker "$@"\n'
    server.exec("python3", "-c", f"open('/usr/local/bin/docker', 'w').write({wrapper!r})")
    server.exec("chmod", "+x", "/usr/local/bin/docker")
    try:
        yield
    finally:
        server.exec("rm", "-f", "/usr/local/bin/docker")


def test_a_failing_load_names_the_target_and_image(
        runner: ProcessRunner, conn: SshConnection, server: Server, build: Callable[..., str]) -> None:
    image = build()
    with docker_load_replaced(server, "cat >/dev/null; echo 'no space left on device' >&2; exit 1"), \
            pytest.raises(ShipError) as caught:
        ship_images(runner, conn, [image], on_line=lambda _: None)
    message = str(caught.value)
    assert "\n" not in message
    assert image in message and "web1" in message and "no space left on device" in message


SLOW_READER = "import sys, time\nwhile sys.stdin.buffer.read(65536): time.sleep(0.03)"


def test_ctrl_c_stops_both_ends(
        runner: ProcessRunner, conn: SshConnection, server: Server, build: Callable[..., str]) -> None:
    image = build(megabytes=40)
    timer = threading.Timer(1.5, runner.cancel.cancel, args=(signal.SIGINT,))
    started = time.monotonic()
    # A slow target: its `docker load` reads about 2 MB/s and never loads.
    with docker_load_replaced(server, f"exec python3 -c {shlex.quote(SLOW_READER)}"):
        timer.start()
        with pytest.raises(Interrupted):
            ship_images(runner, conn, [image], on_line=lambda _: None)
        timer.cancel()
        assert time.monotonic() - started < 15
        local = subprocess.run(["pgrep", "-f", f"docker save {image}"], capture_output=True, text=True).stdout
        assert not local.strip(), "docker save still runs here"
        deadline = time.monotonic() + 10
        while server.exec("pgrep", "-f", "sys.stdin.buffer", check=False).returncode == 0:
            assert time.monotonic() < deadline, "the load still runs on the target"
            time.sleep(0.2)
    assert remote_id(server, image) is None
