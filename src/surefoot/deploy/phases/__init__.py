"""The phases, one module per family (the phase table, :data:`surefoot.base.names.PHASES`, names
each one's function). An engine's own phases are in its package (``engines/NAME/phases.py``)."""
