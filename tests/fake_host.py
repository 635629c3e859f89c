"""A host that answers from a script and records what it was asked, and a phase context
built on it and a :class:`FakeEngine`: the host phases (preflight, prerequisites,
configuration) tested without an engine and without changing this machine."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fakes import FakeEngine, Script
from surefoot.base.errors import CommandNotFound
from surefoot.config.settings import load_settings
from surefoot.deploy.api import Facts, PhaseContext
from surefoot.hosts.access import Access
from surefoot.proc import CancelToken, Captured

MEMINFO = "MemTotal:       8000000 kB\nMemFree:         100000 kB\nMemAvailable:    4194304 kB\n"
DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def tcp_listen(address_hex: str, port: int) -> str:
    """A LISTEN line of /proc/net/tcp (``0100007F`` is 127.0.0.1)."""
    return f"   0: {address_hex}:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0 0 1\n"


class FakeHost:
    """Answers commands from ``answers`` (argv -> Captured), files from ``files``; records
    every command run or streamed, every file written or removed, every daemon started.
    A command named in ``missing`` is not installed; any other unscripted one exits 0."""

    def __init__(self, *, root: bool = True, files: dict[str, str] | None = None,
                 answers: dict[tuple[str, ...], Captured] | None = None,
                 commands: Sequence[str] = (), missing: Sequence[str] = ()):
        self.root = root
        self.files = dict(files or {})
        self.answers = dict(answers or {})
        self.commands = set(commands)  # what `which` finds
        self.missing = set(missing)
        self.ran: list[tuple[str, ...]] = []
        self.streamed: list[tuple[str, ...]] = []
        self.envs: list[dict[str, str] | None] = []
        self.started: list[tuple[tuple[str, ...], str]] = []
        self.removed: list[str] = []
        self.on_stream: Callable[[tuple[str, ...]], None] = lambda argv: None
        self.who: Access | None = None  # what access() answers (default: root, or alice without sudo)
        self.sent: list[tuple[str, str]] = []
        self.login_failure: str | None = None  # what login_works() answers

    def answer(self, argv: Sequence[str], stdout: str = "", code: int = 0, stderr: str = "") -> None:
        self.answers[tuple(argv)] = Captured(code, stdout, stderr)

    def run(self, argv: Sequence[str], *, cwd: Path | None = None, timeout: float | None = 60.0,
            env: dict[str, str] | None = None) -> Captured:
        self.ran.append(tuple(argv))
        if argv[0] in self.missing:
            raise CommandNotFound(argv[0])
        return self.answers.get(tuple(argv), Captured(0, "", ""))

    def stream(self, argv: Sequence[str], on_line: Callable[[str], None], *, cwd: Path | None = None,
               timeout: float | None = None, env: dict[str, str] | None = None) -> int:
        self.streamed.append(tuple(argv))
        self.envs.append(env)
        if argv[0] in self.missing:
            raise CommandNotFound(argv[0])
        self.on_stream(tuple(argv))
        answer = self.answers.get(tuple(argv), Captured(0, "", ""))
        for line in answer.stdout.splitlines():
            on_line(line)
        return answer.returncode

    def read_text(self, path: str) -> str:
        if path not in self.files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return self.files[path]

    def exists(self, path: str) -> bool:
        return path in self.files

    def write_text(self, path: str, text: str) -> None:
        self.files[path] = text

    def remove(self, path: str) -> None:
        self.removed.append(path)
        self.files.pop(path, None)

    def which(self, name: str) -> bool:
        return name in self.commands

    def is_root(self) -> bool:
        return self.root

    def access(self) -> Access:
        return self.who or Access(user="root" if self.root else "alice", root=self.root,
                                  sudo="root" if self.root else "missing")

    def as_root(self) -> FakeHost | None:
        """Itself (commands are recorded as written: the prefix shows only in messages)."""
        return self if self.access().elevate is not None else None

    def send_file(self, local: Path, path: str, mode: int = 0o755) -> None:
        self.sent.append((str(local), path))
        self.files[path] = "(binary)"

    def login_works(self) -> str | None:
        return self.login_failure

    def start_detached(self, argv: Sequence[str], log_path: str) -> int:
        self.started.append((tuple(argv), log_path))
        self.files["/proc/4242/stat"] = "4242 (dockerd) S 1 4242"
        return 4242

    def reach(self, host: str, port: int) -> tuple[str, int]:
        return host, port

    def unreach(self) -> None:
        pass


class QuickCancel(CancelToken):
    """Sleeps count and call ``on_sleep``, and take no time."""

    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []
        self.on_sleep: Callable[[], None] = lambda: None

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.on_sleep()
        self.check()


class Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.warnings: list[str] = []

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class FakePrompter:
    """Answers questions from a list, confirms as told; records what was asked and shown."""

    def __init__(self, answers: Sequence[str], confirm: bool = True):
        self.answers = list(answers)
        self.asked: list[tuple[str, bool]] = []
        self.shown: list[str] = []
        self.confirmations: list[str] = []
        self.confirm_with = confirm

    def ask(self, question: str, *, secret: bool) -> str:
        self.asked.append((question, secret))
        return self.answers.pop(0)

    def confirm(self, question: str) -> bool:
        self.confirmations.append(question)
        return self.confirm_with

    def show(self, text: str) -> None:
        self.shown.append(text)

    @contextmanager
    def session(self) -> Iterator[None]:
        yield


WEB = {"web": {"image": "busybox:1", "ports": [{"published": "8080", "host_ip": "127.0.0.1", "target": 80}]}}


def make_context(tmp_path: Path, toml: str = "", *, host: FakeHost, engine: FakeEngine | None = None,
                 name: str = "preflight", services: dict[str, Any] | None = None,
                 files: dict[str, str] | None = None, **options: Any) -> tuple[PhaseContext, Recorder]:
    """A phase context on a project in ``tmp_path`` (its compose file is never read: the
    engine answers the model), the fakes, and a recorder of its output."""
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    (tmp_path / "surefoot.toml").write_text(toml)
    for file, text in (files or {}).items():
        (tmp_path / file).write_text(text)
    settings = load_settings(tmp_path)
    engine = engine or FakeEngine(Script(services=services if services is not None else WEB,
                                         unknown_image="sha256:1"), settings.project_name, tmp_path)
    facts = Facts(settings, engine)
    seen = Recorder()
    clock = iter(range(0, 10**6))
    ctx = PhaseContext(
        name=name, settings=settings, phase_settings=settings.phases.for_phase(name), engine=engine,
        facts=facts, cancel=options.pop("cancel", None) or QuickCancel(), clock=lambda: float(next(clock)),
        out=seen.lines.append, progress=lambda text: None, warn=seen.warnings.append, host=host,
        **options,
    )
    return ctx, seen
