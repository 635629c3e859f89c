"""A deployment: what a phase sees (api), the pipeline built from the phase table (pipeline), the
releases, the health gates (gates/), the phases (phases/), and their running (run/)."""
