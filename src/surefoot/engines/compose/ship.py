"""Shipping images from the control machine's engine to a target's engine, without a registry.

    report = ship_images(runner, conn, ["app:1", "worker:1"], on_line=console.line)

The images the target lacks, or has under another image id, go in one stream:
``docker save A B ... | ssh TARGET docker load``, copied through in chunks (no temporary file,
never a whole image in memory). Afterwards the target's ids are read again and must equal the
local ones. An image id is the engine's ``docker image inspect --format {{.Id}}``.

For several targets at once (issue 15): every call is independent (no module state; one
``ProcessRunner`` may serve many threads, each call waits for its own children on its own
thread), errors name the target, and ``local_ids`` lets the caller inspect the local engine
once for all targets:

    ids = local_image_ids(runner, images)
    with ThreadPoolExecutor(len(conns)) as pool:
        reports = list(pool.map(lambda c: ship_images(runner, c, images, on_line=..., local_ids=ids), conns))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from surefoot.base.errors import PhaseFailed
from surefoot.engines.compose.argv import image_ids_argv, load_argv, save_argv
from surefoot.hosts.ssh.args import SshError, classify
from surefoot.hosts.ssh.connection import SshConnection
from surefoot.proc import ProcessRunner
from surefoot.proc.pipe import pipe


class ShipError(PhaseFailed):
    """An image could not be shipped to a target (or inspected on either side): one line naming both."""


@dataclass(frozen=True)
class ShipReport:
    shipped: tuple[str, ...]  # sent in this call's stream
    present: tuple[str, ...]  # the target already had them, with the same id
    bytes: int  # the size of the stream sent (0 when nothing was shipped)
    seconds: float  # the whole call: checks, transfer and verification


def _parse_ids(images: Sequence[str], stdout: str) -> dict[str, str | None]:
    lines = stdout.splitlines()
    if len(lines) != len(images):
        raise ValueError(f"expected {len(images)} lines, got {len(lines)}: {stdout.strip()[:200]!r}")
    return {image: (line.strip() or None) for image, line in zip(images, lines, strict=True)}


def _last(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _unique(images: Sequence[str]) -> list[str]:
    if isinstance(images, str):
        raise TypeError("images is a sequence of image names, not one string")
    unique = list(dict.fromkeys(images))
    for image in unique:
        if not image or image.startswith("-") or any(ch.isspace() for ch in image):
            raise ShipError(f"not an image name: {image!r}")
    return unique


def local_image_ids(runner: ProcessRunner, images: Sequence[str], *, timeout: float = 60) -> dict[str, str | None]:
    """The control machine's image id of each image (None when the local engine has no such image)."""
    names = _unique(images)
    if not names:
        return {}
    result = runner.capture(image_ids_argv(names), timeout=timeout)
    if result.returncode != 0:
        raise ShipError(f"cannot inspect images on this machine's engine: {_last(result.stderr + result.stdout)}")
    try:
        return _parse_ids(names, result.stdout)
    except ValueError as exc:
        raise ShipError(f"unexpected answer inspecting images on this machine: {exc}") from None


def remote_image_ids(conn: SshConnection, images: Sequence[str], *, timeout: float = 60) -> dict[str, str | None]:
    """The target's image id of each image (None when it has none), in one remote command."""
    names = _unique(images)
    if not names:
        return {}
    result = conn.run([*conn.access().docker_prefix, *image_ids_argv(names)], timeout=timeout)
    if result.returncode != 0:
        raise ShipError(f"{conn.target.label}: cannot inspect {', '.join(names)} on its engine: "
                        f"{_last(result.stderr + result.stdout)}")
    try:
        return _parse_ids(names, result.stdout)
    except ValueError as exc:
        raise ShipError(f"{conn.target.label}: unexpected answer inspecting {', '.join(names)}: {exc}") from None


def _checked(conn: SshConnection, names: Sequence[str], doing: str) -> dict[str, str | None]:
    try:
        return remote_image_ids(conn, names)
    except SshError as exc:
        raise ShipError(f"{doing} {', '.join(names)} on the target: {exc}") from None


def ship_images(
    runner: ProcessRunner, conn: SshConnection, images: Sequence[str], *, on_line: Callable[[str], None],
    local_ids: Mapping[str, str | None] | None = None, timeout: float = 3600, source: SshConnection | None = None,
) -> ShipReport:
    """Send the images the target lacks (or has with another id) in one ``docker save | docker
    load`` stream through the connection, then check the target's ids equal the local ones.
    ``on_line`` gets ``docker load``'s lines; ``local_ids`` (from :func:`local_image_ids`) saves
    inspecting the local engine again when shipping to several targets. ``source``: the images
    are on that server's engine, not this machine's (a swarm's manager, shipping to its nodes;
    the stream passes through this machine). Raises ShipError."""
    started = time.monotonic()
    where = conn.target.label
    names = _unique(images)
    if local_ids is None or any(name not in local_ids for name in names):
        local_ids = remote_image_ids(source, names) if source is not None else local_image_ids(runner, names)
    missing = [name for name in names if not local_ids.get(name)]
    if missing:
        raise ShipError(f"cannot ship {', '.join(missing)} to {where}: no such image on this machine's engine "
                        f"(build or pull it here first)")
    remote = _checked(conn, names, "checking")
    send = [name for name in names if remote[name] != local_ids[name]]
    present = tuple(name for name in names if name not in send)
    if not send:
        return ShipReport((), present, 0, time.monotonic() - started)
    on_line(f"shipping {', '.join(send)} to {where}")
    load = conn.docker_argv(load_argv())
    save = save_argv(send)
    if source is not None:
        save = source.docker_argv(save)
    conn.guard()  # the load goes through the connection, not through conn.run
    piped = pipe(runner, save, load, on_line=on_line, timeout=timeout)
    what = f"shipping {', '.join(send)} to {where}"
    if piped.first != 0:
        raise ShipError(f"{what} failed: docker save on this machine: {_last(chr(10).join(piped.first_errors))}")
    if piped.second != 0:
        said = "\n".join(piped.second_output)
        if piped.second == 255 and (error := classify(conn.target, said)) is not None:
            raise ShipError(f"shipping {', '.join(send)} failed: {error}")  # the error names the target
        raise ShipError(f"{what} failed: docker load on the target ({piped.second}): {_last(said)}")
    after = _checked(conn, send, "verifying")
    wrong = [name for name in send if after[name] != local_ids[name]]
    if wrong:
        detail = "; ".join(f"{name}: {after[name] or 'missing'} instead of {local_ids[name]}" for name in wrong)
        raise ShipError(f"{what}: the target's image ids differ after loading ({detail})")
    return ShipReport(tuple(send), present, piped.bytes, time.monotonic() - started)


def describe(report: ShipReport) -> str:
    """One line for the console."""
    if not report.shipped:
        return f"images already on the target: {', '.join(report.present) or 'none'} ({report.seconds:.1f}s)"
    rate = report.bytes / report.seconds / 1e6 if report.seconds > 0 else 0.0
    return (f"shipped {', '.join(report.shipped)}: {report.bytes / 1e6:.1f} MB in {report.seconds:.1f}s "
            f"({rate:.0f} MB/s)" + (f"; already there: {', '.join(report.present)}" if report.present else ""))

