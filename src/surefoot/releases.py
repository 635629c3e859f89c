"""Releases: what each deployment put into service, pinned so it can be restored.

A release is recorded when a deployment reaches ``services-start``: the image id
of every service, each pinned by a tag of ours (``surefoot.local/PROJECT/SERVICE:rN``)
so that a later rebuild of ``PROJECT-SERVICE:latest`` cannot take it away; copies
of the compose files and the env file (0600) in ``STATE_DIR/releases/N/``; and a
``pins.yaml`` override that points each service at its pinned image. Restoring
a release is ``compose up`` with those copies and pins, with no build and no pull.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from surefoot.compose import Compose, Target
from surefoot.config import Settings
from surefoot.errors import PhaseFailed
from surefoot.pipeline import Facts
from surefoot.state import Release, now_iso

TAG_REGISTRY = "surefoot.local"
TAG_WORKERS = 8


def pin_tag(project: str, service: str, release_id: int) -> str:
    safe = re.sub(r"[^a-z0-9_.-]", "-", service.lower()).strip("-.") or "service"
    return f"{TAG_REGISTRY}/{project}/{safe}:r{release_id}"


def pins_yaml(tags: dict[str, str]) -> str:
    """A compose override that runs each service from its pinned image (JSON is valid YAML)."""
    import json

    services = {service: {"image": tag, "pull_policy": "never"} for service, tag in sorted(tags.items())}
    return json.dumps({"services": services}, indent=2) + "\n"


def git_commit(folder: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


@dataclass
class ReleaseKeeper:
    settings: Settings
    state_dir: Path
    compose: Compose

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
            self.compose.tag(str(images[service]), tags[service])

        # One tag per service, several at a time (a 30-service stack would wait 30 round trips).
        with ThreadPoolExecutor(TAG_WORKERS, thread_name_prefix="pin") as pool:
            list(pool.map(pin, tags))
        folder = self.folder(release_id)
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        for index, file in enumerate(self.settings.compose_files):
            _write_private(folder / f"{index}-{file.name}", file.read_bytes())
        if self.settings.env_file is not None and self.settings.env_file.exists():
            _write_private(folder / "env", self.settings.env_file.read_bytes())
        for index, earlier in enumerate(self.settings.earlier_env_files):  # env_file: a list
            if earlier.exists():
                _write_private(folder / f"env-{index}", earlier.read_bytes())
        _write_private(folder / "pins.yaml", pins_yaml(tags).encode())
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
            git_commit=git_commit(self.settings.project_dir),
            files_dir=str(folder),
            backup_path=str(backup) if backup.exists() else None,
        )

    def target(self, release: Release) -> Target:
        folder = Path(release.files_dir)
        files = sorted(folder.glob("[0-9]*-*"), key=lambda p: int(p.name.split("-", 1)[0]))
        if not files:
            raise PhaseFailed(f"release {release.id}: its compose files are gone from {folder}")
        env = folder / "env"
        return Target(
            project_name=self.settings.project_name,
            project_dir=self.settings.project_dir,
            compose_files=(*files, folder / "pins.yaml"),
            env_file=env if env.exists() else None,
            docker=self.compose.target.docker,
            earlier_env_files=tuple(sorted(folder.glob("env-[0-9]*"), key=lambda p: int(p.name[4:]))),
        )

    def missing_images(self, release: Release) -> list[str]:
        present = self.compose.image_ids(list(release.tags.values()))
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
