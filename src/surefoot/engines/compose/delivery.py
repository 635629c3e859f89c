"""How images built on this machine reach a server's daemon (``[targets.NAME] build``):

- ``"control"``: :class:`Shipped`, ``docker save | docker load`` through the connection, only the
  images the server lacks (no registry needed: :mod:`surefoot.engines.compose.ship`);
- ``"registry"``: :class:`Pushed`, pushed to a registry the user names and pulled by the server
  from there; images the server already has (the same id) are neither pushed nor pulled.
"""

from __future__ import annotations

from collections.abc import Callable

from surefoot.base.errors import PhaseFailed
from surefoot.engines.compose.argv import plain_tag_argv, pull_image_argv, push_argv
from surefoot.engines.compose.ship import describe, local_image_ids, remote_image_ids, ship_images
from surefoot.hosts.ssh.connection import SshConnection
from surefoot.proc import Processes, ProcessRunner


class Shipped:
    """Images go from this machine's daemon (``local``) to the server's over ``conn``."""

    def __init__(self, local: ProcessRunner, conn: SshConnection):
        self.local = local
        self.conn = conn

    def deliver(self, images: list[str], on_line: Callable[[str], None]) -> None:
        """Ship the images the server lacks (``docker save | docker load``)."""
        on_line(f"shipping {len(images)} image(s) to {self.conn.target.label}")
        on_line(describe(ship_images(self.local, self.conn, images, on_line=on_line)))


class Pushed:
    """Images go from this machine's daemon (``local``) to ``registry``, and the server
    (``remote``: its processes) pulls them."""

    def __init__(self, local: ProcessRunner, remote: Processes, conn: SshConnection, registry: str):
        self.local = local
        self.remote = remote
        self.conn = conn
        self.registry = registry

    def deliver(self, images: list[str], on_line: Callable[[str], None]) -> None:
        """Push the images the server lacks to the registry; the server pulls them."""
        ids = local_image_ids(self.local, images)
        there = remote_image_ids(self.conn, images)
        for image in images:
            if there.get(image) == ids.get(image):
                on_line(f"{image}: already on {self.conn.target.label}")
                continue
            name = image.rsplit("/", 1)[-1].split(":")[0]
            reference = f"{self.registry}/{name}:{(ids.get(image) or '').removeprefix('sha256:')[:12]}"
            for args, runner, what in (
                (plain_tag_argv(image, reference), self.local, "tagging"),
                (push_argv(reference), self.local, "pushing"),
                (pull_image_argv(reference), self.remote, "pulling on the server"),
                (plain_tag_argv(reference, image), self.remote, "tagging on the server"),
            ):
                on_line("$ " + " ".join(args))
                if runner.stream(args, on_line) != 0:
                    raise PhaseFailed(f"{what} {reference} failed (see the log)")
