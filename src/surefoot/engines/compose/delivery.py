"""How images built on this machine reach a server's daemon (``[targets.NAME] build``):

- ``"control"``: :class:`Shipped`, through the connection, no registry needed: only the layers
  the server lacks (``ship = "layers"``, :mod:`surefoot.engines.compose.layers`), or the images it
  lacks, whole (``ship = "images"``, ``docker save | docker load``: :mod:`surefoot.engines.compose.ship`);
- ``"registry"``: :class:`Pushed`, pushed to a registry the user names and pulled by the server
  from there; images the server already has (the same id) are neither pushed nor pulled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from surefoot.base.errors import PhaseFailed
from surefoot.base.once import KeyedLocks, Once
from surefoot.engines.compose.argv import plain_tag_argv, pull_image_argv, push_argv
from surefoot.engines.compose.layers import (
    ARCHIVES,
    describe_reports,
    save_here,
    save_there,
    ship_layers,
    uses_containerd,
)
from surefoot.engines.compose.ship import ShipError, describe, local_image_ids, remote_image_ids, ship_images
from surefoot.hosts.ssh.connection import SshConnection
from surefoot.proc import Processes, ProcessRunner


class Shipped:
    """Images go from this machine's daemon (``local``) to the server's over ``conn``: only the
    layers it lacks (``ship = "layers"``: :mod:`surefoot.engines.compose.layers`), or whole."""

    def __init__(self, local: ProcessRunner, conn: SshConnection, ship: str = "layers"):
        self.local = local
        self.conn = conn
        self.ship = ship

    def deliver(self, images: list[str], on_line: Callable[[str], None]) -> None:
        """Ship the images the server lacks (those it has under the same id get nothing)."""
        on_line(f"shipping {len(images)} image(s) to {self.conn.target.label}")
        if self.ship == "images" or whole_there(self.conn, on_line):
            on_line(describe(ship_images(self.local, self.conn, images, on_line=on_line)))
            return
        on_line(ship_as_layers(self.local, self.conn, images, on_line=on_line))


def ship_as_layers(local: ProcessRunner, conn: SshConnection, images: list[str], *, on_line: Callable[[str], None],
                   source: SshConnection | None = None, local_ids: Mapping[str, str | None] | None = None) -> str:
    """The images the server lacks, as layers (``source``: saved on that server, not here);
    the line that says what went."""
    ids = dict(local_ids) if local_ids is not None else (
        remote_image_ids(source, images) if source is not None else local_image_ids(local, images))
    missing = [image for image in images if not ids.get(image)]
    if missing:
        raise ShipError(f"cannot ship {', '.join(missing)} to {conn.target.label}: no such image on "
                        f"{'its source' if source is not None else 'this machine'}'s engine")
    with _SERVER(conn.target.url):
        return _ship_as_layers(local, conn, images, ids, source, on_line)


def _ship_as_layers(local: ProcessRunner, conn: SshConnection, images: list[str], ids: Mapping[str, str | None],
                    source: SshConnection | None, on_line: Callable[[str], None]) -> str:
    there = remote_image_ids(conn, images)
    send = [image for image in images if there.get(image) != ids[image]]
    where = conn.target.name or conn.target.url
    if not send:
        return f"shipped to {where}: 0 layer(s), 0.0 MB (0 bytes); every image already there " \
               f"({', '.join(images)})"
    reports = []
    for image in send:
        save = save_there(local, source, image) if source is not None else save_here(local, image)
        # One save per image id, whatever name asked for it first: it arrives under this name.
        saved = replace(ARCHIVES.get(str(ids[image]), image, save), name=image, tags=[tagged(image)])
        reports.append(ship_layers(conn, saved, on_line=on_line, progress=on_line))
    after = remote_image_ids(conn, send)
    wrong = [image for image in send if after.get(image) != ids[image]]
    if wrong:
        raise ShipError(f"{conn.target.label}: the image ids differ after loading: {', '.join(wrong)}")
    return describe_reports(reports, where)


def whole_there(conn: SshConnection, on_line: Callable[[str], None]) -> bool:
    """Whether the server's daemon keeps images in containerd, which cannot load a layer alone:
    it then gets whole images, and the log says why."""
    if not uses_containerd(conn):
        return False
    on_line(f"{conn.target.label} keeps its images in containerd (its image store): whole images go there")
    return True


def tagged(image: str) -> str:
    """``image`` with its tag (an archive's RepoTags need one: ``api`` is ``api:latest``)."""
    return image if ":" in image.rsplit("/", 1)[-1] else f"{image}:latest"


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

            def push(image: str = image, reference: str = reference) -> None:
                self._run(((plain_tag_argv(image, reference), self.local, "tagging"),
                           (push_argv(reference), self.local, "pushing")), reference, on_line)

            if not _PUSHES.get(reference, push)[1]:  # once a run, for every server that pulls it
                on_line(f"{reference}: pushed already by this run")
            self._run(((pull_image_argv(reference), self.remote, "pulling on the server"),
                       (plain_tag_argv(reference, image), self.remote, "tagging on the server")), reference, on_line)

    @staticmethod
    def _run(commands: Sequence[tuple[list[str], ProcessRunner | Processes, str]], reference: str,
             on_line: Callable[[str], None]) -> None:
        for args, runner, what in commands:
            on_line("$ " + " ".join(args))
            if runner.stream(args, on_line) != 0:
                raise PhaseFailed(f"{what} {reference} failed (see the log)")


# The references this process pushed: the servers of a batch prepare side by side, and two pushes
# of one image at once fail.
_PUSHES: Once[str, None] = Once()
# Held while images go to a server: two of its images at once (a build's two groups) would both
# send the layers they share; one after the other, the second finds them there.
_SERVER = KeyedLocks[str]()
