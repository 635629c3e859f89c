"""The live view when phases run side by side."""

from __future__ import annotations

import io

from rich.console import Console

from surefoot.base import events
from surefoot.cli.console import LiveRenderer


def render(renderer: LiveRenderer) -> str:
    out = io.StringIO()
    Console(file=out, width=120).print(renderer.__rich__())
    return out.getvalue()


def test_each_running_phase_keeps_its_own_lines() -> None:
    renderer = LiveRenderer(io.StringIO())
    try:
        renderer.emit(events.DeploymentStarted(1, "shop", "fresh", ("pull-images", "build", "database-start")))
        renderer.emit(events.PhaseStarted("pull-images", 1, "first run"))
        renderer.emit(events.PhaseStarted("build", 1, "first run"))
        renderer.emit(events.PhaseOutput("pull-images", "db Pulled"))
        for n in range(50):  # a chatty build
            renderer.emit(events.PhaseOutput("build", f"step {n}"))
        renderer.emit(events.PhaseProgress("build", "building api"))
        shown = render(renderer)
        assert "pull-images │ db Pulled" in shown  # not crowded out by the build's lines
        assert "build │ step 49" in shown
        assert "build │ step 40" not in shown
        assert "build: building api" in shown

        renderer.emit(events.PhaseFinished("pull-images", "completed", 0.5, None))
        shown = render(renderer)
        assert "db Pulled" not in shown  # a finished phase's lines go
        assert "│ step 49" in shown and "build │" not in shown  # one phase left: no prefix
    finally:
        renderer.close()
