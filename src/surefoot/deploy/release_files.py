"""What a release keeps of the files compose hands to the containers (``files/``, listed in
``files.json``): ``secrets:`` and ``configs:`` files, services' ``env_file:`` files, and bind
mounts of the project's own files and folders that are read-only or single files; and what it
cannot keep (a bind mount outside the project, a folder past the size limit). Their content
digests tell a restore which working files still are the release's."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FOLDER_LIMIT = 100 * 1024 * 1024  # a bind-mounted folder larger than this is not copied into a release


def within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def content_digest(path: Path, skip: Path | None = None) -> str | None:
    """A digest of a file's or folder's content and modes (None when it is gone); ``skip``:
    a folder inside it that does not count (the state folder)."""
    digest = hashlib.sha256()
    try:
        path = path.resolve()
        if path.is_file():
            digest.update(f"{stat.S_IMODE(path.stat().st_mode):o}\n".encode())
            digest.update(path.read_bytes())
            return digest.hexdigest()
        if not path.is_dir():
            return None
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if skip is None or Path(folder, d) != skip)
            for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
                item = os.path.join(folder, name)
                rel = os.path.relpath(item, path)
                if os.path.islink(item):
                    digest.update(f"L {rel}\0{os.readlink(item)}\n".encode())
                elif os.path.isfile(item):
                    digest.update(f"F {rel}\0{stat.S_IMODE(os.stat(item).st_mode):o}\n".encode())
                    with open(item, "rb") as handle:
                        for block in iter(lambda: handle.read(1 << 20), b""):
                            digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def folder_size(path: Path, limit: int, skip: Path | None = None) -> int:
    """The size of a folder's files (``skip``'s left out), counting stops past ``limit``."""
    total = 0
    for folder, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if skip is None or Path(folder, d) != skip]
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
            if total > limit:
                return total
    return total


@dataclass
class KeptFiles:
    """The files a release keeps (``files.json``) and what it could not keep."""

    files: list[dict[str, Any]] = field(default_factory=list)
    not_kept: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # service -> the image name it runs under


def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)



def keep_files(folder: Path, model: dict[str, Any], raw: dict[str, Any], project_dir: Path,
               state_dir: Path, *, on_server: bool = False) -> KeptFiles:
    """Copy into ``folder/files`` what compose hands to the containers. ``model``: the
    interpolated model (its paths are the real ones); ``raw``: the same, uninterpolated."""
    project = project_dir.resolve()
    state = state_dir.resolve()
    kept = KeptFiles()
    taken: set[str] = set()

    def copy(source: Path, kind: str, owner: str, index: int, private: bool = False, target: str = "") -> None:
        real = source.resolve()
        if real == project:
            relative = "files/project-folder"
        elif within(real, project):
            relative = f"files/project/{real.relative_to(project)}"
        elif on_server:  # compose reads it on the server: the file there is not ours to keep
            kept.not_kept.append(f"{kind} of {owner}: {source} is outside the project folder (the server's own)")
            return
        else:
            relative = f"files/outside/{len(kept.files)}-{real.name}"
        if relative not in taken:
            destination = folder / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            if real.is_dir():
                shutil.copytree(real, destination, symlinks=True, ignore=lambda folder, names: [
                    n for n in names if Path(folder, n) == state])
            else:
                shutil.copy2(real, destination)
                if private:
                    os.chmod(destination, 0o600)
            taken.add(relative)
        kept.files.append({"kind": kind, "owner": owner, "index": index, "target": target, "source": str(source),
                           "copy": relative, "digest": content_digest(folder / relative)})

    for service, spec in sorted((model.get("services") or {}).items()):
        for index, volume in enumerate(spec.get("volumes") or []):
            if not isinstance(volume, dict) or volume.get("type") != "bind" or not volume.get("source"):
                continue
            source = Path(str(volume["source"]))
            where = f"{service}: bind mount {source} -> {volume.get('target')}"
            if not (source.is_file() or source.is_dir()):
                continue  # a socket, a device, or nothing yet (compose creates a folder)
            if source.is_dir() and not volume.get("read_only"):
                continue  # a read-write folder holds data, not release content
            real = source.resolve()
            if within(real, state):
                continue
            if not within(real, project):
                kept.not_kept.append(f"{where}: outside the project folder")
                continue
            if real.is_dir() and folder_size(real, FOLDER_LIMIT, state) > FOLDER_LIMIT:
                kept.not_kept.append(f"{where}: larger than {FOLDER_LIMIT // (1024 * 1024)} MiB")
                continue
            copy(source, "bind", service, index, target=str(volume.get("target") or ""))
        raw_files = ((raw.get("services") or {}).get(service) or {}).get("env_file") or []
        for index, item in enumerate(raw_files):
            path = item.get("path") if isinstance(item, dict) else item
            if path and "$" not in str(path) and Path(str(path)).is_file():
                copy(Path(str(path)), "env_file", service, index, private=True)
    for kind in ("secrets", "configs"):
        for name, spec in sorted((model.get(kind) or {}).items()):
            if not isinstance(spec, dict) or not spec.get("file"):
                continue
            source = Path(str(spec["file"]))
            if source.is_file() or source.is_dir():
                # a secret keeps its mode: a container's non-root user may read it through the
                # bind mount; the state folder (0700) keeps the copy from this machine's users
                copy(source, kind, name, 0)
            else:
                kept.not_kept.append(f"{kind[:-1]} {name}: its file {source} is missing")
    return kept
