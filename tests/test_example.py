"""The bundled example, deployed end to end: PostgreSQL, Redis, the API and the proxy."""

from __future__ import annotations

import json
import shutil
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO, Project, free_port

pytestmark = [pytest.mark.docker, pytest.mark.example]


@pytest.fixture
def shop(docker: None, tmp_path: Path) -> Iterator[Project]:
    name = f"sft-shop-{uuid.uuid4().hex[:8]}"
    project = Project(tmp_path / "shop", name, free_port())
    shutil.copytree(REPO / "examples" / "shop", project.path,
                    ignore=shutil.ignore_patterns(".surefoot"))
    config = (project.path / "surefoot.toml").read_text()
    config = config.replace('name = "shop"', f'name = "{name}"').replace(
        "127.0.0.1:8080", f"127.0.0.1:{project.port}"
    )
    project.write("surefoot.toml", config)
    env = (project.path / ".env.production").read_text().replace("HTTP_PORT=8080", f"HTTP_PORT={project.port}")
    project.write(".env.production", env)
    try:
        yield project
    finally:
        project.teardown()


def get(project: Project, path: str) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{project.port}{path}", timeout=10) as response:
        return dict(json.loads(response.read()))


def test_the_example_deploys_end_to_end(shop: Project) -> None:
    result = shop.run("deploy", timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    status = shop.status()
    assert status["state"] == "completed"
    assert status["resume_at"] is None
    statuses = {p["name"]: p["status"] for p in status["phases"]}
    assert len(statuses) == 11  # with verify
    # Every service of the example is built here: there is nothing to pull.
    assert statuses.pop("pull-images") == "skipped"
    assert set(statuses.values()) == {"completed"}
    assert "every service is built here: nothing to pull" in result.stdout
    assert get(shop, "/health") == {"status": "healthy", "database": "ok", "cache": "ok"}
    assert [item["name"] for item in get(shop, "/api/items")["items"]] == ["tea", "coffee"]  # type: ignore[index]
    # Secrets from the env file never reach the logs surefoot wrote.
    secrets = ("example-db-password-change-me", "example-cache-password-change-me")
    for log in (shop.path / ".surefoot" / "logs").rglob("*.log"):
        text = log.read_text()
        assert not any(secret in text for secret in secrets), log

    # An update: a new release number reaches the API through the env file.
    env = (shop.path / ".env.production").read_text().replace("APP_RELEASE=1", "APP_RELEASE=2")
    shop.write(".env.production", env)
    update = shop.run("deploy", timeout=900)
    assert update.returncode == 0, update.stdout[-4000:] + update.stderr
    assert shop.status()["deployment"]["kind"] == "update"
    assert get(shop, "/api/info") == {"release": "2"}
    assert get(shop, "/health")["status"] == "healthy"
    # Each release's migration was preceded by a backup; the second one holds the first's tables.
    backups = shop.path / ".surefoot" / "backups"
    assert "CREATE TABLE public.items" in (backups / "release-2.dump").read_text()
    assert (backups / "release-2.dump").stat().st_mode & 0o777 == 0o600
    history = json.loads(shop.run("history", "--json").stdout)
    assert [(r["id"], r["outcome"]) for r in history["releases"]] == [(2, "healthy"), (1, "healthy")]
    assert history["releases"][0]["backup"].endswith("release-2.dump")
