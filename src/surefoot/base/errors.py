"""The one exception tree of surefoot, and the exit codes it maps to.

    SurefootError                 exit 1 unless a subclass says otherwise
    ├── ConfigError               exit 2  surefoot.toml or an argument is wrong
    ├── StateError                exit 2  the state store cannot be opened or written
    ├── LockHeld                  exit 3  another deployment of this project runs
    ├── LockLost                  exit 3  the lock on a server was lost mid-deployment
    ├── NoRelease                 exit 2  there is no release to roll back to
    ├── PhaseFailed               exit 1  a phase failed; the deployment can be resumed
    │   ├── CommandTimeout        exit 1  a command ran past its timeout
    │   ├── StackUntouched        exit 1  ... having left the running stack as it was
    │   ├── NoRunningContainer    exit 1  no container of the service runs to run a command in
    │   └── CommandNotFound       exit 1  a program (docker) is not installed
    └── Interrupted               exit 130 SIGINT or SIGTERM

Only the command line (:mod:`surefoot.cli`) turns these into exit codes and messages; everything below it raises.
"""

from __future__ import annotations


class ExitCode:
    OK = 0
    PHASE_FAILED = 1
    USAGE = 2
    LOCKED = 3
    ROLLED_BACK = 4
    INTERRUPTED = 130


class SurefootError(Exception):
    exit_code = ExitCode.PHASE_FAILED


class ConfigError(SurefootError):
    """A configuration file, a configuration key or an argument is wrong."""

    exit_code = ExitCode.USAGE


class StateError(SurefootError):
    """The state store is damaged, unreadable or cannot be written."""

    exit_code = ExitCode.USAGE


class LockHeld(SurefootError):
    exit_code = ExitCode.LOCKED

    def __init__(self, message: str, pid: int | None, host: str | None, since: str | None):
        super().__init__(message)
        self.pid = pid
        self.host = host
        self.since = since


class LockLost(SurefootError):
    """The deployment lock on a server was lost (no contact with its holder for longer than
    the holder waits): another deployment may have run since, so this one changes nothing more
    there (exit 3); its checkpoints let a later ``deploy`` resume."""

    exit_code = ExitCode.LOCKED


class NoRelease(SurefootError):
    """There is no release to roll back to (exit 2)."""

    exit_code = ExitCode.USAGE


class PhaseFailed(SurefootError):
    """A phase could not do its work. ``summary`` is one short line for the store."""

    exit_code = ExitCode.PHASE_FAILED

    def __init__(self, summary: str, *, exit_code: int | None = None, details: str | None = None):
        super().__init__(summary)
        self.summary = summary
        self.command_exit_code = exit_code
        self.details = details


class CommandTimeout(PhaseFailed):
    pass


class StackUntouched(PhaseFailed):
    """A phase failed having left the running stack as it was (a zero-downtime switch whose
    new container failed its gate): there is nothing to roll back."""


class NoRunningContainer(PhaseFailed):
    """A command was to run in a service's container, and none of them runs."""


class CommandNotFound(PhaseFailed):
    def __init__(self, program: str):
        super().__init__(f"{program}: command not found on PATH")
        self.program = program


class Interrupted(SurefootError):
    exit_code = ExitCode.INTERRUPTED

    def __init__(self, signum: int):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
