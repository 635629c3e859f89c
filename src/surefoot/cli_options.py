"""What the ``surefoot`` group's options say (:class:`GlobalOptions`): handed to every
command of ``cli.py`` and to the commands' bodies (``cli_run.py``, ``cli_init.py``), which
import it from here (not from ``cli.py``, which imports them). Import-light.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from surefoot.targets import TargetChoice

DEFAULT_STATE_DIR = ".surefoot"


@dataclass(frozen=True)
class GlobalOptions:
    """The group's options, as given: the project folder, the configuration file, the state
    folder and the target (``argv_prefix``: how the user named the project, to print the
    resume command)."""

    project_dir: Path
    config: Path | None
    state_dir: Path | None
    argv_prefix: tuple[str, ...]  # how the user named the project, to print the resume command
    targets: tuple[str, ...] = ()  # --target NAME|ssh://... (repeatable)

    @property
    def target(self) -> str | None:
        """The one target a command that works on one is given (none: the default)."""
        from surefoot.errors import ConfigError

        if len(self.targets) > 1:
            raise ConfigError("this command works on one target: give --target once")
        return self.targets[0] if self.targets else None

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
