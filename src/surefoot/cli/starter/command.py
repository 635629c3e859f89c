"""``surefoot init``'s body: read the compose files in the project folder (``docker compose
config``), infer a configuration (:mod:`surefoot.cli.starter`), ask the operator about the migration
command and the health path, write ``surefoot.toml`` (never over an existing one) and add the
state folder to the ignore files. ``cli.py`` imports this module inside ``init``.
"""

from __future__ import annotations

import json
import shlex
import sys

import click

from surefoot.base.errors import ConfigError, ExitCode
from surefoot.cli.options import GlobalOptions


def run_init(opts: GlobalOptions, non_interactive: bool) -> int:
    """Write a commented surefoot.toml inferred from the compose files of ``opts.project_dir``."""
    from surefoot.cli import starter as scaffold
    from surefoot.config.project import COMPOSE_CANDIDATES, CONFIG_NAME, default_project_name
    from surefoot.engines.compose.argv import ComposeProject, compose_args

    folder = opts.project_dir
    path = opts.config or folder / CONFIG_NAME
    if not folder.is_dir():
        raise ConfigError(f"{folder}: project folder not found")
    if path.exists():
        raise ConfigError(f"{path}: already exists; surefoot init never overwrites it (remove it first)")
    names = sorted(entry.name for entry in folder.iterdir() if entry.is_file())
    files = scaffold.choose_compose_files(names)
    if not files:
        raise ConfigError(f"{folder}: no compose file here (looked for {', '.join(COMPOSE_CANDIDATES)})")
    name = default_project_name(folder)
    argv = compose_args(ComposeProject(name, folder, tuple(folder / f for f in files)),
                        "config", "--no-interpolate", "--format", "json")
    from surefoot.base.errors import CommandNotFound, CommandTimeout
    from surefoot.proc import capture_once

    try:
        done = capture_once(argv, timeout=120)
    except (OSError, CommandNotFound, CommandTimeout) as exc:
        raise ConfigError(f"cannot read the compose files with `docker compose config`: {exc}") from None
    if done.returncode != 0:
        raise ConfigError(f"{', '.join(files)}: docker compose cannot read them: {done.stderr.strip()}")
    env_name = scaffold.choose_env_file(names)
    env_text = ""
    if env_name:
        try:
            env_text = (folder / env_name).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{folder / env_name}: cannot read: {exc}") from None
    model = json.loads(done.stdout)
    services = model.get("services") or {}
    apps = {key: value for key, value in services.items() if scaffold.database_kind(value) is None}
    inference = scaffold.infer(name, names, model, env_text, scaffold.build_contexts(apps))
    health = inference.health
    interactive = not non_interactive and sys.stdin.isatty()
    migration = inference.migration
    if interactive and migration is not None:
        command = shlex.join(migration.command)
        click.echo(f"migration: {migration.why}")
        if not click.confirm(f"Run `{command}` in {migration.service} before each release?", default=True):
            inference = scaffold.replace(inference, migration=None)
    if interactive and health is not None and health.url is not None:
        click.echo(f"health probe: {health.why}")
        answer = click.prompt("Path that answers 200 when the application is healthy", default=health.path)
        inference = scaffold.replace(inference, health=health.with_path(answer))
    text = scaffold.render(inference)
    try:
        with path.open("x") as handle:  # never overwrites, even when racing another init
            handle.write(text)
    except FileExistsError:
        raise ConfigError(f"{path}: already exists; surefoot init never overwrites it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror}") from None
    click.echo(f"wrote {path}")
    click.echo(f"  project {inference.project_name}; compose files {', '.join(inference.compose_files)}; "
               f"env file {inference.env_file or 'none'}")
    click.echo(f"  database-start: {', '.join(inference.databases) or 'none recognised'}")
    probe = inference.health
    click.echo(f"  health probe: {(probe.url or f'the state of {probe.service}') if probe else 'none found'}")
    migration = inference.migration
    planned = f"{shlex.join(migration.command)} in {migration.service}" if migration else None
    click.echo(f"  database-migrate: {planned or 'left commented; pick the command in the file'}")
    ignore = folder / ".gitignore"
    try:
        updated = scaffold.gitignore_with_state(ignore.read_text() if ignore.exists() else None)
        if updated is not None:
            ignore.write_text(updated)
            click.echo(f"added .surefoot/ to {ignore}")
    except OSError as exc:
        click.echo(f"warning: {ignore}: cannot add .surefoot/ ({exc.strerror})", err=True)
    state_dir = opts.resolved_state_dir()
    for ignore, text in scaffold.dockerignores_with_state(services, state_dir).items():
        try:
            ignore.write_text(text)
            click.echo(f"added {state_dir.name} to {ignore} (a build of that context must not send it)")
        except OSError as exc:
            click.echo(f"warning: {ignore}: cannot add the state folder ({exc.strerror}); "
                       "build refuses to run until it is there", err=True)
    return ExitCode.OK
