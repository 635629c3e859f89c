"""The deployment's first questions to Docker, asked while Python is still starting.

Before the first phase can run, surefoot imports pydantic and builds the models of its
configuration (about 100 ms here); the first things the deployment asks Docker,
``docker compose version`` and ``docker compose config`` (about 80 ms each), can run
meanwhile. The compose command is built from a quick reading of ``surefoot.toml``
(:func:`~surefoot.config.project.guess_compose_project`), without validation: an answer is
used only by the very same command line in the same folder, asked once, and all of
them are dropped when the env file changes. Otherwise it is asked again as usual.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

from surefoot.config.project import guess_compose_project
from surefoot.engines.compose.argv import (
    ComposeProject,
    compose_version_argv,
    config_argv,
    env_file_keys,
    raw_config_argv,
)
from surefoot.proc import Captured, ProcessRunner


class AskedAhead:
    """Commands started in the background; each answer is handed out once, to the same command."""

    def __init__(self, runner: ProcessRunner):
        self._runner = runner
        self._answers: dict[tuple[tuple[str, ...], Path | None], Future[Captured]] = {}
        self._lock = threading.Lock()

    @classmethod
    def start(cls, runner: ProcessRunner, project_dir: Path, config_path: Path | None) -> AskedAhead:
        ahead = cls(runner)
        folder = project_dir.resolve()
        ahead.ask(compose_version_argv(), folder, 30)
        guess = guess_compose_project(folder, config_path)
        if guess is not None:
            # As Compose runs it: without the variables the env file defines (the file wins).
            target = ComposeProject(guess[0], folder, guess[1], guess[2])
            without = env_file_keys(guess[2])
            ahead.ask(config_argv(target), folder, 60, without)
            # What services-start's release keeps, a few seconds later (it reads no env value).
            ahead.ask(raw_config_argv(target), folder, 60, without)
        return ahead

    def ask(self, argv: Sequence[str], cwd: Path | None, timeout: float,
            without: frozenset[str] = frozenset()) -> None:
        answer: Future[Captured] = Future()

        def run() -> None:
            try:
                answer.set_result(self._runner.capture(argv, cwd=cwd, timeout=timeout, without=without))
            except BaseException as error:  # handed to whoever takes the answer
                answer.set_exception(error)

        with self._lock:
            self._answers[(tuple(argv), cwd)] = answer
        threading.Thread(target=run, name="ask-ahead", daemon=True).start()

    def take(self, argv: Sequence[str], cwd: Path | None) -> Captured | None:
        """The answer to exactly this command in this folder, once (waiting for it if it is
        still running); None when it was not asked ahead."""
        with self._lock:
            answer = self._answers.pop((tuple(argv), cwd), None)
        return answer.result() if answer is not None else None

    def drop(self) -> None:
        """Forget every answer: what they depend on (the env file) has changed."""
        with self._lock:
            self._answers.clear()
