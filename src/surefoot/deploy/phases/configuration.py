"""configuration: the env file's values, asked, generated, derived, reviewed and written (0600)."""

from __future__ import annotations

import os

from surefoot.base.errors import ConfigError, PhaseFailed
from surefoot.base.secrets import SECRET_KEY, parse_env_text
from surefoot.config.configure import (
    Plan,
    Prompter,
    check_value,
    derive,
    generate_secret,
    render_env,
    write_env_file,
)
from surefoot.config.settings import PromptSettings
from surefoot.deploy.api import PhaseContext, PhaseResult, done
from surefoot.deploy.phases.preflight import (
    check_env_file,
    inspect_docker,
    judge_results,
    project_checks,
    recorder,
)
from surefoot.engines.compose.argv import env_values, shadowing


def configuration(ctx: PhaseContext) -> PhaseResult:
    settings = ctx.settings.phases.configuration
    env_path = ctx.settings.env_file
    if not settings.declared and not ctx.values:
        env = check_env_file(ctx)
        _warn_shadowed(ctx)
        return done(f"env file {env}" if env else "no env file configured")
    if env_path is None:
        raise ConfigError("--set KEY=VALUE writes to the env file, and none is configured: "
                          "set project.env_file in surefoot.toml")
    if not settings.declared:
        check_env_file(ctx)  # without prompts the env file must exist; --set changes it
    for key in ctx.values:
        if key in settings.derived:
            raise ConfigError(f"--set {key}: {key} is derived (phases.configuration.derived: "
                              f"{settings.derived[key]!r}); set the values it is computed from instead")
    existing_text = env_path.read_text(encoding="utf-8") if env_path.exists() else ""
    # What compose will read: the env files before the last one, then the last one (written here).
    existing = {**env_values(ctx.settings.earlier_env_files), **parse_env_text(existing_text)}
    prompter = ctx.prompter
    kept: dict[str, str] = {}
    asked: dict[str, str] = {}
    sources: dict[str, str] = {}
    missing: list[str] = []

    def take(key: str, value: str, source: str) -> None:
        """A value given for ``key``: kept when the env file already says the same."""
        if existing.get(key) == value:
            kept[key] = value
        else:
            asked[key] = value
            sources[key] = source

    for prompt in settings.prompts:
        key = prompt.key
        if key in ctx.values or (key not in existing and prompter is None and key in os.environ):
            given = key in ctx.values
            value = ctx.values[key] if given else os.environ[key]
            problem = check_value(prompt, value)
            if problem:
                shown = "the value given" if prompt.secret else repr(value)
                where = "--set" if given else "the environment"
                raise ConfigError(f"{key}: {shown} ({where}) is not valid: {problem}")
            take(key, value, "set" if given else "from the environment")
        elif key in existing:
            kept[key] = existing[key]
        elif prompter is not None:
            asked[key] = _ask(prompter, prompt)
        elif prompt.default is not None:
            asked[key] = prompt.default
        elif prompt.required:
            missing.append(key)
    if missing:
        raise ConfigError(
            "no terminal to ask on, and these required values are missing: " + ", ".join(missing)
            + "; give each with --set KEY=VALUE or as an environment variable"
        )
    generated: dict[str, str] = {}
    for secret in settings.secrets:
        if secret.key in ctx.values:
            take(secret.key, ctx.values[secret.key], "set")
        elif secret.key in existing:
            kept[secret.key] = existing[secret.key]
        elif os.environ.get(secret.key):
            # Given in the environment: used (and written), never replaced by a generated one.
            take(secret.key, os.environ[secret.key], "from the environment")
        else:
            generated[secret.key] = generate_secret(secret)
    declared = {p.key for p in settings.prompts} | {s.key for s in settings.secrets}
    for key, value in ctx.values.items():
        if key not in declared:  # no prompt declares it: --set sets it all the same
            take(key, value, "set")
    try:
        derived = derive(settings.derived, {**existing, **asked, **generated})
    except ValueError as exc:
        raise ConfigError(f"phases.configuration.derived: {exc}") from None
    secret_keys = frozenset({p.key for p in settings.prompts if p.secret} | {s.key for s in settings.secrets}
                            | {key for key in ctx.values if SECRET_KEY.search(key)})
    plan = Plan(kept, asked, generated, {k: v for k, v in derived.items() if existing.get(k) != v},
                secret_keys, sources)
    for key in secret_keys:
        secret_value = {**existing, **plan.updates}.get(key)
        if secret_value:
            ctx.add_secret(secret_value)
    if not plan.updates:
        _deferred_checks(ctx, wrote=False)
        _warn_shadowed(ctx)
        return done(f"{env_path.name}: every value present, nothing to write")
    review = [f"values for {env_path}:", *plan.review(ctx.redact)]
    if prompter is not None:
        with prompter.session():  # one pause of the live view for the review and the question
            prompter.show("\n".join(review))
            if not ctx.assume_yes and not prompter.confirm(f"Write these values to {env_path}?"):
                raise PhaseFailed("configuration not confirmed: nothing was written")
        # Shown once, on the terminal: the output and the log name the keys only.
        ctx.out(f"reviewed on the terminal: {', '.join(plan.updates)}")
    else:
        for line in review:
            ctx.out(line)
    backup = write_env_file(env_path, render_env(existing_text, plan.updates))
    ctx.facts.env_changed()
    ctx.out(f"wrote {env_path} (mode 0600)" + (f"; the previous one is kept as {backup}" if backup else ""))
    _deferred_checks(ctx, wrote=True)
    _warn_shadowed(ctx)
    return done(f"{len(plan.updates)} value(s) written to {env_path.name}")


def _warn_shadowed(ctx: PhaseContext) -> None:
    """Name (never show) the shell's variables that differ from the env file: compose would let
    them win; surefoot does not pass them on (the env file is what runs)."""
    names = shadowing(ctx.settings.env_files, os.environ)
    if names:
        files = ", ".join(str(path) for path in ctx.settings.env_files)
        ctx.warn(f"the environment sets {', '.join(names)} to another value than {files}: "
                 "the env file's value is used (surefoot does not pass these variables to compose); "
                 "to change one, use --set KEY=VALUE or edit the env file")


def _deferred_checks(ctx: PhaseContext, wrote: bool) -> None:
    """Preflight's project checks (env-file, config, service names, ports, registry), run again
    now that the env file is complete: before anything is built or started. Not when preflight
    ran them in this process and the env file has not changed since."""
    if not ctx.settings.phases.preflight.enabled or (ctx.facts.project_checked and not wrote):
        return
    if inspect_docker(ctx).compose_version is None:
        return  # prerequisites says what is missing
    ctx.out("preflight's project checks, now that the env file is complete:")
    results, record = recorder(ctx)
    project_checks(ctx, record)
    judge_results(ctx, results)


def _ask(prompter: Prompter, prompt: PromptSettings) -> str:
    suffix = f" [{prompt.default}]" if prompt.default and not prompt.secret else ""
    if prompt.validator == "choices":
        suffix = f" ({'/'.join(prompt.choices or [])})" + suffix
    for attempt in range(1, prompt.attempts + 1):
        value = prompter.ask(f"{prompt.question}{suffix}: ", secret=prompt.secret).strip()
        if value == "" and prompt.default is not None:
            value = prompt.default
        problem = check_value(prompt, value)
        if problem is None:
            return value
        left = prompt.attempts - attempt
        prompter.show(f"  {problem}" + (f" ({left} tries left)" if left else ""))
    raise PhaseFailed(f"{prompt.key}: no valid answer in {prompt.attempts} tries; nothing was written")

