"""A phase's hooks: commands the operator configured to run on the server before and after it."""

from __future__ import annotations

import shlex
from pathlib import Path

from surefoot.base.errors import CommandNotFound, PhaseFailed
from surefoot.config.settings import Settings
from surefoot.deploy.api import PhaseContext


def run_hooks(
    ctx: PhaseContext, settings: Settings, when: str, commands: list[list[str]],
    attempt: int, log_path: Path, on: str = "control",
) -> None:
    """Run a phase's hooks on the control machine (``ctx.control``; ``on="target"``: on the
    server, ``ctx.host``; the same machine when deploying here), given the phase's context in SUREFOOT_* variables.
    A failing before-hook fails the phase; a failing after-hook warns."""
    env = {
        "SUREFOOT_PROJECT": settings.project_name,
        "SUREFOOT_PROJECT_DIR": str(settings.project_dir),
        "SUREFOOT_PHASE": ctx.name,
        "SUREFOOT_HOOK": when,
        "SUREFOOT_DEPLOYMENT": str(ctx.deployment_id),
        "SUREFOOT_ATTEMPT": str(attempt),
        "SUREFOOT_STATE_DIR": str(ctx.state_dir),
        "SUREFOOT_LOG": str(log_path),
        "SUREFOOT_ENV_FILE": str(settings.env_file or ""),
    }
    where = ctx.host if on == "target" or ctx.control is None else ctx.control
    for argv in commands:
        ctx.out(f"{when}-{ctx.name} hook: {shlex.join(argv)}")
        try:
            code = where.stream(argv, ctx.out, cwd=settings.project_dir, env=env)
        except CommandNotFound:
            code = 127
        if code == 0:
            continue
        message = f"the {when}-{ctx.name} hook {shlex.join(argv)} exited with code {code}"
        if when == "before":
            raise PhaseFailed(message, exit_code=code)
        ctx.warn(message)
