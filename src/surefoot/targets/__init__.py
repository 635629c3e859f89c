"""Targets: which one a command goes to (choose), and the target opened for a run (open)."""
