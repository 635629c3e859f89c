"""The one registry of names: the pipeline's phases and preflight's checks.

Config (``phases.<name>``, ``--skip-check``), status, the timeline and the pipeline read
these; this module imports nothing, so any layer may.
"""

PHASE_NAMES: tuple[str, ...] = (
    "preflight",
    "prerequisites",
    "configuration",
    "pull-images",
    "build",
    "database-start",
    "database-migrate",
    "services-start",
    "health-wait",
    "cleanup",
)
# Phases that run after cleanup only where configured; status lists them (pending) from the start.
OPTIONAL_PHASES: tuple[str, ...] = ("verify", "post-deploy")
# The preflight checks, by name (for --skip-check and phases.preflight.skip).
CHECK_NAMES: tuple[str, ...] = ("docker", "compose", "memory", "disk", "cpus", "os", "clock", "env-file", "config",
                                "ports", "registry", "dns", "build", "secrets")
