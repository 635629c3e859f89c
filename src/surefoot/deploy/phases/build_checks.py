"""preflight's build checks: what the builds fetch (each Dockerfile's frontend and base
images), at hand on this machine or reachable."""

from __future__ import annotations

from collections.abc import Callable

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


def build_checks(ctx: PhaseContext, record: Callable[[CheckResult], None], model: ComposeModel) -> None:
    """What the builds fetch: each Dockerfile's ``# syntax=`` frontend and the images its
    built stages start from. One not on this machine needs its registry: fail when that
    does not answer, warn when it does (the build will pull it)."""
    from surefoot.config.dockerfile import needs

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
    site = ctx.engine.build_engine().site
    for image in missing:
        host = registry_host(image)
        if site != HERE:  # the server pulls it: whether the registry answers there is not seen from here
            warned.append(f"{image} (needed by {', '.join(wanted[image])}) is not on {site}: its build pulls "
                          f"it from {host}")
            continue
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
                           + (f"{len(wanted)} base image(s) on {site}" if wanted else "no base image")))
