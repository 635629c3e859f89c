"""Images that travel as layers: only what a server lacks, one layer at a time, resumable.

An image is a stack of layers; a daemon keeps each stack it has under a *chain id* (the digest
of the layer's diff id and its parent's chain id). So the chain ids of the server's images say
which of an image's lowest layers it has already: those are never sent again. The others go one
at a time, each as its own ``docker load`` of a small archive (docker-archive format): the
image's first ``n`` layers, with only the ``n``-th layer's file in it (``docker load`` takes a
layer the daemon already has from its store, without its file) and a configuration naming just
those layers, tagged ``surefoot.local/layers:CHAIN``. Each load thus leaves a layer on the
server for good: a transfer cut in the middle (connection dropped, ``kill -9``) resumes on the
next deploy with the layer it was sending, nothing that had fully arrived is sent again. Last,
the image's own configuration is loaded (no layer file at all), under its name and id, and the
partial tags are removed (the layers stay: the image holds them).

The layers come from ``docker save`` on this machine, once per image for every server it goes
to (:class:`Archives`), and stream from that file: a 1 GiB layer is never in memory. Servers of
a batch are fed at once, each over its own connection.

This needs the daemon's classic image store (``overlay2``, ``vfs``...); one with the containerd
image store (Docker 29's default for new installs) gets whole images, as ``ship = "images"``
does (:func:`containerd_store`).
"""

from __future__ import annotations

import atexit
import hashlib
import io
import json
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from surefoot.base.errors import PhaseFailed
from surefoot.base.once import Once
from surefoot.engines.compose.argv import load_argv, save_argv
from surefoot.hosts.ssh.args import SshError
from surefoot.hosts.ssh.connection import SshConnection
from surefoot.proc import ProcessRunner

PARTIAL = "surefoot.local/layers"
PROGRESS_EVERY = 32 * 1024 * 1024  # bytes between two progress lines of a long transfer

# The diff ids of every image the daemon has, one JSON list per line.
REMOTE_CHAINS = ('docker image ls --all --quiet --no-trunc | sort -u | '
                 'xargs -r docker image inspect --format "{{json .RootFS.Layers}}"')
# The daemon's storage driver and whether images are kept by containerd.
STORE = 'docker info --format "{{.Driver}} {{json .DriverStatus}}"'


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The chain id of each prefix of ``diff_ids`` (as the daemon names its layer stacks)."""
    chains: list[str] = []
    for diff in diff_ids:
        if not chains:
            chains.append(diff)
        else:
            chains.append("sha256:" + hashlib.sha256(f"{chains[-1]} {diff}".encode()).hexdigest())
    return chains


def parse_chains(text: str) -> set[str]:
    """Every chain id the daemon has, from :data:`REMOTE_CHAINS`' answer."""
    found: set[str] = set()
    for line in text.splitlines():
        try:
            layers = json.loads(line)
        except ValueError:
            continue
        if isinstance(layers, list):
            found.update(chain_ids([str(layer) for layer in layers]))
    return found


def vanished_only(stderr: str) -> bool:
    """Whether every complaint in :data:`REMOTE_CHAINS`' errors is an image removed between the
    listing and the look (another image's shipment dropping its stepping stones): not a failure."""
    said = [line for line in stderr.splitlines() if line.strip()]
    return bool(said) and all("No such image" in line for line in said)


def first_missing(diff_ids: Sequence[str], present: set[str]) -> int:
    """How many of the image's lowest layers the server has (it has a stack or it does not)."""
    count = 0
    for chain in chain_ids(diff_ids):
        if chain not in present:
            break
        count += 1
    return count


def containerd_store(text: str) -> bool:
    """Whether :data:`STORE`'s answer is a daemon that keeps images in containerd."""
    return "io.containerd.snapshotter" in text or text.startswith("overlayfs ")


@dataclass
class SavedImage:
    """One image as ``docker save`` wrote it: its configuration, and its layers' files in order."""

    name: str
    path: Path  # the archive
    config_name: str
    config: bytes
    layers: list[str]  # each layer's file in the archive
    diff_ids: list[str]
    sizes: list[int] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # as docker save wrote them ("app:latest")


def read_saved(name: str, path: Path) -> SavedImage:
    with tarfile.open(path) as archive:
        manifest = json.loads(_member(archive, "manifest.json"))
        entry = next((item for item in manifest if name in (item.get("RepoTags") or [])), manifest[0])
        config = _member(archive, entry["Config"])
        layers = [str(layer) for layer in entry["Layers"]]
        sizes = [_size(archive, layer) for layer in layers]
    diff_ids = [str(d) for d in json.loads(config)["rootfs"]["diff_ids"]]
    if len(diff_ids) != len(layers):
        raise PhaseFailed(f"{name}: docker save wrote {len(layers)} layers for {len(diff_ids)} in its configuration")
    tags = [str(tag) for tag in entry.get("RepoTags") or []]
    return SavedImage(name, path, str(entry["Config"]), config, layers, diff_ids, sizes, tags)


def _member(archive: tarfile.TarFile, name: str) -> bytes:
    found = archive.extractfile(name)
    if found is None:
        raise PhaseFailed(f"docker save wrote no {name}")
    return found.read()


def _size(archive: tarfile.TarFile, name: str) -> int:
    info = archive.getmember(name)
    if info.issym() or info.islnk():  # Docker 25+ links a layer seen twice to its blob
        info = archive.getmember(str(Path(name).parent / info.linkname) if info.issym() else info.linkname)
    return info.size


class Archives:
    """``docker save`` of each image once per run, shared by every server it is sent to (they
    are sent side by side: the first to ask saves it, the others wait for it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._saved: Once[str, SavedImage] = Once()
        self._folder: Path | None = None

    def get(self, image_id: str, name: str, save: Callable[[Path], None]) -> SavedImage:
        with self._lock:
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix="surefoot-images-"))
                atexit.register(shutil.rmtree, self._folder, True)
            path = self._folder / (image_id.replace(":", "-") + ".tar")

        def make() -> SavedImage:
            save(path)
            return read_saved(name, path)

        return self._saved.get(image_id, make)[0]


ARCHIVES = Archives()


def partial_config(saved: SavedImage, count: int) -> bytes:
    """An image configuration of the first ``count`` layers (their stack kept on the server)."""
    real = json.loads(saved.config)
    config = {"architecture": real.get("architecture", ""), "os": real.get("os", "linux"), "config": {},
              "rootfs": {"type": "layers", "diff_ids": saved.diff_ids[:count]}}
    return json.dumps(config, sort_keys=True).encode()


def partial_tag(saved: SavedImage, count: int) -> str:
    return f"{PARTIAL}:{chain_ids(saved.diff_ids[:count])[-1].removeprefix('sha256:')[:20]}"


def write_archive(out: IO[bytes], saved: SavedImage, count: int, send: int | None,
                  progress: Callable[[int], None]) -> None:
    """A docker-archive of the image's first ``count`` layers (``count`` = all: the image itself,
    under its name) holding the file of layer ``send`` only (None: no layer file)."""
    whole = count == len(saved.layers)
    config = saved.config if whole else partial_config(saved, count)
    config_name = saved.config_name if whole else "partial.json"
    tags = (saved.tags or [saved.name]) if whole else [partial_tag(saved, count)]
    manifest = json.dumps([{"Config": config_name, "RepoTags": tags, "Layers": saved.layers[:count]}]).encode()
    with tarfile.open(fileobj=out, mode="w|") as stream:
        for name, data in ((config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            stream.addfile(info, io.BytesIO(data))
        if send is not None:
            with tarfile.open(saved.path) as archive:
                member = archive.getmember(saved.layers[send])
                source = archive.extractfile(member)
                assert source is not None
                info = tarfile.TarInfo(saved.layers[send])
                info.size, info.mtime = member.size if member.isfile() else saved.sizes[send], 0
                stream.addfile(info, Counted(source, progress))


class Counted(io.RawIOBase):
    """A file read through, its bytes counted (the progress of a long transfer)."""

    def __init__(self, source: IO[bytes], progress: Callable[[int], None]):
        self.source, self.progress, self.done = source, progress, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.done += len(data)
        self.progress(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@dataclass(frozen=True)
class LayerReport:
    """What one image's shipment to one server took."""

    image: str
    sent: int  # layers sent
    skipped: int  # layers the server had
    bytes: int  # of the archives sent
    seconds: float


def ship_layers(conn: SshConnection, saved: SavedImage, *, on_line: Callable[[str], None],
                progress: Callable[[str], None] = lambda text: None) -> LayerReport:
    """Send ``saved`` to the server of ``conn``: the layers it lacks, one load each, then the
    image. Raises PhaseFailed (SshError is one) naming the server."""
    started = time.monotonic()
    where = conn.target.label
    prefix = conn.access().docker_prefix
    chains = conn.run([*prefix, "sh", "-c", REMOTE_CHAINS], timeout=120)
    if chains.returncode != 0 and not vanished_only(chains.stderr):
        raise PhaseFailed(f"{where}: cannot list the images of its engine: {chains.stderr.strip()[-300:]}")
    have = first_missing(saved.diff_ids, parse_chains(chains.stdout))
    total = len(saved.layers)
    sizes = saved.sizes
    todo = sum(sizes[have:])
    on_line(f"{saved.name} to {where}: {total - have} of {total} layer(s) to send ({todo / 1e6:.1f} MB), "
            f"{have} already there")
    sent_bytes = 0
    for index in range(have, total):  # the last one loads the image itself, under its name
        step = LayerProgress(f"{saved.name} to {where}: layer {index + 1}/{total}", sizes[index], progress)
        sent_bytes += _load(conn, prefix, _writer(saved, index + 1, index, step),
                            f"layer {index + 1} of {saved.name}")
    if have == total:  # every layer there: the image's configuration and name alone
        sent_bytes += _load(conn, prefix, _writer(saved, total, None, lambda amount: None),
                            f"the configuration of {saved.name}")
    partials = [partial_tag(saved, count) for count in range(1, total)]
    if partials:  # the image holds its layers now; the stepping stones go (this run's and a cut one's)
        conn.run([*prefix, "docker", "image", "rm", *partials], timeout=120)
    return LayerReport(saved.name, total - have, have, sent_bytes, time.monotonic() - started)


class LayerProgress:
    """A line every :data:`PROGRESS_EVERY` bytes of a layer on its way."""

    def __init__(self, what: str, size: int, say: Callable[[str], None]):
        self.what, self.size, self.say = what, size, say
        self.done = self.said = 0

    def __call__(self, amount: int) -> None:
        self.done += amount
        if self.done - self.said >= PROGRESS_EVERY:
            self.said = self.done
            self.say(f"{self.what}, {self.done / 1e6:.0f} of {self.size / 1e6:.0f} MB")


def _writer(saved: SavedImage, count: int, send: int | None,
            progress: Callable[[int], None]) -> Callable[[IO[bytes]], None]:
    return lambda out: write_archive(out, saved, count, send, progress)


def _load(conn: SshConnection, prefix: Sequence[str], write: Callable[[IO[bytes]], None], what: str) -> int:
    counter = [0]

    def feed(stdin: IO[bytes]) -> None:
        write(cast(IO[bytes], _Tally(stdin, counter)))

    try:
        result = conn.run_bytes([*prefix, *load_argv(), "--quiet"], feed=feed, timeout=None, what=f"loading {what}")
    except SshError as exc:
        raise PhaseFailed(f"sending {what}: {exc}") from None
    if result.returncode != 0:
        said = result.stderr.decode(errors="replace").strip().splitlines()
        raise PhaseFailed(f"{conn.target.label}: docker load of {what} failed: "
                          f"{said[-1] if said else result.returncode}")
    return counter[0]


class _Tally(io.RawIOBase):
    """The ssh process's standard input, the bytes written counted."""

    def __init__(self, out: IO[bytes], counter: list[int]):
        self.out, self.counter = out, counter

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.out.write(data)
        self.counter[0] += len(data)
        return len(data)


def save_here(runner: ProcessRunner, image: str) -> Callable[[Path], None]:
    """``docker save -o PATH image`` on this machine's engine."""
    def save(path: Path) -> None:
        result = runner.capture([*save_argv([image]), "--output", str(path)], timeout=3600)
        if result.returncode != 0:
            raise PhaseFailed(f"docker save {image} on this machine failed: {result.stderr.strip()[-300:]}")
    return save


def save_there(runner: ProcessRunner, source: SshConnection, image: str) -> Callable[[Path], None]:
    """``docker save`` of an image on another server's engine (a swarm's manager), streamed into
    a file here: the layers then go to each node from it."""
    def save(path: Path) -> None:
        result = runner.to_file(source.docker_argv(save_argv([image])), path, timeout=3600)
        if result.returncode != 0:
            raise PhaseFailed(f"docker save {image} on {source.target.label} failed: {result.stderr.strip()[-300:]}")
    return save


def uses_containerd(conn: SshConnection) -> bool:
    answer = conn.run([*conn.access().docker_prefix, "sh", "-c", STORE], timeout=60)
    return answer.returncode == 0 and containerd_store(answer.stdout)


def describe_reports(reports: Iterable[LayerReport], where: str) -> str:
    """The line that says what went to ``where`` (``--progress json`` reads it: ``shipped``)."""
    reports = list(reports)
    sent = sum(r.bytes for r in reports)
    return (f"shipped to {where}: {sum(r.sent for r in reports)} layer(s), {sent / 1e6:.1f} MB ({sent} bytes); "
            f"{sum(r.skipped for r in reports)} layer(s) already there")
