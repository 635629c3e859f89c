"""preflight's build checks: what the builds fetch (each Dockerfile's frontend and base
images), at hand on this machine or reachable."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from surefoot.base.errors import ConfigError
from surefoot.config import dockerignore
from surefoot.deploy.api import PhaseContext
from surefoot.engines.base import HERE
from surefoot.engines.compose.model import ComposeModel
from surefoot.hosts import checks
from surefoot.hosts.checks import CheckResult, registry_host


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
    """Whether each image is on the engine that builds (this machine's, or a server's);
    Docker Hub's long names read as its short ones."""
    def short(image: str) -> str:
        for prefix in ("docker.io/", "index.docker.io/"):
            image = image.removeprefix(prefix)
        return image.removeprefix("library/")

    tagged = [image for image in images if "@" not in image]
    builder = ctx.engine.build_engine()
    known = builder.image_ids([short(image) for image in tagged])
    found = {image: bool(known.get(short(image))) for image in tagged}
    for image in images:
        if "@" in image:  # pinned by digest: the tags do not say, the engine does
            found[image] = builder.image_present(image, timeout=30)
    return found


def exposed_contexts(model: ComposeModel, services: list[str], state_dir: Path) -> dict[Path, tuple[Path, str]]:
    """The build contexts that would send the state folder (the state database, logs, the
    release copies of the env file, the backups) to the builder, where ``COPY . .`` would put it
    into an image layer: each with its ignore file and the line that leaves the folder out."""
    exposed: dict[Path, tuple[Path, str]] = {}
    for service in services:
        context = model.build_context(service) if service in model.services else None
        if context is None or context in exposed:
            continue
        matcher, ignore = dockerignore.load(context, model.dockerfile(service))
        if dockerignore.state_exposed(context, matcher, state_dir):
            entry = Path(os.path.realpath(state_dir)).relative_to(os.path.realpath(context)).as_posix()
            exposed[context] = (ignore or context / dockerignore.IGNORE_FILE, f"/{entry}")
    return exposed


def exposure_message(state_dir: Path, exposed: dict[Path, tuple[Path, str]]) -> str:
    lines = [f"add the line `{line}` to {ignore}" for ignore, line in exposed.values()]
    return (f"the state folder {state_dir} is inside the build context {', '.join(str(c) for c in exposed)} "
            "and would be sent to the builder (an image could keep the env file copies and backups): "
            + "; ".join(lines) + ", or keep the state elsewhere with --state-dir or SUREFOOT_STATE_DIR")


def state_check(ctx: PhaseContext, record: Callable[[CheckResult], None], services: list[str],
                model: ComposeModel) -> None:
    """No build context may send the state folder: before anything changes (exit 2). On a
    terminal, the operator is offered the line that leaves it out, added to the ignore file."""
    exposed = exposed_contexts(model, services, ctx.state_dir)
    if not exposed:
        return
    if ctx.prompter is not None and all(line != "/." for _, line in exposed.values()):
        with ctx.prompter.session():
            ctx.prompter.show(exposure_message(ctx.state_dir, exposed))
            add = ctx.prompter.confirm("Add these lines now?")
        if add:
            for ignore, line in exposed.values():
                text = ignore.read_text() if ignore.exists() else ""
                ignore.write_text(text + ("" if not text or text.endswith("\n") else "\n")
                                  + f"# the state folder of surefoot (never in an image)\n{line}\n")
                ctx.out(f"{ignore}: added {line}")
            record(CheckResult("build", "pass", "the state folder is left out of every build context (lines added)"))
            return
    raise ConfigError(exposure_message(ctx.state_dir, exposed))


def build_checks(ctx: PhaseContext, record: Callable[[CheckResult], None], model: ComposeModel) -> None:
    """What the builds fetch: each Dockerfile's ``# syntax=`` frontend and the images its
    built stages start from. One not on this machine needs its registry: fail when that
    does not answer, warn when it does (the build will pull it)."""
    from surefoot.config.dockerfile import needs

    wanted: dict[str, list[str]] = {}  # image -> what needs it
    problems: list[str] = []
    services = [s for s in ctx.facts.build_services() if s in model.services and model.services[s].get("build")]
    state_check(ctx, record, services, model)
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
    site = ctx.engine.build_engine().site
    here = site == HERE
    # The registry is asked from where the build runs: this machine, or the server that builds.
    builder = (ctx.control or ctx.host) if here else ctx.host
    for image in missing:
        host = registry_host(image)
        if host not in registries:
            registries[host] = checks.registry_status(builder, host)
        status, error = registries[host]
        needed_by = ", ".join(wanted[image])
        if status is None:
            problems.append(f"{image} (needed by {needed_by}) is not on {site} and {host} "
                            f"does not answer {'it' if here else 'there'} ({error})")
        else:
            warned.append(f"{image} (needed by {needed_by}) is not on {site}: the build pulls it "
                          f"from {host} (HTTP {status})")
    if problems:
        fix = ("load the images (docker load), make the registry reachable, or fix the Dockerfile" if here else
               'build on this machine instead (build = "control" in the target\'s table), use a registry the '
               "server reaches, or load the images there (docker load)")
        record(CheckResult("build", "fail", "; ".join(problems + warned), "what the builds need, at hand", fix))
    elif warned:
        record(CheckResult("build", "warn", "; ".join(warned)))
    else:
        record(CheckResult("build", "pass", f"{len(services)} build(s): "
                           + (f"{len(wanted)} base image(s) on {site}" if wanted else "no base image")))
