"""The commands, declared with click: their options, their help, and the exit codes their
outcomes map to (:func:`run`: the only place, with :mod:`surefoot.cli`, that prints an error or
decides an exit code). The bodies of the heavier ones live beside it (``commands.py``: deploy,
rollback, verify, prerequisites, compose, logs; ``starter/command.py``: init) and are imported
inside the commands that need them, as are the heavy imports (pydantic, rich, the runner), so
``--help`` starts fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from surefoot import __version__
from surefoot.base.errors import ConfigError, ExitCode, SurefootError
from surefoot.base.names import CHECK_NAMES
from surefoot.cli.options import GlobalOptions

if TYPE_CHECKING:
    from collections.abc import Callable


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="surefoot")
@click.option(
    "-C", "project_dir", default=".", metavar="DIR", type=click.Path(path_type=Path),
    help="The project folder (default: the current one).",
)
@click.option(
    "-c", "config", metavar="FILE", type=click.Path(path_type=Path),
    help="The configuration file (default: DIR/surefoot.toml).",
)
@click.option(
    "--state-dir", metavar="DIR", type=click.Path(path_type=Path), envvar="SUREFOOT_STATE_DIR",
    help="Where state and logs live (default: DIR/.surefoot; env SUREFOOT_STATE_DIR).",
)
@click.option(
    "--target", "targets", metavar="NAME|ssh://[USER@]HOST[:PORT]", multiple=True, envvar="SUREFOOT_TARGET",
    help="Where to deploy: a [targets.NAME] of surefoot.toml, or a server by URL; repeatable for deploy "
         "(default: every declared target, else this machine; env SUREFOOT_TARGET).",
)
@click.pass_context
def cli(ctx: click.Context, project_dir: Path, config: Path | None, state_dir: Path | None,
        targets: tuple[str, ...]) -> None:
    """Resumable, checkpointed deployments of a Docker Compose application.

    \b
    Exit codes: 0 success; 1 a phase failed (run deploy again to resume);
    2 usage, configuration or state-store error; 3 another deployment of this
    project holds the lock; 4 the release failed and the previous release was
    restored; 130 interrupted by a signal.
    """
    ctx.obj = GlobalOptions.given(project_dir, config, state_dir, targets, os.environ)


def progress_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--progress", type=click.Choice(("auto", "live", "plain", "json")), default=None,
        help="How to show progress: the live view, plain lines, or one JSON event a line on stdout "
             "(default: SUREFOOT_PROGRESS, else live on a terminal).",
    )(function)


@cli.command()
@click.option("--fresh", is_flag=True, help="Start a new deployment even if one is unfinished.")
@click.option("--resume", is_flag=True, help="Only resume an unfinished deployment.")
@click.option("--yes", "-y", is_flag=True, help="Answer yes to every confirmation.")
@click.option("--non-interactive", is_flag=True,
              help="Never ask: values come from --set and the environment (default without a terminal).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="A configuration value for the env file (repeatable).")
@click.option("--skip-check", "skip_checks", multiple=True, metavar="NAME",
              type=click.Choice(CHECK_NAMES), help="Skip one preflight check (repeatable).")
@progress_option
@click.pass_obj
def deploy(
    opts: GlobalOptions, fresh: bool, resume: bool, yes: bool, non_interactive: bool,
    assignments: tuple[str, ...], skip_checks: tuple[str, ...], progress: str | None = None,
) -> int:
    """Deploy: resume the unfinished deployment, or start a new one (an update)."""
    if fresh and resume:
        raise click.UsageError("--fresh and --resume cannot be used together")
    from surefoot.cli.commands import parse_assignment, with_runner

    values = tuple(parse_assignment(item) for item in assignments)
    # The first docker commands start now, before the slow imports (surefoot.engines.compose.ahead).
    from surefoot.engines.compose.ahead import AskedAhead
    from surefoot.proc import CancelToken, ProcessRunner

    cancel = CancelToken()
    ahead = AskedAhead.start(ProcessRunner(cancel), opts.project_dir, opts.config)
    from surefoot.deploy.run.checkpoint import DeployOptions

    options = DeployOptions(fresh=fresh, resume_only=resume, assume_yes=yes,
                            interactive=not non_interactive, values=values, skip_checks=skip_checks)
    return with_runner(opts, lambda runner: runner.deploy(options), cancel, ahead, progress=progress,
                       prompt=not non_interactive, several=lambda fleet: fleet.deploy(options))


def parse_assignment(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (the value may hold anything, '=' included): see ``commands.py``."""
    from surefoot.cli import commands

    return commands.parse_assignment(text)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the contract's keys).")
@click.pass_obj
def status(opts: GlobalOptions, as_json: bool) -> int:
    """Show where the latest deployment stands, without waiting for any lock."""
    from surefoot.cli.reports.status import show_status

    click.echo(show_status(opts, as_json))
    return ExitCode.OK


def complete_release(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of a release number (see ``commands.py``)."""
    from surefoot.cli import commands

    return commands.complete_release(ctx, param, incomplete)


@cli.command()
@click.argument("release", required=False, type=int, shell_complete=complete_release)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@progress_option
@click.pass_obj
def rollback(opts: GlobalOptions, release: int | None, yes: bool, progress: str | None = None) -> int:
    """Restore RELEASE (default: the one before the current release), then gate it."""
    from surefoot.cli.commands import confirm_rollback, with_runner

    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("rollback changes the running stack: confirm with --yes")
        release = confirm_rollback(opts, release)
    return with_runner(opts, lambda runner: runner.rollback(release), progress=progress)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--html", "html_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one self-contained HTML page: timelines of the latest deployments' phases "
                   "and each phase's duration across the last ones.")
@click.pass_obj
def history(opts: GlobalOptions, as_json: bool, html_file: Path | None = None) -> int:
    """List the releases, newest first: outcome, phase durations, who and where."""
    import json

    from surefoot.cli.reports.history import collect_history, render_history
    from surefoot.config.project import read_project_name

    project = read_project_name(opts.project_dir, opts.config)
    if html_file is not None:
        from surefoot.cli.reports.timeline import collect_timeline, render_html

        page = render_html(collect_timeline(opts.resolved_state_dir(), project))
        try:
            html_file.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{html_file}: cannot write: {exc.strerror}") from None
        click.echo(f"wrote {html_file}", err=as_json)
        if not as_json:
            return ExitCode.OK
    from surefoot.config.project import read_targets

    if len(read_targets(opts.project_dir, opts.config)) > 1 and not opts.targets:  # several: the rollouts
        from surefoot.cli.reports.status import render_rollouts, rollout_record

        rollouts = list(reversed((rollout_record(opts.base_state_dir()) or {}).get("history", [])))
        data = {"project": project, "rollouts": rollouts}
        click.echo(json.dumps(data, indent=2) if as_json else render_rollouts(data))
        return ExitCode.OK
    data = collect_history(opts.resolved_state_dir(), project)
    click.echo(json.dumps(data, indent=2) if as_json else render_history(data))
    return ExitCode.OK


@cli.command()
@progress_option
@click.pass_obj
def verify(opts: GlobalOptions, progress: str | None = None) -> int:
    """Check the running stack: the configured URLs, TLS certificates, container states."""
    from surefoot.cli.commands import with_runner

    return with_runner(opts, lambda runner: runner.verify(), progress=progress)


@cli.command()
@click.option("--dry-run", is_flag=True, help="List what would change; change nothing.")
@click.pass_obj
def prerequisites(opts: GlobalOptions, dry_run: bool) -> int:
    """Install and start what is missing (Docker, compose v2, the daemon, firewall)."""
    from surefoot.cli.commands import with_runner

    return with_runner(opts, lambda runner: runner.prerequisites(dry_run))


@cli.command()
@click.option("--non-interactive", is_flag=True, help="Write what was inferred without asking.")
@click.pass_obj
def init(opts: GlobalOptions, non_interactive: bool) -> int:
    """Write a commented surefoot.toml inferred from the compose files here."""
    from surefoot.cli.starter.command import run_init

    return run_init(opts, non_interactive)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False,
                               "help_option_names": ["--surefoot-help"]})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def compose(opts: GlobalOptions, args: tuple[str, ...]) -> int:
    """Run docker compose ARGS with the project's name, compose files and env file.

    \b
    Everything after `compose` goes to docker compose untouched, e.g.
      surefoot compose ps --format json
      surefoot compose logs -f api
      surefoot compose exec db psql -U shop
    The exit code is compose's.
    """
    from surefoot.cli.commands import run_compose

    return run_compose(opts, args)


@cli.command()
@click.argument("service", required=False)
@click.option("--follow", "-f", is_flag=True, help="Keep following the output.")
@click.option("--tail", metavar="N", help="Only the last N lines of each container.")
@click.pass_obj
def logs(opts: GlobalOptions, service: str | None, follow: bool, tail: str | None) -> int:
    """Show the logs of the project's containers (or of SERVICE): `compose logs`."""
    from surefoot.cli.commands import run_compose

    args = ["logs"]
    if follow:
        args.append("--follow")
    if tail is not None:
        args += ["--tail", tail]
    if service:
        args += ["--", service]
    return run_compose(opts, tuple(args))


def run(argv: list[str] | None = None) -> int:
    try:
        result = cli.main(args=argv, prog_name="surefoot", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return ExitCode.USAGE
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        return ExitCode.INTERRUPTED
    except SurefootError as exc:
        for line in str(exc).splitlines():
            click.echo(f"surefoot: {line}", err=True)
        return exc.exit_code
    except BrokenPipeError:
        sys.stderr.close()
        return ExitCode.OK
    return int(result) if isinstance(result, int) else ExitCode.OK
