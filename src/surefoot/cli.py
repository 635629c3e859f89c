"""The command line: parse arguments, choose the output, map outcomes to exit codes.

This is the only module that prints errors or decides an exit code. Heavy
imports (pydantic, rich, the runner) happen inside the commands that need them,
so ``surefoot status`` and ``--help`` start fast.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from surefoot import __version__
from surefoot.errors import ConfigError, ExitCode, SurefootError
from surefoot.names import CHECK_NAMES

if TYPE_CHECKING:
    from collections.abc import Callable

    from surefoot.ahead import AskedAhead
    from surefoot.proc import CancelToken
    from surefoot.runner import DeployOutcome, Runner
    from surefoot.targets import TargetChoice

DEFAULT_STATE_DIR = ".surefoot"


@dataclass(frozen=True)
class GlobalOptions:
    project_dir: Path
    config: Path | None
    state_dir: Path | None
    argv_prefix: tuple[str, ...]  # how the user named the project, to print the resume command
    target: str | None = None  # --target NAME|ssh://...

    def resolved_state_dir(self) -> Path:
        """The state folder of the chosen target (read without validating the configuration)."""
        return self.choose_target().state_dir(self.base_state_dir())

    def base_state_dir(self) -> Path:
        return (self.state_dir or self.project_dir / DEFAULT_STATE_DIR).absolute()

    def choose_target(self) -> TargetChoice:
        from surefoot.project import read_project_name, read_targets
        from surefoot.targets import choose_target

        return choose_target(read_targets(self.project_dir, self.config), self.target, self.project_dir,
                             read_project_name(self.project_dir, self.config))


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
    "--target", metavar="NAME|ssh://[USER@]HOST[:PORT]", envvar="SUREFOOT_TARGET",
    help="Where to deploy: a [targets.NAME] of surefoot.toml, or a server by URL (default: the one "
         "declared target, else this machine; env SUREFOOT_TARGET).",
)
@click.pass_context
def cli(ctx: click.Context, project_dir: Path, config: Path | None, state_dir: Path | None,
        target: str | None) -> None:
    """Resumable, checkpointed deployments of a Docker Compose application.

    \b
    Exit codes: 0 success; 1 a phase failed (run deploy again to resume);
    2 usage, configuration or state-store error; 3 another deployment of this
    project holds the lock; 4 the release failed and the previous release was
    restored; 130 interrupted by a signal.
    """
    prefix: list[str] = ["surefoot"]
    if project_dir != Path("."):
        prefix += ["-C", str(project_dir)]
    if config is not None:
        prefix += ["-c", str(config)]
    if state_dir is not None and "SUREFOOT_STATE_DIR" not in os.environ:
        prefix += ["--state-dir", str(state_dir)]
    if target is not None and "SUREFOOT_TARGET" not in os.environ:
        prefix += ["--target", target]
    if config is not None and not config.is_absolute():
        config = project_dir / config  # as compose reads -f against --project-directory
    ctx.obj = GlobalOptions(project_dir.absolute(), config, state_dir, tuple(prefix), target)


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
    values = tuple(parse_assignment(item) for item in assignments)
    # The first docker commands start now, before the slow imports (surefoot.ahead).
    from surefoot.ahead import AskedAhead
    from surefoot.proc import CancelToken, ProcessRunner

    cancel = CancelToken()
    ahead = AskedAhead.start(ProcessRunner(cancel), opts.project_dir, opts.config)
    from surefoot.runner import DeployOptions

    options = DeployOptions(fresh=fresh, resume_only=resume, assume_yes=yes,
                            interactive=not non_interactive, values=values, skip_checks=skip_checks)
    return _with_runner(opts, lambda runner: runner.deploy(options), cancel, ahead, progress=progress,
                        prompt=not non_interactive)


def parse_assignment(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (the value may hold anything, '=' included)."""
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise click.BadParameter(f"{text.split('=')[0]!r}: expected KEY=VALUE with KEY made of letters, "
                                 "digits and '_'", param_hint="--set")
    return key, value


def _with_runner(opts: GlobalOptions, action: Callable[[Runner], DeployOutcome],
                 cancel: CancelToken | None = None, ahead: AskedAhead | None = None,
                 progress: str | None = None, prompt: bool = False) -> int:
    """Load the settings, connect to the target, wire signals to a cancel token, run
    ``action``, report its outcome. ``ahead``: the answers of commands started already, with
    ``cancel`` (their token). ``progress``: the renderer (--progress); with json, stdout holds
    only the events. ``prompt``: open the terminal for the configuration's questions."""
    from surefoot.proc import CancelToken

    cancel = cancel or CancelToken()
    from contextlib import ExitStack

    from surefoot.config import load_settings
    from surefoot.configure import PausingPrompter, TerminalPrompter
    from surefoot.console import JsonRenderer, reporter_for
    from surefoot.deploytarget import open_target
    from surefoot.runner import STATE_DB, Runner
    from surefoot.state import StateStore
    from surefoot.targets import choose_target

    settings = load_settings(opts.project_dir, opts.config)
    choice = choose_target(settings.targets, opts.target, settings.project_dir, settings.project_name)
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: cancel.cancel(signum))
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    reporter = reporter_for(progress)
    try:
        with ExitStack() as stack:
            target = open_target(settings, choice, opts.base_state_dir(), cancel, ahead=ahead)
            stack.callback(target.close)
            store = stack.enter_context(StateStore.open(target.state_dir / STATE_DB))
            prompter = None
            if prompt:
                terminal = stack.enter_context(TerminalPrompter.open())
                prompter = PausingPrompter(terminal, reporter.paused) if terminal else None
            outcome = action(Runner(settings, target, store, reporter, prompter))
    finally:
        reporter.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return _report_outcome(outcome, opts, quiet_stdout=isinstance(reporter, JsonRenderer))


def _report_outcome(outcome: DeployOutcome, opts: GlobalOptions, quiet_stdout: bool = False) -> int:
    """``quiet_stdout``: stdout carries JSON events; the words go to stderr."""
    resume_cmd = shlex.join([*opts.argv_prefix, "deploy"])
    if outcome.state == "completed":
        click.echo(f"deployment #{outcome.deployment_id} completed.", err=quiet_stdout)
        for note in outcome.notes:  # said last, so that it is seen
            click.echo(f"WARNING: {note}", err=True)
        return ExitCode.OK
    if outcome.state == "done":
        click.echo(outcome.notes[0] if outcome.notes else "done.", err=quiet_stdout)
        return ExitCode.OK
    if outcome.state == "restored":
        click.echo(f"release {outcome.restored_release} restored and healthy.", err=quiet_stdout)
        for note in outcome.notes:
            click.echo(f"note: {note}", err=quiet_stdout)
        return ExitCode.OK
    if outcome.state == "nothing-to-resume":
        click.echo("nothing to resume: the last deployment completed. "
                   f"Run `{resume_cmd}` to deploy an update.", err=quiet_stdout)
        return ExitCode.OK
    if outcome.state == "interrupted":
        what = f"deployment #{outcome.deployment_id}" if outcome.deployment_id else "surefoot"
        click.echo(f"{what} interrupted; resume with: {resume_cmd}", err=True)
        return ExitCode.INTERRUPTED
    err = sys.stderr
    if outcome.usage_error:
        for line in (outcome.error or "").splitlines():
            err.write(f"surefoot: {line}\n")
        return ExitCode.USAGE
    err.write(f"\nphase {outcome.failed_phase} failed: {outcome.error}\n")
    if outcome.tail:
        err.write(f"last {len(outcome.tail)} lines of its log:\n")
        for line in outcome.tail:
            err.write(f"  {line}\n")
    if outcome.log_path:
        err.write(f"full log: {outcome.log_path}\n")
    if outcome.state == "rolled-back":
        err.write(f"\nrelease {outcome.deployment_id} was rolled back: release {outcome.restored_release} "
                  "is running again and passed its health gate.\n")
        for note in outcome.notes:
            err.write(f"note: {note}\n")
        err.write(f"fix the cause, then deploy again with: {resume_cmd}\n")
        err.flush()
        return ExitCode.ROLLED_BACK
    if outcome.deployment_id and outcome.failed_phase != "rollback":
        err.write(f"fix the cause, then resume with: {resume_cmd}\n")
    err.flush()
    return ExitCode.PHASE_FAILED


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the contract's keys).")
@click.pass_obj
def status(opts: GlobalOptions, as_json: bool) -> int:
    """Show where the latest deployment stands, without waiting for any lock."""
    from surefoot.project import configured_optional_phases, read_project_name
    from surefoot.status import collect_status, render_status

    if not opts.project_dir.is_dir():
        raise ConfigError(f"{opts.project_dir}: project folder not found (given with -C)")
    project = read_project_name(opts.project_dir, opts.config)
    optional = configured_optional_phases(opts.project_dir, opts.config)
    choice = opts.choose_target()
    data: dict[str, Any] = collect_status(choice.state_dir(opts.base_state_dir()), project, optional)
    data["target"] = choice.describe()
    if not choice.local:
        from surefoot.targets import server_view

        view = server_view(choice)
        if "error" in view:
            data["warnings"] = [*data.get("warnings", []), f"cannot ask the server: {view['error']}"]
        else:
            data["lock"] = view["lock"] or data["lock"]
            release = view["release"]
            data["target"]["release"] = release
            if data["current_release"] is None and release is not None:
                data["current_release"] = release.get("release")
    click.echo(json.dumps(data, indent=2) if as_json else render_status(data))
    return ExitCode.OK


def complete_release(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of a release number: the project's releases, newest first, read
    from the state store (no lock, no configuration validation)."""
    import sqlite3

    from click.shell_completion import CompletionItem

    from surefoot.project import read_project_name
    from surefoot.state import StateStore

    params = ctx.find_root().params
    project_dir = Path(params.get("project_dir") or ".").absolute()
    config = params.get("config")
    if config is not None and not Path(config).is_absolute():
        config = project_dir / config
    state_dir = Path(params.get("state_dir") or project_dir / DEFAULT_STATE_DIR)
    try:
        project = read_project_name(project_dir, config)
        with StateStore.open(state_dir.absolute() / "state.db", create=False) as store:
            releases = store.releases(project)
    except (SurefootError, OSError, sqlite3.Error):
        return []
    return [CompletionItem(str(r.id), help=f"{r.outcome}, {r.created_at.replace('T', ' ')[:16]}")
            for r in releases if str(r.id).startswith(incomplete)]


@cli.command()
@click.argument("release", required=False, type=int, shell_complete=complete_release)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@progress_option
@click.pass_obj
def rollback(opts: GlobalOptions, release: int | None, yes: bool, progress: str | None = None) -> int:
    """Restore RELEASE (default: the one before the current release), then gate it."""
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("rollback changes the running stack: confirm with --yes")
        release = _confirm_rollback(opts, release)
    return _with_runner(opts, lambda runner: runner.rollback(release), progress=progress)


def _confirm_rollback(opts: GlobalOptions, release: int | None) -> int:
    """Ask before a rollback, naming the release it will restore; returns that release's number."""
    from surefoot.config import load_settings
    from surefoot.errors import NoRelease
    from surefoot.runner import STATE_DB, choose_release, describe_release
    from surefoot.state import StateStore
    from surefoot.targets import choose_target

    settings = load_settings(opts.project_dir, opts.config)
    choice = choose_target(settings.targets, opts.target, settings.project_dir, settings.project_name)
    try:
        opened = StateStore.open(choice.state_dir(opts.base_state_dir()) / STATE_DB, create=False)
    except FileNotFoundError:
        raise NoRelease("no releases yet: nothing to roll back to") from None
    with opened as store:
        target = choose_release(store, settings.project_name, release, settings.rollback.keep_releases)
    click.confirm(f"Restore {describe_release(target)}? Database changes are not undone.", abort=True)
    return target.id


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--html", "html_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one self-contained HTML page: timelines of the latest deployments' phases "
                   "and each phase's duration across the last ones.")
@click.pass_obj
def history(opts: GlobalOptions, as_json: bool, html_file: Path | None = None) -> int:
    """List the releases, newest first: outcome, phase durations, who and where."""
    from surefoot.history import collect_history, render_history
    from surefoot.project import read_project_name

    project = read_project_name(opts.project_dir, opts.config)
    if html_file is not None:
        from surefoot.timeline import collect_timeline, render_html

        page = render_html(collect_timeline(opts.resolved_state_dir(), project))
        try:
            html_file.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{html_file}: cannot write: {exc.strerror}") from None
        click.echo(f"wrote {html_file}", err=as_json)
        if not as_json:
            return ExitCode.OK
    data = collect_history(opts.resolved_state_dir(), project)
    click.echo(json.dumps(data, indent=2) if as_json else render_history(data))
    return ExitCode.OK


@cli.command()
@progress_option
@click.pass_obj
def verify(opts: GlobalOptions, progress: str | None = None) -> int:
    """Check the running stack: the configured URLs, TLS certificates, container states."""

    return _with_runner(opts, lambda runner: runner.verify(), progress=progress)


@cli.command()
@click.option("--dry-run", is_flag=True, help="List what would change; change nothing.")
@click.pass_obj
def prerequisites(opts: GlobalOptions, dry_run: bool) -> int:
    """Install and start what is missing (Docker, compose v2, the daemon, firewall)."""
    return _with_runner(opts, lambda runner: runner.prerequisites(dry_run))


@cli.command()
@click.option("--non-interactive", is_flag=True, help="Write what was inferred without asking.")
@click.pass_obj
def init(opts: GlobalOptions, non_interactive: bool) -> int:
    """Write a commented surefoot.toml inferred from the compose files here."""
    from surefoot import init as scaffold
    from surefoot.compose import Target, compose_args
    from surefoot.project import COMPOSE_CANDIDATES, CONFIG_NAME, default_project_name

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
    argv = compose_args(Target(name, folder, tuple(folder / f for f in files)),
                        "config", "--no-interpolate", "--format", "json")
    from surefoot.errors import CommandNotFound, CommandTimeout
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


def _run_compose(opts: GlobalOptions, args: tuple[str, ...]) -> int:
    """Become ``docker compose`` for this project (its name, files and env file, as every
    deployment phase gives them): the terminal, stdin, signals and exit code are compose's."""
    from surefoot.compose import Target, compose_args, env_file_keys
    from surefoot.config import load_settings

    settings = load_settings(opts.project_dir, opts.config)
    target = Target(settings.project_name, settings.project_dir, settings.compose_files, settings.env_file,
                    earlier_env_files=settings.earlier_env_files)
    argv = compose_args(target, *args)
    from surefoot.targets import choose_target

    choice = choose_target(settings.targets, opts.target, settings.project_dir, settings.project_name)
    if choice.ssh is not None:  # on the server, in the project's folder there (as deploy left it)
        from surefoot.remote import PathMap
        from surefoot.ssh import base_options

        paths = PathMap([(settings.project_dir, choice.folder)])
        remote = f"cd {shlex.quote(choice.folder)} && exec {shlex.join(paths.word(word) for word in argv)}"
        tty = "-t" if sys.stdin.isatty() else "-T"
        argv = ["ssh", *base_options(choice.ssh, "none"), tty, "--", choice.ssh.host, remote]
    # As for every deployment phase: the env file, not the shell, decides what its keys are.
    hidden = env_file_keys(target.env_files)
    environ = {key: value for key, value in os.environ.items() if key not in hidden}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], argv, environ)  # no shell: the arguments reach compose as they are
    except OSError as exc:
        raise SurefootError(f"cannot run {argv[0]}: {exc.strerror}") from None
    return ExitCode.OK  # not reached


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
    return _run_compose(opts, args)


@cli.command()
@click.argument("service", required=False)
@click.option("--follow", "-f", is_flag=True, help="Keep following the output.")
@click.option("--tail", metavar="N", help="Only the last N lines of each container.")
@click.pass_obj
def logs(opts: GlobalOptions, service: str | None, follow: bool, tail: str | None) -> int:
    """Show the logs of the project's containers (or of SERVICE): `compose logs`."""
    args = ["logs"]
    if follow:
        args.append("--follow")
    if tail is not None:
        args += ["--tail", tail]
    if service:
        args += ["--", service]
    return _run_compose(opts, tuple(args))


def main(argv: list[str] | None = None) -> int:
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
