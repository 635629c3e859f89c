"""``surefoot init``: the inference on compose models (pure), and the command on real files."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from conftest import REPO, Project, Projects
from surefoot.cli import starter as scaffold
from surefoot.config.settings import load_settings


def test_interpolation_follows_compose() -> None:
    env = {"PORT": "8081", "EMPTY": ""}
    assert scaffold.interpolate("127.0.0.1:${PORT}:80", env) == "127.0.0.1:8081:80"
    assert scaffold.interpolate("${MISSING:-9000}:80", env) == "9000:80"
    assert scaffold.interpolate("${EMPTY:-7}|${EMPTY-7}|${EMPTY:+x}|${PORT:+x}", env) == "7|||x"
    assert scaffold.interpolate("$PORT $$PORT ${PORT:?required}", env) == "8081 $PORT 8081"


def test_compose_files_base_and_production_override() -> None:
    assert scaffold.choose_compose_files(["compose.yaml", "compose.production.yaml", "x"]) == [
        "compose.yaml", "compose.production.yaml"]
    assert scaffold.choose_compose_files(["docker-compose.yml", "docker-compose.prod.yml",
                                          "docker-compose.override.yml"]) == [
        "docker-compose.yml", "docker-compose.prod.yml"]
    assert scaffold.choose_compose_files(["compose.yaml", "compose.override.yaml"]) == [
        "compose.yaml", "compose.override.yaml"]
    assert scaffold.choose_compose_files(["Dockerfile"]) == []


def test_env_file_prefers_production() -> None:
    assert scaffold.choose_env_file([".env", ".env.prod", ".env.production"]) == ".env.production"
    assert scaffold.choose_env_file([".env", ".env.prod"]) == ".env.prod"
    assert scaffold.choose_env_file([".env"]) == ".env"
    assert scaffold.choose_env_file(["env"]) is None


def test_databases_recognised_by_image_or_healthcheck() -> None:
    assert scaffold.database_kind({"image": "postgres:16-alpine"}) == "PostgreSQL"
    assert scaffold.database_kind({"image": "docker.io/bitnami/mariadb:11"}) == "MariaDB"
    assert scaffold.database_kind({"image": "redis@sha256:abc"}) == "Redis"
    assert scaffold.database_kind({"image": "mongo"}) == "MongoDB"
    assert scaffold.database_kind({"build": {"context": "db"},
                                   "healthcheck": {"test": ["CMD-SHELL", "pg_isready -U x"]}}) == "PostgreSQL"
    assert scaffold.database_kind({"build": {}, "healthcheck": {"test": "mysqladmin ping"}}) == "MySQL"
    assert scaffold.database_kind({"image": "nginx", "healthcheck": {"test": ["CMD", "curl", "-f", "http://x/"]}}) is None
    assert scaffold.database_kind({"image": "myapp", "healthcheck": {"disable": True, "test": ["NONE"]}}) is None


def test_published_ports_short_and_long_syntax() -> None:
    env = {"HTTP_PORT": "8088"}
    service = {"ports": ["127.0.0.1:${HTTP_PORT:-8080}:80", "9000:9000/tcp", "5000", "[::1]:7000:70",
                         {"target": 8000, "published": "${HTTP_PORT}", "host_ip": "0.0.0.0"}, "3000-3001:3000-3001"]}
    assert scaffold.published_ports(service, env) == [
        scaffold.Published("127.0.0.1", 8088, 80), scaffold.Published("", 9000, 9000),
        scaffold.Published("::1", 7000, 70), scaffold.Published("0.0.0.0", 8088, 8000),
        scaffold.Published("", 3000, 3000)]


def test_health_probe_from_a_published_http_port_or_a_healthcheck() -> None:
    services = {
        "db": {"image": "postgres:16", "ports": ["5432:5432"]},
        "web": {"image": "app", "ports": ["${PORT}:8000"],
                "healthcheck": {"test": ["CMD", "wget", "-qO-", "http://localhost:8000/healthz"]}},
    }
    proposal = scaffold.propose_health(services, {"PORT": "8123"}, ["db"])
    assert proposal is not None and proposal.url == "http://127.0.0.1:8123/healthz"
    assert proposal.with_path("ready").url == "http://127.0.0.1:8123/ready"
    # No healthcheck path: /, a guess (any answer below 400), to be confirmed.
    bare = scaffold.propose_health({"proxy": {"image": "nginx", "ports": ["80:80"]}}, {})
    assert bare is not None and bare.url == "http://127.0.0.1:80/" and bare.guessed
    tls = scaffold.propose_health({"proxy": {"image": "caddy", "ports": ["8443:443"]}}, {})
    assert tls is not None and tls.url == "https://127.0.0.1:8443/" and tls.insecure and tls.guessed
    assert proposal.guessed is False
    # No published HTTP port: the state of a service with a healthcheck.
    state = scaffold.propose_health({"worker": {"image": "w", "healthcheck": {"test": ["CMD", "true"]}}}, {})
    assert state is not None and state.url is None and state.service == "worker"
    assert scaffold.propose_health({"db": {"image": "redis", "ports": ["6379:6379"]}}, {}, ["db"]) is None


def _load(tmp_path: Path, text: str, files: list[str]) -> None:
    for name in files:
        (tmp_path / name).write_text("services: {}\n")
    (tmp_path / "surefoot.toml").write_text(text)
    load_settings(tmp_path)  # raises ConfigError when the generated file is not valid


def test_every_rendered_file_is_valid_configuration(tmp_path: Path) -> None:
    model = {"services": {
        "db": {"image": "postgres"}, "cache": {"image": "redis:7"},
        "api": {"build": {"context": "."}, "ports": ["127.0.0.1:${API_PORT:-8000}:8000"]},
    }}
    names = ["compose.yaml", "compose.prod.yaml", ".env.prod"]
    inference = scaffold.infer("shop", names, model, "API_PORT=8111\n")
    assert inference.compose_files == ["compose.yaml", "compose.prod.yaml"]
    assert inference.databases == {"db": "PostgreSQL", "cache": "Redis"}
    assert inference.migrate_service == "api"
    text = scaffold.render(inference)
    parsed = tomllib.loads(text)
    assert parsed["project"] == {"name": "shop", "compose_files": ["compose.yaml", "compose.prod.yaml"],
                                 "env_file": ".env.prod"}
    assert parsed["phases"]["database-start"]["services"] == ["db", "cache"]
    assert parsed["phases"]["health-wait"]["url"] == "http://127.0.0.1:8111/"
    assert parsed["phases"]["health-wait"]["expect_status"] == "200-399"
    assert "# the path is a guess" in text
    assert "database-migrate" not in parsed["phases"]  # left commented, with examples
    assert '# command = ["alembic", "upgrade", "head"]' in text
    (tmp_path / ".env.prod").write_text("API_PORT=8111\n")
    _load(tmp_path, text, inference.compose_files)
    # Nothing to recognise: still valid, with the probe left for the operator.
    for model in ({"services": {"app": {"image": "x"}}},
                  {"services": {"worker": {"image": "x", "healthcheck": {"test": ["CMD", "true"]}}}}):
        empty = scaffold.render(scaffold.infer("p", ["compose.yaml"], model))
        (tmp_path / "surefoot.toml").unlink()
        _load(tmp_path, empty, ["compose.yaml"])


def test_gitignore_gets_the_state_folder_once() -> None:
    assert scaffold.gitignore_with_state(None) == "# surefoot's state: it holds copies of the env file\n.surefoot/\n"
    assert scaffold.gitignore_with_state("node_modules") == (
        "node_modules\n# surefoot's state: it holds copies of the env file\n.surefoot/\n")
    assert scaffold.gitignore_with_state("x\n/.surefoot\n") is None
    assert scaffold.gitignore_with_state(".surefoot/\n") is None


def test_init_keeps_the_state_folder_out_of_every_build_context(tmp_path: Path) -> None:
    from surefoot.config import dockerignore

    project = tmp_path / "project"
    state = project / ".surefoot"
    (project / "api").mkdir(parents=True)
    services = {
        "root": {"build": {"context": str(project)}},  # `build: .`: holds the state folder
        "root-again": {"build": {"context": str(project), "dockerfile": "Dockerfile"}},
        "api": {"build": {"context": str(project / "api")}},  # does not hold it
        "outer": {"build": {"context": str(tmp_path)}},  # holds it, with an ignore file of its own
        "db": {"image": "postgres:16"},
    }
    (tmp_path / ".dockerignore").write_text("*.log")
    updates = scaffold.dockerignores_with_state(services, state)
    assert sorted(updates) == [tmp_path / ".dockerignore", project / ".dockerignore"]
    assert updates[project / ".dockerignore"].splitlines()[-1] == "/.surefoot"
    assert updates[tmp_path / ".dockerignore"].startswith("*.log\n")
    assert updates[tmp_path / ".dockerignore"].endswith("/project/.surefoot\n")
    for path, text in updates.items():
        path.write_text(text)
    for context in (project, tmp_path):
        matcher, _ = dockerignore.load(context)
        assert not dockerignore.state_exposed(context, matcher, state)  # what build checks
    assert scaffold.dockerignores_with_state(services, state) == {}  # once


def test_init_imports_no_heavy_module() -> None:
    import subprocess
    import sys

    code = "import sys, surefoot.cli.starter; print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic','rich')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- the command, on real compose files ------------------------------------------------------

APP_COMPOSE = """
services:
  cache:
    image: {image}
    command: ["sh", "-c", "touch /tmp/ready; exec sleep 3600"]
    stop_signal: SIGKILL
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready || redis-cli ping"]
      interval: 1s
  web:
    image: {image}
    stop_signal: SIGKILL
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/health && echo home > /www/index.html && exec httpd -f -p 8000 -h /www"]
"""
APP_PRODUCTION = """
services:
  web:
    ports: ["127.0.0.1:${{WEB_PORT:-8080}}:8000"]
"""


@pytest.mark.docker
def test_init_writes_a_file_with_which_deploy_passes_its_health_gate(projects: Projects) -> None:
    project = projects.new({"compose.yaml": APP_COMPOSE, "compose.production.yaml": APP_PRODUCTION,
                            ".env": "WEB_PORT=1\n", ".env.production": "WEB_PORT={port}\n",
                            ".gitignore": "node_modules/"})
    result = project.run("init", "--non-interactive")
    assert result.returncode == 0, result.stderr
    config = tomllib.loads((project.path / "surefoot.toml").read_text())
    assert config["project"]["name"] == project.name  # the folder's name
    assert config["project"]["compose_files"] == ["compose.yaml", "compose.production.yaml"]
    assert config["project"]["env_file"] == ".env.production"
    assert config["phases"]["database-start"]["services"] == ["cache"]
    assert config["phases"]["health-wait"]["url"] == f"http://127.0.0.1:{project.port}/"  # a guess: /
    assert config["phases"]["health-wait"]["expect_status"] == "200-399"
    assert (project.path / ".gitignore").read_text().splitlines()[-1] == ".surefoot/"
    deploy = project.run("deploy")
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    phases = {p["name"]: p["status"] for p in project.status()["phases"]}
    assert phases["health-wait"] == phases["database-start"] == "completed"
    assert "health-wait: completed" in deploy.stdout and "nothing checked" not in deploy.stderr
    # It never overwrites, and the .gitignore keeps one entry.
    before = (project.path / "surefoot.toml").read_text()
    (project.path / ".gitignore").write_text("node_modules/\n.surefoot/\n")
    again = project.run("init", "--non-interactive")
    assert again.returncode == 2
    assert "already exists" in again.stderr and "Traceback" not in again.stderr
    assert (project.path / "surefoot.toml").read_text() == before


@pytest.mark.docker
def test_init_without_a_compose_file_exits_2(tmp_path: Path, docker: None) -> None:
    project = Project(tmp_path, "none", 0)
    (tmp_path / "README").write_text("no compose here")
    result = project.run("init", "--non-interactive")
    assert result.returncode == 2
    assert "no compose file here" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "surefoot.toml").exists()
    assert not (tmp_path / ".gitignore").exists()


@pytest.mark.docker
@pytest.mark.example
def test_init_on_the_example_passes_the_health_gate_without_edits(docker: None, tmp_path: Path) -> None:
    """The example's compose files, its surefoot.toml removed, copied under a unique folder
    name (the project name init infers) with its published port moved to a free one, as
    tests/test_example.py does."""
    import uuid

    from conftest import free_port

    name = f"sft-shop-{uuid.uuid4().hex[:8]}"
    project = Project(tmp_path / name, name, free_port())
    shutil.copytree(REPO / "examples" / "shop", project.path, ignore=shutil.ignore_patterns(".surefoot"))
    (project.path / "surefoot.toml").unlink()
    env = (project.path / ".env.production").read_text().replace("HTTP_PORT=8080", f"HTTP_PORT={project.port}")
    project.write(".env.production", env)
    try:
        result = project.run("init", "--non-interactive")
        assert result.returncode == 0, result.stderr
        config = tomllib.loads((project.path / "surefoot.toml").read_text())
        assert config["phases"]["database-start"]["services"] == ["cache", "db"]
        assert config["phases"]["health-wait"]["url"] == f"http://127.0.0.1:{project.port}/"
        deploy = project.run("deploy", timeout=900)
        assert deploy.returncode == 0, deploy.stdout[-4000:] + deploy.stderr
        phases = {p["name"]: p["status"] for p in project.status()["phases"]}
        assert phases["health-wait"] == "completed"
        assert phases["database-start"] == "completed"
    finally:
        project.teardown()


def test_migration_found_in_the_build_context() -> None:
    dockerfile = "FROM debian\nWORKDIR /srv\nCOPY app/ /app/\nCOPY tools/migrate.sh ./bin/\nCMD [\"python3\", \"-u\", \"/app/server.py\"]\n"
    assert scaffold.image_path(dockerfile, "app/migrate.py") == "/app/migrate.py"
    assert scaffold.image_path(dockerfile, "tools/migrate.sh") == "/srv/bin/migrate.sh"
    assert scaffold.image_path("FROM x\nWORKDIR /code\nCOPY . .\n", "db/migrate.py") == "/code/db/migrate.py"
    assert scaffold.image_path("FROM x\nCOPY --from=build /out /out\n", "out/migrate.py") is None
    found = scaffold.propose_migration("api", ["app/server.py", "app/migrate.py"], dockerfile)
    assert found is not None and found.command == ("python3", "/app/migrate.py")
    django = scaffold.propose_migration("web", ["manage.py", "app/migrate.py"], "FROM python\nCOPY . /code\n")
    assert django is not None and django.command[:3] == ("python", "manage.py", "migrate")
    # With an ENTRYPOINT the command would become its arguments: left to the operator.
    assert scaffold.propose_migration("api", ["manage.py"], "FROM x\nENTRYPOINT [\"/run.sh\"]\n") is None
    assert scaffold.propose_migration("api", ["server.py"], dockerfile) is None


@pytest.mark.docker
def test_init_on_the_example_infers_its_hand_written_configuration(docker: None, tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    shutil.copytree(REPO / "examples" / "shop", folder, ignore=shutil.ignore_patterns(".surefoot"))
    written = tomllib.loads((folder / "surefoot.toml").read_text())
    (folder / "surefoot.toml").unlink()
    result = Project(folder, "shop", 0).run("init", "--non-interactive")
    assert result.returncode == 0, result.stderr
    inferred = tomllib.loads((folder / "surefoot.toml").read_text())
    assert inferred["project"] == written["project"]
    phases, expected = inferred["phases"], written["phases"]
    assert sorted(phases["database-start"]["services"]) == sorted(expected["database-start"]["services"])
    for key in ("service", "command"):
        assert phases["database-migrate"][key] == expected["database-migrate"][key]
    # The example's nginx has no healthcheck to name a path: init probes / (a guess, any answer
    # below 400), where the hand-written file knows the API's /health.
    assert phases["health-wait"]["url"] == expected["health-wait"]["url"].removesuffix("health")
    assert phases["health-wait"]["expect_status"] == "200-399"
    load_settings(folder)


@pytest.mark.docker
def test_init_on_a_terminal_asks_for_the_health_path(projects: Projects) -> None:
    import os
    import pty
    import select
    import subprocess
    import time

    project = projects.new({"compose.yaml": APP_COMPOSE, "compose.prod.yml": APP_PRODUCTION,
                            ".env.prod": "WEB_PORT={port}\n"})
    main, secondary = pty.openpty()
    process = subprocess.Popen(project.command("init"), stdin=secondary, stdout=secondary, stderr=secondary)
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 60
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"healthy [/]:" in seen:
            os.write(main, b"/ready\r")
            answered = True
        if process.poll() is not None and not ready:
            break
    process.wait(timeout=30)
    os.close(main)
    assert process.returncode == 0, seen.decode(errors="replace")
    config = tomllib.loads((project.path / "surefoot.toml").read_text())
    assert config["project"]["compose_files"] == ["compose.yaml", "compose.prod.yml"]
    assert config["project"]["env_file"] == ".env.prod"
    assert config["phases"]["health-wait"]["url"] == f"http://127.0.0.1:{project.port}/ready"
