"""What ``surefoot init`` writes: the commented ``surefoot.toml`` for an
:class:`~surefoot.cli.starter.detect.Inference`, and the ``.gitignore`` and ``.dockerignore``
lines that keep the state folder (it holds copies of the env file) out of git and out of
every build context. Text in, text out: the CLI writes the files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from surefoot.cli.starter.detect import Inference


def _toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a TOML basic string


def render(inference: Inference) -> str:
    """The commented surefoot.toml."""
    lines = [
        "# surefoot.toml, written by `surefoot init` from the compose files: review it, then",
        "# `surefoot deploy`. Every key is optional; the README lists them all.",
        "",
        "[project]",
        f"name = {_toml(inference.project_name)}                 # the compose project name",
        "compose_files = [" + ", ".join(_toml(f) for f in inference.compose_files) + "]",
    ]
    if inference.env_file:
        lines.append(f"env_file = {_toml(inference.env_file)}        # given to compose as --env-file")
    else:
        lines.append('# env_file = ".env.production"   # given to compose as --env-file (none found)')
    lines += ["", "[phases.database-start]"]
    if inference.databases:
        found = ", ".join(f"{name} ({kind})" for name, kind in inference.databases.items())
        lines += [
            f"# recognised by image or healthcheck: {found}",
            "services = [" + ", ".join(_toml(name) for name in inference.databases) + "]",
            'timeout = "120s"                # until each is healthy (or running, without a healthcheck)',
        ]
    else:
        lines += ["# no database service recognised: list them to start them first and wait for them",
                  '# services = ["db"]']
    service = inference.migrate_service or "app"
    lines += [
        "",
        "# The migration runs in a one-off container of the service, after the databases",
        "# and before the new release starts (its command follows the image's ENTRYPOINT).",
    ]
    if inference.migration is not None:
        migration = inference.migration
        lines += [
            f"# found: {migration.why}",
            "[phases.database-migrate]",
            f"service = {_toml(migration.service)}",
            "command = [" + ", ".join(_toml(word) for word in migration.command) + "]",
            'timeout = "10m"',
            "# other frameworks:",
        ]
    else:
        lines += ["# Uncomment and pick the command:", "# [phases.database-migrate]", f"# service = {_toml(service)}"]
    lines += [
        '# command = ["python3", "manage.py", "migrate"]         # Django',
        '# command = ["alembic", "upgrade", "head"]              # SQLAlchemy / Alembic',
        '# command = ["bundle", "exec", "rails", "db:migrate"]   # Rails',
        '# command = ["npx", "prisma", "migrate", "deploy"]      # Prisma',
        '# command = ["php", "artisan", "migrate", "--force"]    # Laravel',
    ]
    if inference.migration is None:
        lines.append('# timeout = "10m"')
    lines += [
        "",
        "[phases.health-wait]",
    ]
    health = inference.health
    if health is None:
        lines += [
            "# nothing found to probe: without a probe nothing checks that the application answers",
            '# url = "http://127.0.0.1:8080/health"',
        ]
    elif health.url is not None:
        lines.append(f"# proposed: {health.why}")
        if inference.resolved_from:
            lines.append(f"# (the port read from {inference.env_file}: {', '.join(inference.resolved_from)})")
        if health.guessed:
            lines += [
                "# the path is a guess (no healthcheck names one): check that the application answers it,",
                "# and prefer a path that answers 200 only when it is healthy",
                f"url = {_toml(health.url)}",
                'expect_status = "200-399"       # any answer below 400: the application runs and answers',
            ]
        else:
            lines += [f"url = {_toml(health.url)}", "expect_status = 200"]
        lines += ["# expect_body = '\"status\":\"ok\"'      # a substring the body must contain"]
        if health.insecure:
            lines.append("insecure = true                 # accept a self-signed certificate on this port")
        lines += [
            "consecutive = 3                 # passes in a row",
            'interval = "1s"',
            'timeout = "2m"',
        ]
    else:
        lines += [
            f"# proposed: {health.why}; its compose healthcheck must say healthy",
            '# url = "http://127.0.0.1:8080/health"   # better: an HTTP probe on a published port',
            "[[phases.health-wait.probes]]",
            f"service = {_toml(health.service)}",
            'timeout = "2m"',
        ]
    lines += [
        "",
        "# [rollback]",
        "# automatic = true               # restore the previous release when the rollout fails",
        "",
    ]
    return "\n".join(lines)


def dockerignores_with_state(services: Mapping[str, Mapping[str, Any]], state_dir: Path) -> dict[Path, str]:
    """The ignore files to write (path -> new text) so that no build context sends ``state_dir``
    to the builder (``build`` refuses to run while one would): ``/<its path in the context>``
    added to the ignore file the builder reads for each context that holds it."""
    from surefoot.config import dockerignore

    updates: dict[Path, str] = {}
    for service in services.values():
        build = service.get("build")
        if not isinstance(build, Mapping) or not build.get("context") or build.get("dockerfile_inline"):
            continue
        context = Path(str(build["context"]))
        dockerfile = context / str(build.get("dockerfile") or "Dockerfile")
        matcher, ignore = dockerignore.load(context, dockerfile)
        if not context.is_dir() or not dockerignore.state_exposed(context, matcher, state_dir):
            continue
        path = ignore or context / dockerignore.IGNORE_FILE
        entry = "/" + Path(os.path.realpath(state_dir)).relative_to(os.path.realpath(context)).as_posix()
        text = updates.get(path) or (path.read_text() if path.is_file() else "")
        if text and not text.endswith("\n"):
            text += "\n"
        updates[path] = text + "# surefoot's state: the env file's copies and backups never go into an image\n" \
            + entry + "\n"
    return updates


def gitignore_with_state(text: str | None, entry: str = ".surefoot/") -> str | None:
    """The .gitignore with ``entry`` added, or None when it already ignores the folder."""
    bare = entry.strip("/")
    for line in (text or "").splitlines():
        if line.strip() in (bare, f"{bare}/", f"/{bare}", f"/{bare}/", f"{bare}/*", f"/{bare}/*"):
            return None
    prefix = text or ""
    if prefix and not prefix.endswith("\n"):
        prefix += "\n"
    return prefix + "# surefoot's state: it holds copies of the env file\n" + entry + "\n"
