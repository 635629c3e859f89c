"""The bodies of the commands that run the deployment machinery (``deploy``, ``rollback``,
``verify``, ``prerequisites``: the settings loaded, the target opened, signals wired to a
cancel token, the :class:`~surefoot.deploy.run.runner.Runner` run and its outcome told as words and an
exit code) and of those that become ``docker compose`` (``compose``, ``logs``), with the
``--set`` parser and the completion of release numbers.

``cli.py`` imports this module inside those commands, so ``--help`` and ``status`` do not
load it; its own heavy imports (the runner, pydantic, rich) are inside the functions, so
``deploy`` starts its first docker commands before paying for them.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from surefoot.base.errors import ConfigError, ExitCode, SurefootError
from surefoot.cli.options import DEFAULT_STATE_DIR, GlobalOptions

if TYPE_CHECKING:
    from collections.abc import Callable

    from surefoot.config.settings import Settings
    from surefoot.deploy.run.checkpoint import DeployOutcome
    from surefoot.deploy.run.fleet import Fleet, FleetOutcome
    from surefoot.deploy.run.runner import Runner
    from surefoot.engines.compose.ahead import AskedAhead
    from surefoot.proc import CancelToken
    from surefoot.targets.choose import TargetChoice


def parse_assignment(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (the value may hold anything, '=' included)."""
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise click.BadParameter(f"{text.split('=')[0]!r}: expected KEY=VALUE with KEY made of letters, "
                                 "digits and '_'", param_hint="--set")
    return key, value


def with_runner(opts: GlobalOptions, action: Callable[[Runner], DeployOutcome],
                cancel: CancelToken | None = None, ahead: AskedAhead | None = None,
                progress: str | None = None, prompt: bool = False,
                several: Callable[[Fleet], FleetOutcome] | None = None) -> int:
    """Load the settings, connect to the target, wire signals to a cancel token, run
    ``action``, report its outcome. ``ahead``: the answers of commands started already, with
    ``cancel`` (their token). ``progress``: the renderer (--progress); with json, stdout holds
    only the events. ``prompt``: open the terminal for the configuration's questions.
    ``several``: what to do when several targets are chosen (a rollout); without it, a command
    works on one target."""
    from surefoot.proc import CancelToken

    cancel = cancel or CancelToken()
    from contextlib import ExitStack

    from surefoot.cli.console import JsonRenderer, reporter_for
    from surefoot.config.configure import PausingPrompter, TerminalPrompter
    from surefoot.config.settings import load_settings
    from surefoot.deploy.run.runner import STATE_DB, Runner
    from surefoot.store import StateStore
    from surefoot.targets.choose import choose_target
    from surefoot.targets.open import open_target

    settings = load_settings(opts.project_dir, opts.config)
    if several is not None:
        from surefoot.targets.choose import choose_targets

        choices = choose_targets(settings.targets, opts.targets, settings.project_dir, settings.project_name)
        if len(choices) > 1:
            return run_fleet(opts, settings, choices, several, cancel, progress)
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
    return report_outcome(outcome, opts, quiet_stdout=isinstance(reporter, JsonRenderer))


def run_fleet(opts: GlobalOptions, settings: Settings, choices: list[TargetChoice],
              action: Callable[[Fleet], FleetOutcome], cancel: CancelToken, progress: str | None) -> int:
    """A rollout over several targets (:mod:`surefoot.deploy.run.fleet`), its matrix printed at the end."""
    from surefoot.cli.console import JsonRenderer, reporter_for
    from surefoot.deploy.run.fleet import Fleet

    swarms = [choice.name for choice in choices if choice.engine == "swarm"]
    if swarms:  # a swarm schedules over its own nodes: it is deployed alone
        raise ConfigError(f"targets.{swarms[0]} (engine = \"swarm\") is deployed on its own: "
                          f"choose it with --target {swarms[0]} (a swarm is one target, however many nodes)")
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: cancel.cancel(signum))
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    reporter = reporter_for(progress or "plain")  # several targets side by side: lines, not the live view
    try:
        outcome = action(Fleet(settings, choices, opts.base_state_dir(), reporter, cancel))
    finally:
        reporter.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    words = {"completed": f"every target ({len(choices)}) is healthy on the new release.",
             "rolled-back": "the rollout failed: every target it touched is back on its previous release.",
             "halted": "the rollout failed and halted there (on_failure = halt): fix the cause, then deploy "
                       "again to go on from the failed target.",
             "failed": "the rollout failed and could not bring every target back.",
             "interrupted": "the rollout was interrupted; deploy again to go on from where it stopped.",
             "nothing-to-resume": "nothing to resume: the last rollout is over. Run deploy to roll out an update."}
    # stdout carries JSON events with --progress json: the words go to stderr then
    err = outcome.state not in ("completed", "nothing-to-resume") or isinstance(reporter, JsonRenderer)
    if outcome.error:
        click.echo(f"\n{outcome.error}", err=True)
    click.echo(words[outcome.state], err=err)
    for line in outcome.matrix():
        click.echo(line, err=err)
    return {"completed": ExitCode.OK, "nothing-to-resume": ExitCode.OK, "rolled-back": ExitCode.ROLLED_BACK,
            "interrupted": ExitCode.INTERRUPTED}.get(outcome.state, ExitCode.PHASE_FAILED)


def report_outcome(outcome: DeployOutcome, opts: GlobalOptions, quiet_stdout: bool = False) -> int:
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
        origin = f" (rolled back from release {outcome.from_release})" if outcome.from_release is not None else ""
        click.echo(f"release {outcome.restored_release} restored and healthy{origin}.", err=quiet_stdout)
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


def confirm_rollback(opts: GlobalOptions, release: int | None) -> int:
    """Ask before a rollback, naming the release it will restore; returns that release's number."""
    from surefoot.base.errors import NoRelease
    from surefoot.config.settings import load_settings
    from surefoot.deploy.run.rollback import choose_release, describe_release
    from surefoot.deploy.run.runner import STATE_DB
    from surefoot.store import StateStore
    from surefoot.targets.choose import choose_target

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


def complete_release(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of a release number: the project's releases, newest first, read
    from the state store (no lock, no configuration validation)."""
    import sqlite3

    from click.shell_completion import CompletionItem

    from surefoot.config.project import read_project_name
    from surefoot.store import StateStore

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


def run_compose(opts: GlobalOptions, args: tuple[str, ...]) -> int:
    """Become ``docker compose`` for this project (its name, files and env file, as every
    deployment phase gives them): the terminal, stdin, signals and exit code are compose's."""
    from surefoot.config.settings import load_settings
    from surefoot.engines.compose.argv import ComposeProject, compose_args, env_file_keys

    settings = load_settings(opts.project_dir, opts.config)
    target = ComposeProject(settings.project_name, settings.project_dir, settings.compose_files, settings.env_file,
                    earlier_env_files=settings.earlier_env_files)
    argv = compose_args(target, *args)
    from surefoot.targets.choose import choose_target

    choice = choose_target(settings.targets, opts.target, settings.project_dir, settings.project_name)
    if choice.ssh is not None:  # on the server, in the project's folder there (as deploy left it)
        from surefoot.hosts.ssh.args import base_options
        from surefoot.hosts.ssh.remote import PathMap

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
