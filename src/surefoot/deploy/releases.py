"""Releases: what each deployment put into service, pinned so it can be restored.

A release is recorded when a deployment reaches ``services-start``: the image id
of every service, each pinned by a tag of ours (``surefoot.local/PROJECT/SERVICE:rN``)
so that a later rebuild of ``PROJECT-SERVICE:latest`` cannot take it away; and in
``STATE_DIR/releases/N/``: the compose model as compose resolved it (``extends:``
and ``include:`` merged, paths absolute, ``${VAR}`` left as written:
``compose.json``), the env file compose read (0600), and copies of the files
compose hands to the containers (``files/``, listed in ``files.json``): ``secrets:``
and ``configs:`` files, services' ``env_file:`` files, and bind mounts of the
project's own files and folders that are read-only or single files. What cannot
be kept (a bind mount outside the project, a folder past the size limit) is
recorded. Restoring a release is ``compose up`` of that model, with no build and
no pull, presented so that a service that does not differ from what runs is left
running (:meth:`ReleaseKeeper.restore`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from surefoot.base.errors import CommandNotFound, CommandTimeout, PhaseFailed
from surefoot.config.settings import Settings
from surefoot.deploy.api import Facts
from surefoot.deploy.release_files import content_digest, keep_files, within, write_private
from surefoot.engines.base import Engine
from surefoot.engines.compose.argv import ComposeProject
from surefoot.engines.compose.model import normalize_image
from surefoot.proc import Captured, capture_once
from surefoot.store import Release, now_iso

TAG_REGISTRY = "surefoot.local"
TAG_WORKERS = 8
MODEL_FILE = "compose.json"
FILES_MANIFEST = "files.json"
RESTORE_FILE = "restore.json"


def pin_tag(project: str, service: str, release_id: int) -> str:
    safe = re.sub(r"[^a-z0-9_.-]", "-", service.lower()).strip("-.") or "service"
    return f"{TAG_REGISTRY}/{project}/{safe}:r{release_id}"


def pins_yaml(tags: dict[str, str]) -> str:
    """A compose override that runs each service from its pinned image (JSON is valid YAML)."""
    import json

    services = {service: {"image": tag, "pull_policy": "never"} for service, tag in sorted(tags.items())}
    return json.dumps({"services": services}, indent=2) + "\n"


def git_commit(folder: Path, ignore: Path | None = None) -> str | None:
    """HEAD's commit, with ``-dirty`` when the work tree has changes (tracked or new files;
    ``ignore``, the state folder, does not count)."""
    def git(*args: str) -> Captured | None:
        try:
            return capture_once(["git", "-C", str(folder), *args], timeout=10)
        except (OSError, CommandNotFound, CommandTimeout):
            return None

    head = git("rev-parse", "HEAD")
    if head is None or head.returncode != 0:
        return None
    commit = head.stdout.strip()
    top = git("rev-parse", "--show-toplevel")
    changes = git("status", "--porcelain=v1", "-z", "--untracked-files=normal")
    if top is None or top.returncode != 0 or changes is None or changes.returncode != 0:
        return commit
    root = Path(top.stdout.strip())
    entries = changes.stdout.split("\0")
    paths, skip = [], False
    for entry in entries:
        if skip:  # the source name of a rename
            skip = False
            continue
        if len(entry) > 3:
            paths.append(root / entry[3:])
            skip = entry[0] in "RC"
    if ignore is not None:
        ignored = ignore.resolve()
        paths = [p for p in paths if not within(p.resolve(), ignored)]
    return f"{commit}-dirty" if paths else commit


def _earlier_env_copies(folder: Path) -> tuple[Path, ...]:
    """A release's copies of the env files before the last (``env_file`` given as a list), in order."""
    return tuple(sorted(folder.glob("env-[0-9]*"), key=lambda p: int(p.name[4:])))


@dataclass(frozen=True)
class Restore:
    project: ComposeProject
    force: tuple[str, ...] = ()  # services to recreate although compose sees no change
    not_kept: tuple[str, ...] = ()  # what the release could not keep, so cannot restore


@dataclass
class ReleaseKeeper:
    settings: Settings
    state_dir: Path
    engine: Engine
    on_server: bool = False  # the target is a server: files outside the project are its own

    def folder(self, release_id: int) -> Path:
        return self.state_dir / "releases" / str(release_id)

    def backup_path(self, release_id: int) -> Path:
        return self.state_dir / "backups" / f"release-{release_id}.dump"

    def capture(self, release_id: int, facts: Facts) -> Release:
        """Pin the images and copy the files of the release about to go into service."""
        model = facts.model()
        facts.images_changed()
        images = facts.image_ids(model.services)
        # Services whose image is absent are built or pulled by `up` itself: nothing to pin.
        tags = {service: pin_tag(self.settings.project_name, service, release_id)
                for service, image_id in images.items() if image_id is not None}

        def pin(service: str) -> None:
            self.engine.tag(str(images[service]), tags[service])

        # One tag per service, several at a time (a 30-service stack would wait 30 round trips).
        with ThreadPoolExecutor(TAG_WORKERS, thread_name_prefix="pin") as pool:
            asked = pool.submit(self.engine.raw_model)  # beside the tags: a compose process
            commit = pool.submit(git_commit, self.settings.project_dir, self.state_dir)
            list(pool.map(pin, tags))
            raw = asked.result()
        folder = self.folder(release_id)
        if folder.exists():  # a resumed deployment captures its release again, afresh
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        for index, file in enumerate(self.settings.compose_files):
            write_private(folder / f"{index}-{file.name}", file.read_bytes())
        env = self.settings.env_file or self.settings.project_dir / ".env"  # compose's own .env without one
        if env.is_file():
            write_private(folder / "env", env.read_bytes())
        for index, earlier in enumerate(self.settings.earlier_env_files):  # env_file: a list
            if earlier.exists():
                write_private(folder / f"env-{index}", earlier.read_bytes())
        write_private(folder / "pins.yaml", pins_yaml(tags).encode())
        write_private(folder / MODEL_FILE, json.dumps(raw, indent=1).encode())
        kept = keep_files(folder, model.data, raw, self.settings.project_dir, self.state_dir, on_server=self.on_server)
        kept.images = {service: model.image_name(service) for service in model.services}
        write_private(folder / FILES_MANIFEST, json.dumps(
            {"files": kept.files, "not_kept": kept.not_kept, "images": kept.images}, indent=1).encode())
        backup = self.backup_path(release_id)
        return Release(
            id=release_id,
            project=self.settings.project_name,
            created_at=now_iso(),
            outcome="pending",
            healthy_at=None,
            images=images,
            tags=tags,
            compose_digest=model.digest,
            env_digest=facts.env_digest(),
            git_commit=commit.result(),
            files_dir=str(folder),
            backup_path=str(backup) if backup.exists() else None,
            not_kept=tuple(kept.not_kept),
        )

    def restore(self, release: Release, out: Callable[[str], None]) -> Restore:
        """How to bring ``release`` back: the compose file to ``up`` and the services to recreate
        by force. A service is presented as it runs now wherever it does not differ, so that
        compose leaves it running: the image name it runs under (moved back to the release's
        image when the service is built here, else the release's pin), and the working file
        of a bind mount, secret or config whose content is the release's (else the release's
        copy)."""
        folder = Path(release.files_dir)
        if not (folder / MODEL_FILE).is_file() or not (folder / FILES_MANIFEST).is_file():
            return Restore(self.project(release))  # a release recorded before releases kept their files
        raw = json.loads((folder / MODEL_FILE).read_text())
        manifest = json.loads((folder / FILES_MANIFEST).read_text())
        services: dict[str, Any] = raw.get("services") or {}
        force: set[str] = set()
        changed: set[str] = set()  # services compose will recreate anyway (a mount's path or the image)
        for item in manifest.get("files") or []:
            kind, owner, index = item["kind"], item["owner"], int(item["index"])
            copy = str(folder / item["copy"]).replace("$", "$$")
            spec = services.get(owner) or {}
            if kind == "env_file":  # read into the environment: only its content counts
                entries = spec.get("env_file") or []
                if index < len(entries) and isinstance(entries[index], dict):
                    entries[index]["path"] = copy
                elif index < len(entries):
                    entries[index] = copy
                continue
            if content_digest(Path(item["source"]), self.state_dir.resolve()) == item["digest"]:
                continue
            if not (folder / item["copy"]).exists():
                out(f"release {release.id}'s copy of {item['source']} is gone: it is used as it is now")
                continue
            out(f"{item['source']} differs from release {release.id}'s copy: the copy is used")
            if kind == "bind":
                for volume in spec.get("volumes") or []:
                    if isinstance(volume, dict) and volume.get("type") == "bind" \
                            and str(volume.get("target")) == item.get("target"):
                        volume["source"] = copy
                        changed.add(owner)
            elif owner in (raw.get(kind) or {}):
                raw[kind][owner]["file"] = copy
                # compose does not see a secret's or config's file change: recreate its users
                force |= {name for name, spec in services.items()
                          if any((ref.get("source") if isinstance(ref, dict) else ref) == owner
                                 for ref in spec.get(kind) or [])}
        names: dict[str, str] = manifest.get("images") or {}
        current = self.engine.image_ids(sorted(set(names.values())))
        for service, image_id in release.images.items():
            name = names.get(service)
            if image_id is None or service not in services or name is None or current.get(name) == image_id:
                continue
            if services[service].get("build") and "@" not in name:
                out(f"{name}: tagged back to release {release.id}'s image")
                self.engine.tag(image_id, normalize_image(name))
            elif service in release.tags:
                services[service]["image"] = release.tags[service]
                services[service]["pull_policy"] = "never"
                changed.add(service)
        restore = folder / RESTORE_FILE
        write_private(restore, json.dumps(raw, indent=1).encode())
        env = folder / "env"
        project = ComposeProject(
            project_name=self.settings.project_name,
            project_dir=self.settings.project_dir,
            compose_files=(restore,),
            env_file=env if env.exists() else None,
            docker=self.engine.project.docker,
            earlier_env_files=_earlier_env_copies(folder),
        )
        return Restore(project, tuple(sorted(force - changed)), tuple(manifest.get("not_kept") or ()))

    def project(self, release: Release) -> ComposeProject:
        folder = Path(release.files_dir)
        files = sorted(folder.glob("[0-9]*-*"), key=lambda p: int(p.name.split("-", 1)[0]))
        if not files:
            raise PhaseFailed(f"release {release.id}: its compose files are gone from {folder}")
        env = folder / "env"
        return ComposeProject(
            project_name=self.settings.project_name,
            project_dir=self.settings.project_dir,
            compose_files=(*files, folder / "pins.yaml"),
            env_file=env if env.exists() else None,
            docker=self.engine.project.docker,
            earlier_env_files=_earlier_env_copies(folder),
        )

    def missing_images(self, release: Release) -> list[str]:
        present = self.engine.image_ids(list(release.tags.values()))
        return [tag for tag, image_id in present.items() if image_id is None]

    @staticmethod
    def kept_releases(releases: Sequence[Release], keep: int, current: int | None, running: int) -> set[int]:
        """The ``keep`` newest of the healthy releases and the one being deployed, plus the current one."""
        candidates = {r.id for r in releases if r.outcome == "healthy"} | {running}
        kept = set(sorted(candidates, reverse=True)[:keep])
        if current is not None:
            kept.add(current)
        return kept

    def forget_files(self, release_id: int) -> None:
        shutil.rmtree(self.folder(release_id), ignore_errors=True)
