"""The phases, one module per family. The names live in :mod:`surefoot.names` (re-exported here)."""

from surefoot.names import CHECK_NAMES, OPTIONAL_PHASES, PHASE_NAMES

__all__ = ["CHECK_NAMES", "OPTIONAL_PHASES", "PHASE_NAMES"]
