"""The one registry of the pipeline's phases and of preflight's checks.

Each phase is one row of :data:`PHASES`: its name, the function that runs it
(``"module:function"`` under :mod:`surefoot.deploy.phases`), the inputs its checkpoint depends on,
what it waits for, and its flags (see :class:`surefoot.deploy.pipeline.PhaseSpec`). Adding a phase
is its module under ``phases/`` and its row here; :mod:`surefoot.deploy.registry` builds the
pipeline from the rows. Config (``phases.<name>``, ``--skip-check``), status and the timeline
read the names. This module imports nothing, so any layer may.
"""

from typing import Any

PHASES: tuple[dict[str, Any], ...] = (
    # When the configuration phase writes the env file (it declares prompts, secrets or
    # derived values), the phases up to the one that ``writes_env`` cannot depend on "env" or
    # "compose": the registry drops those inputs there.
    {"name": "preflight", "run": "preflight:preflight", "inputs": ("compose", "env", "target")},
    {"name": "prerequisites", "run": "prerequisites:prerequisites"},
    {"name": "configuration", "run": "configuration:configuration", "inputs": ("env", "values"),
     "fingerprint_after": True, "writes_env": True},
    # Pulls and builds touch different images (pull --ignore-buildable): side by side.
    {"name": "pull-images", "run": "images:pull", "inputs": ("compose",), "after": ("configuration",),
     "announces": ("database-images",)},
    {"name": "build", "run": "images:build", "inputs": ("compose", "env", "build-context", "target"),
     "after": ("configuration",), "announces": ("database-images",), "stands": "images:built_stand"},
    # The databases start as soon as their own images are there, while the rest are still
    # pulled or built.
    # ``stands``: on resume, whether what the phase made is still there (it runs again if not).
    # ``stands``: on resume, whether what the phase made is still there (it runs again if not).
    # ``engine``: the function on a target of another engine (``[targets.X] engine``), by name in
    # that engine's package: ``{"swarm": "services_start"}`` is surefoot.engines.swarm.phases.services_start.
    {"name": "database-start", "run": "database:start", "inputs": ("compose", "env", "images:database"),
     "after": ("pull-images:database-images", "build:database-images"),
     "engine": {"swarm": "database_start"}, "stands": "database:databases_stand"},
    {"name": "database-migrate", "run": "database:migrate", "inputs": ("compose", "env", "images:migrate"),
     "after": ("database-start", "pull-images", "build"), "engine": {"swarm": "migrate"}},
    {"name": "services-start", "run": "services:start", "inputs": ("compose", "env", "images:all"),
     "release_point": True, "rollback_on_failure": True, "engine": {"swarm": "services_start"},
     "stands": "services:services_stand"},
    {"name": "health-wait", "run": "health:wait", "inputs": ("compose",), "rollback_on_failure": True,
     "engine": {"swarm": "health_wait"}},
    {"name": "cleanup", "run": "cleanup:prune", "prunes_releases": True, "engine": {"swarm": "cleanup"}},
    # Optional phases run after cleanup where their settings say so (``configured``); status
    # lists them (pending) from the start. Verify reads the running stack; cleanup only prunes
    # what no release uses: side by side.
    {"name": "verify", "run": "verify:verify", "inputs": ("compose",), "after": ("health-wait",),
     "optional": True, "engine": {"swarm": "verify"}},
    {"name": "post-deploy", "run": "postdeploy:post_deploy", "inputs": ("compose", "env"),
     "after": ("cleanup", "verify"), "optional": True},
)
# The engines, by the name ``[targets.NAME] engine`` gives: each its class under surefoot.engines.
# Adding an engine is its package (engines/NAME/), its line here, and its entries in the rows above
# whose phases it does its own way.
ENGINES: dict[str, str] = {"compose": "compose.adapter:ComposeEngine", "swarm": "swarm.engine:SwarmEngine"}
# Restoring a release (a rollback, automatic or by hand): a unit of its own, outside the pipeline,
# its function named as a row's ``run`` and ``engine``; it is handed the release to restore.
RESTORE: dict[str, Any] = {"name": "rollback", "run": "restore:restore", "engine": {"swarm": "restore"}}
PHASE_NAMES: tuple[str, ...] = tuple(row["name"] for row in PHASES if not row.get("optional"))
OPTIONAL_PHASES: tuple[str, ...] = tuple(row["name"] for row in PHASES if row.get("optional"))
# The kinds of health probe, each with the key a probe of that kind needs (a probe without
# ``type`` is of the first kind whose key it has). Adding a kind: its row here and its
# builder ``_check_<kind>`` in surefoot.deploy.gates; config validates ``type`` and the key from here.
PROBE_KINDS: dict[str, str] = {"http": "url", "tcp": "port", "command": "command", "container": "service"}
# The preflight checks, by name (for --skip-check and phases.preflight.skip).
CHECK_NAMES: tuple[str, ...] = ("docker", "compose", "memory", "disk", "cpus", "os", "clock", "env-file", "config",
                                "ports", "registry", "dns", "build", "secrets", "swarm")
