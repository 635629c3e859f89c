"""What the ``surefoot`` group's options say (:class:`GlobalOptions`): handed to every
command of the CLI (:mod:`surefoot.cli`) and to the commands' bodies (``commands.py``,
``starter/command.py``), which import it from here (not from the package, which imports them).
Import-light.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from surefoot.targets.choose import TargetChoice

DEFAULT_STATE_DIR = ".surefoot"


class GlobalOptions(NamedTuple):
    """The group's options, as given: the project folder, the configuration file, the state
    folder and the target (``argv_prefix``: how the user named the project, to print the
    resume command)."""

    project_dir: Path
    config: Path | None
    state_dir: Path | None
    argv_prefix: tuple[str, ...]  # how the user named the project, to print the resume command
    targets: tuple[str, ...] = ()  # --target NAME|ssh://... (repeatable)

    @classmethod
    def given(cls, project_dir: Path, config: Path | None, state_dir: Path | None, targets: tuple[str, ...],
              environ: Mapping[str, str]) -> GlobalOptions:
        """The options as the command line gave them (``-C``, ``-c``, ``--state-dir`` or
        SUREFOOT_STATE_DIR, ``--target`` or SUREFOOT_TARGET)."""
        prefix: list[str] = ["surefoot"]
        if project_dir != Path("."):
            prefix += ["-C", str(project_dir)]
        if config is not None:
            prefix += ["-c", str(config)]
        if state_dir is not None and "SUREFOOT_STATE_DIR" not in environ:
            prefix += ["--state-dir", str(state_dir)]
        if "SUREFOOT_TARGET" not in environ:
            for target in targets:
                prefix += ["--target", target]
        if config is not None and not config.is_absolute():
            config = project_dir / config  # as compose reads -f against --project-directory
        return cls(project_dir.absolute(), config, state_dir, tuple(prefix), targets)

    @property
    def target(self) -> str | None:
        """The one target a command that works on one is given (none: the default)."""
        from surefoot.base.errors import ConfigError

        if len(self.targets) > 1:
            raise ConfigError("this command works on one target: give --target once")
        return self.targets[0] if self.targets else None

    def resolved_state_dir(self) -> Path:
        """The state folder of the chosen target (read without validating the configuration)."""
        return self.choose_target().state_dir(self.base_state_dir())

    def base_state_dir(self) -> Path:
        return (self.state_dir or self.project_dir / DEFAULT_STATE_DIR).absolute()

    def choose_target(self) -> TargetChoice:
        from surefoot.config.project import read_project_name, read_targets
        from surefoot.targets.choose import choose_target

        return choose_target(read_targets(self.project_dir, self.config), self.target, self.project_dir,
                             read_project_name(self.project_dir, self.config))
