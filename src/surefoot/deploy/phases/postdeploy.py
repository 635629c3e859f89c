"""post-deploy: commands that run once per release, then the summary for the operator."""

from __future__ import annotations

import shlex

from surefoot.base.errors import PhaseFailed
from surefoot.config.configure import mask
from surefoot.deploy.api import PhaseContext, PhaseResult, done
from surefoot.engines.compose.argv import env_values


class _Missing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def post_deploy(ctx: PhaseContext) -> PhaseResult:
    settings = ctx.settings.phases.post_deploy
    for command in settings.commands:
        where = f" in {command.service}" if command.service else ""
        ctx.out(f"running: {shlex.join(command.command)}{where}")
        if command.service:
            code = ctx.engine.exec_stream(command.service, command.command, on_line=ctx.out,
                                          timeout=command.timeout)
        else:  # on the host
            code = ctx.host.stream(command.command, ctx.out, cwd=ctx.settings.project_dir, timeout=command.timeout)
        if code != 0:
            raise PhaseFailed(f"post-deploy command {shlex.join(command.command)} exited with code {code}",
                              exit_code=code)

    values = env_values(ctx.settings.env_files)
    for line in summary(ctx, values):
        ctx.out(line)
    if settings.credentials:
        shown = [f"  {key}: {mask(values[key])}" for key in settings.credentials if values.get(key)]
        if ctx.prompter is not None:
            ctx.prompter.show("credentials (masked; shown on this terminal only):\n" + "\n".join(shown))
        else:
            ctx.out("credentials are shown on a terminal only; see the env file for them")
    return done(f"{len(settings.commands)} command(s) run")


def summary(ctx: PhaseContext, values: dict[str, str]) -> list[str]:
    settings = ctx.settings
    cli = ["surefoot", "-C", str(settings.project_dir)]
    logs = ctx.engine.logs_command(follow=True)
    lines = ["deployed. Where things are:"]
    for url in settings.phases.post_deploy.urls:
        lines.append(f"  {url.format_map(_Missing(values))}")
    lines += [
        f"  state, logs, releases: {ctx.state_dir}",
        f"  env file: {settings.env_file}" if settings.env_file else "  env file: none",
        "management:",
        f"  status:    {shlex.join([*cli, 'status'])}",
        f"  history:   {shlex.join([*cli, 'history'])}",
        f"  redeploy:  {shlex.join([*cli, 'deploy'])}   (also resumes a failed deployment)",
        f"  roll back: {shlex.join([*cli, 'rollback'])}",
        f"  logs:      {shlex.join(logs)}",
    ]
    return lines
