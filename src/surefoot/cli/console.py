"""Renderers of deployment events: a live view for terminals, plain lines elsewhere.

Chosen once by the CLI and handed to the runner; nothing else prints during a
deployment. Rich is imported only by the live view.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from surefoot.base import events
from surefoot.base.text import printable
from surefoot.base.units import format_duration

if TYPE_CHECKING:
    from rich.console import RenderableType

SYMBOLS = {
    "pending": "·",
    "running": "▶",
    "completed": "✔",
    "skipped": "–",
    "failed": "✘",
    "interrupted": "■",
}


class PlainRenderer:
    """Timestamped lines, one per event, for logs and CI."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()  # phases running side by side emit from their threads

    def _line(self, text: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        with self._lock:
            self.stream.write(f"{stamp} {printable(text)}\n")
            self.stream.flush()

    def emit(self, event: events.Event) -> None:
        match event:
            case events.DeploymentStarted(deployment_id=dep, project=project, kind=kind):
                self._line(f"deployment #{dep} of {project} ({kind})" if dep else f"{kind}: {project}")
            case events.PhaseSkipped(phase=phase, reason=reason):
                self._line(f"{phase}: skipped ({reason})")
            case events.PhaseStarted(phase=phase, attempt=attempt, reason=reason):
                self._line(f"{phase}: started (attempt {attempt}; {reason})")
            case events.PhaseOutput(phase=phase, line=line):
                self._line(f"{phase} | {line}")
            case events.PhaseProgress():
                pass  # the lines already say it; progress is for the live view
            case events.PhaseWarning(phase=phase, text=text):
                self._line(f"{phase or 'deploy'}: {text}")
            case events.PhaseFinished(phase=phase, status=status, elapsed=elapsed, note=note):
                suffix = f": {note}" if note else ""
                self._line(f"{phase}: {status} in {format_duration(elapsed)}{suffix}")
            case events.DeploymentFinished(deployment_id=dep, state=state, elapsed=elapsed):
                what = f"deployment #{dep}" if dep else "done:"
                self._line(f"{what} {state} in {format_duration(elapsed)}")

    def paused(self) -> AbstractContextManager[None]:
        return nullcontext()

    def close(self) -> None:
        pass


class LiveRenderer:
    """A live table of the phases with the running phase's latest output lines."""

    OUTPUT_LINES = 8

    def __init__(self, stream: TextIO | None = None):
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream or sys.stdout)
        self._lock = threading.RLock()
        self._phases: list[str] = []
        self._status: dict[str, str] = {}
        self._notes: dict[str, str] = {}
        self._started: dict[str, float] = {}
        self._elapsed: dict[str, float] = {}
        self._output: dict[str, deque[str]] = {}  # the latest lines of each running phase
        self._progress: dict[str, str] = {}
        self._title = "surefoot"
        self._pauses = 0  # paused() may nest: a question inside the configuration's session
        self._pause_lock = threading.Lock()
        self._live = Live(self, console=self.console, refresh_per_second=8, transient=False)
        self._live.start()

    def emit(self, event: events.Event) -> None:
        if isinstance(event, events.PhaseWarning):
            from rich.text import Text

            # Printed above the live table; outside our lock, since printing renders the table.
            self.console.print(Text.assemble(("warning:", "yellow"), " ", printable(event.text)), highlight=False)
            return
        with self._lock:
            match event:
                case events.DeploymentStarted(deployment_id=dep, project=project, kind=kind, phases=phases):
                    self._title = f"deployment #{dep} of {project} ({kind})" if dep else f"{kind}: {project}"
                    self._phases = list(phases)
                    self._status = dict.fromkeys(phases, "pending")
                case events.PhaseSkipped(phase=phase, reason=reason, status=status):
                    self._status[phase] = status
                    self._notes[phase] = printable(reason)
                case events.PhaseStarted(phase=phase, attempt=attempt, reason=reason):
                    self._status[phase] = "running"
                    self._notes[phase] = printable(f"attempt {attempt}: {reason}" if attempt > 1 else reason)
                    self._started[phase] = time.monotonic()
                case events.PhaseOutput(phase=phase, line=line):
                    self._output.setdefault(phase, deque(maxlen=self.OUTPUT_LINES)).append(printable(line))
                case events.PhaseProgress(phase=phase, text=text):
                    self._progress[phase] = printable(text)
                case events.PhaseFinished(phase=phase, status=status, elapsed=elapsed, note=note):
                    self._status[phase] = status
                    self._elapsed[phase] = elapsed
                    self._notes[phase] = printable(note or "")
                    self._progress.pop(phase, None)
                    self._output.pop(phase, None)
                case events.DeploymentFinished():
                    self._output.clear()
                    self._progress.clear()

    def __rich__(self) -> RenderableType:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        styles = {"completed": "green", "failed": "red", "running": "cyan",
                  "interrupted": "yellow", "skipped": "dim", "pending": "dim"}
        with self._lock:
            table = Table(title=self._title, title_justify="left", box=None, pad_edge=False)
            # The phases and their states whole on an 80-column terminal; the notes give way.
            # A column's width counts its padding: one space each side, none at the table's edges.
            widths = (2, max((len(p) for p in self._phases), default=5) + 2,
                      max(len(s) for s in (*self._status.values(), "state")) + 2, 9)
            table.add_column("", width=widths[0], no_wrap=True)
            table.add_column("phase", no_wrap=True, width=widths[1])
            table.add_column("state", no_wrap=True, width=widths[2])
            table.add_column("time", justify="right", no_wrap=True, width=widths[3])
            notes_width = max(self.console.width - sum(widths) - 1, 4)
            table.add_column("", overflow="ellipsis", no_wrap=True, max_width=notes_width)
            running = []
            for phase in self._phases:
                status = self._status.get(phase, "pending")
                if status == "running":
                    running.append(phase)
                    elapsed = time.monotonic() - self._started.get(phase, time.monotonic())
                else:
                    elapsed = self._elapsed.get(phase, -1)
                style = styles.get(status, "")
                table.add_row(
                    Text(SYMBOLS.get(status, "?"), style=style),
                    Text(phase, style=style),
                    Text(status, style=style),
                    format_duration(elapsed) if elapsed >= 0 else "",
                    Text(self._notes.get(phase, ""), style="dim"),
                )
            parts: list[RenderableType] = [table]
            several = len(running) > 1  # phases side by side: say whose line it is
            for phase in running:
                if phase in self._progress:
                    parts.append(Text(f"  {phase + ': ' if several else ''}{self._progress[phase]}", style="cyan"))
            share = max(2, self.OUTPUT_LINES // max(1, len(running)))  # a chatty phase cannot crowd out another
            for phase in running:
                for line in list(self._output.get(phase, ()))[-share:]:
                    shown = f"{phase} │ {line}" if several else f"│ {line}"
                    parts.append(Text(f"  {shown}", style="dim", no_wrap=True, overflow="ellipsis"))
            return Group(*parts)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Step aside while the operator is asked something: the table is erased (not left
        behind), and drawn again below what was asked and answered once the last pause ends.
        A new Live each time: a restarted one would move up over the lines written meanwhile
        (it remembers the height of its last drawing) and draw over them."""
        from rich.live import Live

        with self._pause_lock:
            self._pauses += 1
            first = self._pauses == 1
        if first:
            self._live.transient = True
            self._live.stop()
        try:
            yield
        finally:
            with self._pause_lock:
                self._pauses -= 1
                last = self._pauses == 0
            if last:
                self._live = Live(self, console=self.console, refresh_per_second=8, transient=False)
                self._live.start()

    def close(self) -> None:
        self._live.refresh()
        self._live.stop()


class JsonRenderer:
    """One JSON object per line, for CI and scripts: every event typed (``type``), with its
    UTC ``time``. The lines carry what the other renderers show, secrets already masked by
    the runner. The results of preflight and verify checks and of gate probes, which the
    phases write as output lines, are also given as ``check`` and ``probe`` objects, and what
    images built here sent to each server as ``shipped``."""

    _CHECK = re.compile(r"^(?P<name>[a-z][a-z-]*): (?P<result>pass|warn|fail) \((?P<detail>.*)\)"
                        r"(?: - (?P<advice>.*))?$")
    _VERIFY = re.compile(r"^(?P<name>\S+)\s+(?P<result>pass|warn|fail)\s+(?P<detail>.*)$")
    _PROBE = re.compile(r"^(?P<probe>.+?): (?P<passes>\d+)/(?P<needed>\d+) passes, (?P<elapsed>\S+) of "
                        r"(?P<timeout>\S+)(?: \((?P<result>pass|fail): (?P<detail>.*)\))?$")
    _SHIPPED = re.compile(r"^shipped to (?P<target>\S+): (?P<sent>\d+) layer\(s\), \S+ MB \((?P<bytes>\d+) bytes\); "
                          r"(?:(?P<skipped>\d+) layer\(s\) already there|every image already there)")

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def _write(self, event_type: str, **fields: object) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        line = json.dumps({"type": event_type, "time": stamp, **fields}, ensure_ascii=False)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def emit(self, event: events.Event) -> None:
        match event:
            case events.DeploymentStarted(deployment_id=dep, project=project, kind=kind, phases=phases):
                self._write("deployment-started", deployment=dep or None, project=project, kind=kind,
                            phases=list(phases))
            case events.PhaseSkipped(phase=phase, reason=reason, status=status):
                self._write("phase-skipped", phase=phase, status=status, reason=reason)
            case events.PhaseStarted(phase=phase, attempt=attempt, reason=reason):
                self._write("phase-started", phase=phase, attempt=attempt, reason=reason)
            case events.PhaseOutput(phase=phase, line=line):
                self._write("output", phase=phase, line=line)
                self._results(phase, line)
            case events.PhaseProgress(phase=phase, text=text):
                self._write("progress", phase=phase, text=text)
            case events.PhaseWarning(phase=phase, text=text):
                self._write("warning", phase=phase, text=text)
            case events.PhaseFinished(phase=phase, status=status, elapsed=elapsed, note=note):
                self._write("phase-finished", phase=phase, status=status, duration=round(elapsed, 3), note=note)
            case events.DeploymentFinished(deployment_id=dep, state=state, elapsed=elapsed):
                self._write("deployment-finished", deployment=dep or None, state=state,
                            duration=round(elapsed, 3))

    def _results(self, phase: str, line: str) -> None:
        """A check's or a probe's result, read from the line the phase wrote."""
        shipped = self._SHIPPED.match(line)
        if shipped:
            skipped = shipped["skipped"]
            self._write("shipped", phase=phase, target=shipped["target"], layers_sent=int(shipped["sent"]),
                        layers_skipped=int(skipped) if skipped is not None else None, bytes=int(shipped["bytes"]))
            return
        probe = self._PROBE.match(line)
        if probe:
            self._write("probe", phase=phase, probe=probe["probe"], passes=int(probe["passes"]),
                        needed=int(probe["needed"]), result=probe["result"], detail=probe["detail"])
            return
        if phase == "preflight":
            check = self._CHECK.match(line)
            if check:
                self._write("check", phase=phase, name=check["name"], result=check["result"],
                            detail=check["detail"], advice=check["advice"])
        elif phase == "verify":
            row = self._VERIFY.match(line)
            if row and row["name"] != "check":
                self._write("check", phase=phase, name=row["name"], result=row["result"],
                            detail=row["detail"], advice=None)

    def paused(self) -> AbstractContextManager[None]:
        return nullcontext()

    def close(self) -> None:
        pass


PROGRESS_CHOICES = ("auto", "live", "plain", "json")


def reporter_for(progress: str | None, stream: TextIO | None = None) -> events.Reporter:
    """The renderer ``--progress`` names; without it SUREFOOT_PROGRESS (live, plain, json),
    else the live view on a terminal and plain lines elsewhere."""
    choice = progress or os.environ.get("SUREFOOT_PROGRESS", "") or "auto"
    if choice == "json":
        return JsonRenderer(stream)
    if choice in ("live", "plain"):
        return make_reporter(stream, live=choice == "live")
    return make_reporter(stream, live=None if progress is None else (stream or sys.stdout).isatty())


def make_reporter(stream: TextIO | None = None, live: bool | None = None) -> events.Reporter:
    """The live view on a terminal, plain lines elsewhere; SUREFOOT_PROGRESS=plain|live decides."""
    stream = stream or sys.stdout
    if live is None:
        choice = os.environ.get("SUREFOOT_PROGRESS", "")
        live = choice == "live" or (choice != "plain" and stream.isatty())
    return LiveRenderer(stream) if live else PlainRenderer(stream)
