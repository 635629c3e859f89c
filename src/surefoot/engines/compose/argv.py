"""Every docker and compose command line surefoot runs: pure functions of the project (its
name, folder, compose and env files: :class:`ComposeProject`) and the operation's options.

Nothing here runs a process; :class:`~surefoot.engines.compose.adapter.ComposeEngine` runs what
these build, on this machine or on a server. Table-tested in tests/test_docker_adapter.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT_LABEL = "com.docker.compose.project"
ONEOFF = "com.docker.compose.oneoff=True"  # the label of `compose run` containers
# The engine's container events that can change a gate's verdict (healthcheck exec_* noise left
# out); surefoot.deploy.gates.watch.DockerEvents follows them.
CONTAINER_EVENTS = ("start", "die", "kill", "oom", "restart", "health_status")


@dataclass(frozen=True)
class ComposeProject:
    """The project as compose is handed it: its name, folder, compose files and env files, and
    the ``docker`` command that reaches the daemon."""

    project_name: str
    project_dir: Path
    compose_files: tuple[Path, ...]
    env_file: Path | None = None
    docker: tuple[str, ...] = ("docker",)  # e.g. ("docker", "--context", "prod") one day
    earlier_env_files: tuple[Path, ...] = ()  # passed before env_file (which wins over them)
    # surefoot's own last compose file: the ports the edge holds taken off their services
    override: Path | None = None

    @property
    def env_files(self) -> tuple[Path, ...]:
        return (*self.earlier_env_files, *((self.env_file,) if self.env_file is not None else ()))


def compose_args(project: ComposeProject, *args: str, override: bool = True) -> list[str]:
    """``docker compose`` with the project name, every compose file (surefoot's override last,
    unless ``override`` is false) and the env file."""
    argv = [*project.docker, "compose", "--ansi", "never", "--progress", "plain"]
    argv += ["--project-name", project.project_name, "--project-directory", str(project.project_dir)]
    files = [*project.compose_files, *([project.override] if override and project.override is not None else [])]
    for file in files:
        argv += ["--file", str(file)]
    for env_file in project.env_files:
        argv += ["--env-file", str(env_file)]
    return [*argv, *args]


def env_values(paths: Path | Sequence[Path] | None) -> dict[str, str]:
    """The values env files define, as compose reads them in order (a later file wins); an
    absent or unreadable file defines none."""
    from surefoot.base.secrets import parse_env_text

    values: dict[str, str] = {}
    for path in [paths] if isinstance(paths, Path) else paths or []:
        try:
            values.update(parse_env_text(path.read_text(encoding="utf-8", errors="replace")))
        except OSError:
            continue
    return values


def env_file_keys(paths: Path | Sequence[Path] | None) -> frozenset[str]:
    """The keys env files define (none when absent or unreadable)."""
    return frozenset(env_values(paths))


def shadowing(paths: Path | Sequence[Path] | None, environ: Mapping[str, str]) -> list[str]:
    """Names of the variables ``environ`` sets to another value than the env files do: compose
    would let them win; surefoot leaves them out (see :meth:`Compose.environ_without`)."""
    values = env_values(paths)
    return sorted(key for key, value in values.items() if key in environ and environ[key] != value)


def config_argv(project: ComposeProject) -> list[str]:
    """``compose config`` as JSON: the command that reads the project's compose model."""
    return compose_args(project, "config", "--format", "json")


def raw_config_argv(project: ComposeProject, *, override: bool = True) -> list[str]:
    """``compose config`` as JSON with ``${VAR}`` left as written: what a release keeps
    (``override`` false: the user's files alone)."""
    return compose_args(project, "config", "--no-interpolate", "--format", "json", override=override)


def up_argv(project: ComposeProject, services: Sequence[str] = (), *, remove_orphans: bool = False,
            no_build: bool = False, pull_never: bool = False, no_deps: bool = False,
            force_recreate: bool = False) -> list[str]:
    """``compose up --detach`` of ``services`` (none: all)."""
    flags = ["--detach"]
    flags += ["--no-build"] if no_build else []
    flags += ["--pull", "never"] if pull_never else []
    flags += ["--remove-orphans"] if remove_orphans else []
    flags += ["--no-deps"] if no_deps else []
    flags += ["--force-recreate"] if force_recreate else []
    return compose_args(project, "up", *flags, *services)


def build_argv(project: ComposeProject, services: Sequence[str] = ()) -> list[str]:
    return compose_args(project, "build", *services)


def pull_argv(project: ComposeProject, services: Sequence[str] = (), *, ignore_buildable: bool = True) -> list[str]:
    return compose_args(project, "pull", *(["--ignore-buildable"] if ignore_buildable else []), *services)


def run_oneoff_argv(project: ComposeProject, service: str, command: Sequence[str], *, name: str,
                    entrypoint: Sequence[str] | None = None, labels: Mapping[str, str] | None = None) -> list[str]:
    """``compose run --detach --no-deps`` of a one-off container named ``name``. compose splits
    ``--entrypoint`` as a shell would (its quoting, no expansion): shlex.join hands it the list
    as it is; an empty list clears the image's entrypoint; None keeps it."""
    import shlex

    argv = ["run", "--detach", "--no-deps", "--name", name]
    if entrypoint is not None:
        argv += ["--entrypoint", shlex.join(entrypoint)]
    for key, value in (labels or {}).items():
        argv += ["--label", f"{key}={value}"]
    return compose_args(project, *argv, service, *command)


def logs_argv(project: ComposeProject, container: str, *, follow: bool = True) -> list[str]:
    """``docker logs`` of one container (by name or id)."""
    return [*project.docker, "logs", *(["--follow"] if follow else []), container]


def service_logs_argv(project: ComposeProject, services: Sequence[str] = (), *, tail: int | None = None,
                      follow: bool = False) -> list[str]:
    """``compose logs`` of services (none: all)."""
    flags = ["--no-color"] if not follow else ["--follow"]
    flags += ["--tail", str(tail)] if tail is not None else []
    return compose_args(project, "logs", *flags, *services)


def exec_argv(project: ComposeProject, container: str, command: Sequence[str]) -> list[str]:
    return [*project.docker, "exec", container, *command]


def image_rm_argv(project: ComposeProject, images: Sequence[str]) -> list[str]:
    return [*project.docker, "image", "rm", *images]


def prune_project_images_argv(project: ComposeProject) -> list[str]:
    """Dangling images that compose built for this project (labelled with its name); other
    dangling images (another project's, anyone's on a shared engine) are not ours."""
    return [*project.docker, "image", "prune", "--force", "--filter", "dangling=true",
            "--filter", f"label={PROJECT_LABEL}={project.project_name}"]


def events_argv(project: ComposeProject, since: float, events: Sequence[str] = CONTAINER_EVENTS) -> list[str]:
    """``docker events`` of the project's containers from ``since`` (a Unix time), one status a line."""
    return [*project.docker, "events", "--since", f"{since:.6f}", "--format", "{{.Status}}",
            "--filter", "type=container",
            "--filter", f"label={PROJECT_LABEL}={project.project_name}",
            *(arg for event in events for arg in ("--filter", f"event={event}"))]


def user_config_argv(project: ComposeProject) -> list[str]:
    """The model as the user's own files make it (without surefoot's override: its ports)."""
    return compose_args(project, "config", "--format", "json", override=False)


def edge_run_argv(project: ComposeProject, name: str, image: str, config: str, labels: Mapping[str, str]) -> list[str]:
    """The edge: HAProxy in master-worker mode on the host's network (it binds the published
    ports itself, so a port is added by a reload, never by recreating it), restarted with the
    daemon. Its configuration is written into the container on first start from
    SUREFOOT_EDGE_CONFIG, then replaced in place by :func:`edge_reload_argv`."""
    script = ('f=/etc/surefoot-edge.cfg; [ -s "$f" ] || printf "%s" "$SUREFOOT_EDGE_CONFIG" > "$f"; '
              'exec haproxy -W -db -f "$f"')
    return [*project.docker, "run", "--detach", "--name", name, "--network", "host", "--restart", "unless-stopped",
            "--user", "root", *(word for key, value in labels.items() for word in ("--label", f"{key}={value}")),
            "--env", f"SUREFOOT_EDGE_CONFIG={config}", "--entrypoint", "sh", image, "-c", script]


def edge_reload_argv(project: ComposeProject, name: str, config: str) -> list[str]:
    """Replace the edge's configuration (checked first: a bad one changes nothing) and reload it:
    HAProxy's master starts a new worker on the same listeners; the old one finishes its
    connections (up to hard-stop-after) and ends."""
    script = ('f=/etc/surefoot-edge.cfg; printf "%s" "$1" > "$f.new" && haproxy -c -q -f "$f.new" '
              '&& mv -f "$f.new" "$f" && kill -USR2 1')
    return [*project.docker, "exec", name, "sh", "-c", script, "sh", config]


def edge_workers_argv(project: ComposeProject, name: str) -> list[str]:
    """The edge's HAProxy processes: ``PID START`` per line (start in clock ticks since boot)."""
    script = ('for d in /proc/[0-9]*; do [ "$(cat "$d/comm" 2>/dev/null)" = haproxy ] || continue; '
              'set -- $(cat "$d/stat" 2>/dev/null); echo "${d#/proc/} ${22}"; done')
    return [*project.docker, "exec", name, "sh", "-c", script]


def config_hash_argv(project: ComposeProject, service: str) -> list[str]:
    return compose_args(project, "config", "--hash", service)


def create_beside_argv(project: ComposeProject, service: str, total: int) -> list[str]:
    """Create (not start) the service's missing containers beside the running ones, which stay
    as they are."""
    return compose_args(project, "up", "--no-start", "--no-deps", "--no-recreate", "--scale",
                        f"{service}={total}", service)


def start_argv(project: ComposeProject, containers: Sequence[str]) -> list[str]:
    return [*project.docker, "start", *containers]


def network_disconnect_argv(project: ComposeProject, network: str, container: str) -> list[str]:
    return [*project.docker, "network", "disconnect", network, container]


def network_connect_argv(project: ComposeProject, network: str, container: str,
                         aliases: Sequence[str] = ()) -> list[str]:
    """Connect ``container`` to ``network`` under ``aliases`` (none: reached by its name only)."""
    return [*project.docker, "network", "connect", *(word for alias in aliases for word in ("--alias", alias)),
            network, container]


def stop_argv(project: ComposeProject, containers: Sequence[str], timeout: float) -> list[str]:
    """Stop containers: their stop signal, then SIGKILL after ``timeout`` seconds (whole, rounded up)."""
    return [*project.docker, "stop", "--time", str(max(0, math.ceil(timeout))), *containers]


def compose_version_argv(project: ComposeProject | None = None) -> list[str]:
    """``docker compose version --short`` (asked before the project is known, too)."""
    return [*(project.docker if project is not None else ("docker",)), "compose", "version", "--short"]


def server_version_argv(project: ComposeProject) -> list[str]:
    return [*project.docker, "version", "--format", "{{.Server.Version}}"]


def daemon_info_argv(project: ComposeProject) -> list[str]:
    return [*project.docker, "info", "--format", "{{.ServerVersion}}"]


def image_inspect_id_argv(project: ComposeProject, image: str) -> list[str]:
    return [*project.docker, "image", "inspect", "--format", "{{.Id}}", image]


def label_ids_argv(project: ComposeProject, label: str) -> list[str]:
    """Ids of the project's containers (one-off ones too) that carry ``label``."""
    return [*project.docker, "ps", "--all", "--quiet", "--filter", f"label={PROJECT_LABEL}={project.project_name}",
            "--filter", f"label={label}"]


def image_ls_argv(project: ComposeProject) -> list[str]:
    return [*project.docker, "image", "ls", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]


def tag_argv(project: ComposeProject, image: str, reference: str) -> list[str]:
    return [*project.docker, "tag", image, reference]


def wait_argv(project: ComposeProject, container: str) -> list[str]:
    return [*project.docker, "wait", container]


def inspect_argv(project: ComposeProject, ids: Sequence[str]) -> list[str]:
    return [*project.docker, "inspect", *ids]


def remove_containers_argv(project: ComposeProject, names: Sequence[str]) -> list[str]:
    return [*project.docker, "rm", "--force", *names]


def rename_argv(project: ComposeProject, container: str, name: str) -> list[str]:
    return [*project.docker, "rename", container, name]


def clock_argv(project: ComposeProject) -> list[str]:
    """The daemon's clock, as JSON (RFC 3339)."""
    return [*project.docker, "info", "--format", "{{json .SystemTime}}"]


# -- images between daemons (shipping them without a registry, or through one) --------------

# Prints one line per image, in order: its id, or an empty line when the engine has no such
# image. One `docker image inspect` for all when all exist, else one per image; any other
# failure (no engine, no docker) goes to stderr with exit 3. Images are the script's arguments.
_IDS_SCRIPT = """\
out=$(docker image inspect --format '{{.Id}}' -- "$@" 2>&1) && { printf '%s\\n' "$out"; exit 0; }
for image in "$@"; do
  if out=$(docker image inspect --format '{{.Id}}' -- "$image" 2>&1); then printf '%s\\n' "$out"
  else case "$out" in *"o such image"*) echo ;; *) printf '%s\\n' "$out" >&2; exit 3 ;; esac
  fi
done"""


def image_ids_argv(images: Sequence[str]) -> list[str]:
    """Each image's id, a line each in order (an empty line: no such image)."""
    return ["sh", "-c", _IDS_SCRIPT, "sh", *images]


def save_argv(images: Sequence[str]) -> list[str]:
    return ["docker", "save", *images]


def load_argv() -> list[str]:
    return ["docker", "load"]


def push_argv(reference: str) -> list[str]:
    return ["docker", "push", reference]


def pull_image_argv(reference: str) -> list[str]:
    return ["docker", "pull", reference]


def plain_tag_argv(image: str, reference: str) -> list[str]:
    """``docker tag`` on whichever daemon the command runs against (no project needed)."""
    return ["docker", "tag", image, reference]
