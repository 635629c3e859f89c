"""What a deployment tool must be trusted with, checked without an engine: text from a server
shown safely, a lock file that is not what it should be, what a release keeps of a server's files,
forwarded ports closed once probed, DNS judged from the server, the live table on 80 columns,
compose's Bake warning said once, the preflight's fingerprint, the state folder in a build
context, and a resume that finds what a completed phase made undone."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from fake_host import FakeHost, FakePrompter
from fakes import FakeEngine, Script, phase_context, running
from surefoot.base import events
from surefoot.base.errors import ConfigError
from surefoot.base.secrets import MASK, Redactor
from surefoot.base.text import printable, printable_data
from surefoot.base.units import short_commit
from surefoot.config.settings import load_settings
from surefoot.deploy.api import Facts
from surefoot.deploy.phases import build_checks, images
from surefoot.deploy.phases.database import databases_stand
from surefoot.deploy.phases.services import services_stand
from surefoot.deploy.release_files import keep_files
from surefoot.engines.compose.model import ContainerState
from surefoot.hosts import checks
from surefoot.hosts.checks import http_get_argv
from surefoot.hosts.ssh.lock import parse_holder
from surefoot.store.lock import current_holder
from surefoot.targets.open import state_files_to_send

ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x1b[0m\r\x08\x9b"


def test_text_from_a_server_loses_its_escape_sequences() -> None:
    assert printable(f"release{ESCAPES} 3\tok") == "releasered 3\tok"
    record = printable_data({"by": f"eve{ESCAPES}", "images": {f"we{ESCAPES}b": "sha"}, "release": 3,
                             "notes": [ESCAPES]})
    assert record == {"by": "evered", "images": {"weredb": "sha"}, "release": 3, "notes": ["red"]}
    holder = parse_holder(json.dumps({"pid": 4, "host": f"lap{ESCAPES}top", "since": "now\x1b[1A"}))
    assert (holder.host, holder.since) == ("lapredtop", "now")


def test_a_lock_file_that_is_valid_json_but_not_an_object_names_no_holder(tmp_path: Path) -> None:
    import fcntl
    import os

    from surefoot.store.lock import LOCK_NAME

    lock = tmp_path / LOCK_NAME
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held, as by a deployment
    try:
        for text in ("[1, 2]", '"a string"', "42", "null"):
            (tmp_path / (LOCK_NAME + ".json")).write_text(text)
            holder = current_holder(tmp_path)
            assert holder is not None and (holder.pid, holder.host, holder.since) == (None, None, None), text
    finally:
        os.close(fd)


def test_a_cut_secret_is_masked_where_it_was_cut() -> None:
    redact = Redactor({"9fK2mQ7xLp4Rt8Vw"})
    assert redact('body: {"debug":"9fK2mQ7xLp…') == f'body: {{"debug":"{MASK}…'
    assert redact("postgres://shop:9fK2mQ7x...") == f"postgres://shop:{MASK}..."
    assert redact("nothing cut here...") == "nothing cut here..."


def test_a_release_for_a_server_keeps_no_copy_of_a_file_outside_the_project(tmp_path: Path) -> None:
    project, state = tmp_path / "app", tmp_path / "app" / ".surefoot"
    project.mkdir()
    outside = tmp_path / "server-side.env"
    outside.write_text("X=1\n")
    (project / "inside.env").write_text("Y=2\n")
    (project / "key.txt").write_text("k\n")
    model = {"services": {"web": {}}, "secrets": {"k": {"file": str(project / "key.txt")}}}
    raw = {"services": {"web": {"env_file": [str(outside), str(project / "inside.env")]}}}
    folder = state / "releases" / "1"
    folder.mkdir(parents=True)
    kept = keep_files(folder, model, raw, project, state, on_server=True)
    assert [f["copy"] for f in kept.files] == ["files/project/inside.env", "files/project/key.txt"]
    assert any(str(outside) in item and "the server's own" in item for item in kept.not_kept)
    # A secret's copy keeps its file's mode (a container's user reads it, and a copy of another
    # mode would read as changed at a rollback); the state folder, 0700, keeps it private.
    assert (folder / "files" / "project" / "key.txt").stat().st_mode == (project / "key.txt").stat().st_mode
    # and what is sent to the server of a release never includes copies of outside files
    (folder / "files" / "outside").mkdir(parents=True)
    (folder / "files" / "outside" / "0-server-side.env").write_text("X=1\n")
    (folder / "restore.json").write_text("{}")
    sent = [path.relative_to(folder).as_posix() for path in state_files_to_send(folder / "restore.json")]
    assert sent == ["files/project/inside.env", "files/project/key.txt", "restore.json"]


def test_the_ports_forwarded_for_probes_are_closed_once_probed(tmp_path: Path) -> None:
    from surefoot.hosts.ssh.remote import SshHost

    class Conn:
        def __init__(self) -> None:
            self.open: set[int] = set()

        def forward_port(self, host: str, port: int) -> int:
            self.open.add(port + 10000)
            return port + 10000

        def cancel_forward(self, local: int, host: str, port: int) -> None:
            self.open.discard(local)

    class Processes:
        conn = Conn()

    server = SshHost(Processes())  # type: ignore[arg-type]
    assert server.reach("127.0.0.1", 8080) == ("127.0.0.1", 18080) == server.reach("localhost", 8080)
    assert Processes.conn.open == {18080}
    server.unreach()
    assert Processes.conn.open == set()

    # and a gate closes them when it ends, passed or not
    class Counting(FakeHost):
        closed = 0

        def unreach(self) -> None:
            Counting.closed += 1

    from surefoot.deploy.phases import health

    toml = '[phases.health-wait]\nconsecutive = 1\ninterval = "10ms"\n[[phases.health-wait.probes]]\nservice = "web"\n'
    ctx, _ = phase_context(tmp_path, FakeEngine(Script(containers=[running("web")])), toml, name="health-wait",
                           host=Counting())
    health.wait(ctx)
    assert Counting.closed == 1


def test_dns_and_nat_are_judged_from_the_server() -> None:
    server = FakeHost()
    server.answer(["getent", "ahostsv4", "shop.example.com"],
                  "93.184.216.34   STREAM shop.example.com\n93.184.216.34   DGRAM\n")
    server.answer(http_get_argv("https://api.ipify.org"), "200\n93.184.216.34")
    server.answer(["hostname", "-I"], "93.184.216.34 10.0.0.5 \n")
    assert checks.resolve(server, "shop.example.com") == ["93.184.216.34"]
    assert checks.public_address(server, "https://api.ipify.org") == "93.184.216.34"
    assert checks.behind_nat(server) is False
    nat = FakeHost()
    nat.answer(["hostname", "-I"], "10.0.0.5 172.17.0.1 fd00::1\n")
    assert checks.behind_nat(nat) is True
    assert checks.resolve(FakeHost(), "nowhere.example.com") is None  # no answer: no record
    assert server.ran and all(argv[0] in ("getent", "python3", "hostname") for argv in server.ran)


def test_the_live_table_shows_phases_and_states_whole_on_80_columns() -> None:
    from rich.console import Console

    from surefoot.cli.console import LiveRenderer

    out = io.StringIO()
    renderer = LiveRenderer(out)
    renderer.console = Console(file=out, width=80, force_terminal=True, color_system=None)
    names = ("preflight", "prerequisites", "configuration", "pull-images", "build", "database-start",
             "database-migrate", "services-start", "health-wait", "cleanup")
    renderer.emit(events.DeploymentStarted(3, "shop", "update", names))
    for name in names[:6]:
        renderer.emit(events.PhaseStarted(name, 1, "inputs changed since it completed: compose, env, images:all"))
        renderer.emit(events.PhaseFinished(name, "completed", 12.5, "a long note " * 10))
    renderer.emit(events.PhaseStarted("database-migrate", 2, "resuming after it was interrupted " * 3))
    renderer.emit(events.PhaseOutput("database-migrate", f"line {ESCAPES}"))
    capture = Console(file=io.StringIO(), width=80, color_system=None, record=True)
    capture.print(renderer.__rich__())
    shown = capture.export_text()
    renderer.close()
    for name in names:
        assert any(line.split()[1:2] == [name] for line in shown.splitlines() if line.split()), (name, repr(shown))
    for status in ("completed", "running", "pending"):
        assert status in shown
    assert "…" not in "".join(line.split("  ")[0] for line in shown.splitlines())
    assert "\x1b]0;pwned" not in shown and "line red" in shown


def test_compose_s_bake_warning_is_said_once_a_build(tmp_path: Path) -> None:
    warning = "WARN[0000] Docker Compose is configured to build using Bake, but buildx isn't installed"
    context = tmp_path / "context"
    context.mkdir()
    engine = FakeEngine(Script(services={"db": {"build": str(context)}, "app": {"build": str(context)}},
                               lines={"build": [warning, "built"]}))
    ctx, seen = phase_context(tmp_path, engine, '[phases.database-start]\nservices = ["db"]\n', name="build")
    images.build(ctx)
    assert len(engine.args("build")) == 2  # the databases' group and the others'
    assert seen.lines.count(warning) == 1 and seen.lines.count("built") == 2


def test_history_keeps_a_commit_s_dirty_mark() -> None:
    assert short_commit("0123456789abcdef0123-dirty") == "0123456789-dirty"
    assert short_commit("0123456789abcdef0123") == "0123456789"


def test_preflight_and_build_run_again_when_the_target_s_settings_change(tmp_path: Path) -> None:
    from surefoot.base.names import PHASES

    rows = {row["name"]: row for row in PHASES}
    assert "target" in rows["preflight"]["inputs"] and "target" in rows["build"]["inputs"]
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    settings = load_settings(tmp_path)
    here = Facts(settings, FakeEngine(), target=json.dumps({"build": "target"}))
    there = Facts(settings, FakeEngine(), target=json.dumps({"build": "control"}))
    assert here.input("target") != there.input("target")


def test_a_build_context_holding_the_state_folder_stops_preflight_or_gets_its_line_on_a_terminal(
        tmp_path: Path) -> None:
    context = tmp_path / "project"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\n")
    engine = FakeEngine(Script(services={"app": {"build": {"context": str(context), "dockerfile": "Dockerfile"}}}))
    results: list[Any] = []
    ctx, _ = phase_context(tmp_path, engine, name="preflight")
    ctx.state_dir = context / ".surefoot"
    with pytest.raises(ConfigError, match=r"add the line `/\.surefoot` to .*\.dockerignore"):
        build_checks.state_check(ctx, results.append, ["app"], engine.model())
    assert not (context / ".dockerignore").exists()
    prompter = FakePrompter([], confirm=True)
    ctx.prompter = prompter
    build_checks.state_check(ctx, results.append, ["app"], engine.model())
    assert (context / ".dockerignore").read_text().splitlines()[-1] == "/.surefoot"
    assert prompter.confirmations == ["Add these lines now?"] and results[-1].result == "pass"
    build_checks.state_check(ctx, results.append, ["app"], engine.model())  # left out now: nothing asked
    assert prompter.confirmations == ["Add these lines now?"]


def test_a_resume_finds_what_a_completed_phase_made_undone(tmp_path: Path) -> None:
    services = {"db": {"image": "postgres:16"}, "web": {"image": "web:1"},
                "seed": {"image": "web:1", "restart": "no"}}
    engine = FakeEngine(Script(services=services, images={"postgres:16": "sha256:1", "web:1": "sha256:2"},
                               containers=[running("db"), running("web"),
                                           ContainerState("shop-seed-1", "seed", "exited", "", 0, id="s")]))
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    facts = Facts(load_settings(tmp_path), engine)
    assert services_stand(facts) is None and databases_stand(facts) is None
    engine.script.containers = [running("db")]  # `compose down` of the app, say
    facts = Facts(load_settings(tmp_path), engine)
    assert services_stand(facts) == "its containers are gone or stopped (web, seed)"
    engine.script.containers = []
    assert databases_stand(Facts(load_settings(tmp_path), engine)) == "its containers are gone or stopped (db)"
    assert images.built_stand(Facts(load_settings(tmp_path), engine)) is None  # nothing built here
