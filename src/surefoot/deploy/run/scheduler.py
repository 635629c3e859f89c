"""The scheduler: which phase starts when, side by side where the order allows.

It knows the phases' order (:class:`~surefoot.deploy.pipeline.PhaseSpec`'s ``after`` and
milestones) and nothing of the state store: whether a phase must run is asked of
``why_run``, and running it is ``run``'s work (the runner's checkpoint bracket).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from surefoot.base.errors import Interrupted
from surefoot.deploy.pipeline import PhaseSpec, ordered
from surefoot.proc import CancelToken

# Why a phase must run now (given the phases it waits for in full that ran again), or None.
WhyRun = Callable[[PhaseSpec, list[str]], "str | None"]
# Run one phase to its end: (spec, its 1-based position, why it runs, announce a milestone).
RunPhase = Callable[[PhaseSpec, int, str, Callable[[str], None]], None]


def run_side_by_side(
    pipeline: list[PhaseSpec],
    *,
    why_run: WhyRun,
    run: RunPhase,
    disabled: Callable[[str], bool],
    cancel: CancelToken,
) -> None:
    """Run every phase once what it waits for (``PhaseSpec.after``) is done; phases
    whose turn comes together run side by side, each in its own thread. After a failure
    no phase starts, the running ones finish, and the first failure is raised (an
    interruption first, when there was one)."""
    after = ordered(pipeline)
    position = {spec.name: index for index, spec in enumerate(pipeline, start=1)}
    waiting = list(pipeline)
    finished: set[str] = set()  # phases done with: completed, skipped, disabled
    milestones: set[str] = set()  # "phase:milestone" announced by running phases
    ran: set[str] = set()  # phases that ran in this deployment
    running: set[str] = set()
    errors: list[BaseException] = []
    news: queue.Queue[tuple[str, str, BaseException | None]] = queue.Queue()

    def satisfied(entry: str) -> bool:
        phase = entry.partition(":")[0]
        return phase in finished or entry in milestones

    def work(spec: PhaseSpec, reason: str) -> None:
        def reached(milestone: str) -> None:
            news.put(("milestone", f"{spec.name}:{milestone}", None))

        try:
            run(spec, position[spec.name], reason, reached)
        except BaseException as exc:  # handed to the main thread, which raises it
            news.put(("finished", spec.name, exc))
        else:
            news.put(("finished", spec.name, None))

    def start_ready() -> None:
        progressed = True
        while progressed:  # a phase skipped now may let others start
            progressed = False
            for spec in [s for s in waiting if all(satisfied(e) for e in after[s.name])]:
                cancel.check()
                waiting.remove(spec)
                progressed = True
                reran = [e for e in after[spec.name] if ":" not in e and e in ran]
                reason = why_run(spec, reran)
                if reason is None:
                    finished.add(spec.name)
                    if reran and disabled(spec.name):
                        ran.add(spec.name)  # a disabled phase passes "ran again" on to what follows it
                    continue
                ran.add(spec.name)
                running.add(spec.name)
                threading.Thread(target=work, args=(spec, reason), name=f"phase-{spec.name}").start()

    while True:
        if not errors:
            try:
                start_ready()
            except BaseException as exc:  # stop starting; let the running phases finish first
                errors.append(exc)
        if not running:
            break
        kind, name, error = news.get()
        if kind == "milestone":
            milestones.add(name)
            continue
        running.discard(name)
        if error is None:
            finished.add(name)
        else:
            errors.append(error)
    if waiting and not errors:
        raise AssertionError(f"phases never ready: {', '.join(s.name for s in waiting)}")
    if errors:
        interrupted = [e for e in errors if isinstance(e, Interrupted)]
        raise (interrupted or errors)[0]
