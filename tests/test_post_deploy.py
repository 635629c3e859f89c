"""Post-deploy commands and summary, phase hooks, and webhook notifications."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import Project, free_port, migrate_command

pytestmark = pytest.mark.docker


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                owner.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[object]:
        return [body["event"] for body in self.bodies]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()


def test_webhook_hears_of_success_and_failure(stack: Project, receiver: Receiver) -> None:
    extra = f'\n[notifications]\nwebhook = "http://127.0.0.1:{receiver.port}/hook"\nenvironment = "staging"\n'
    stack.configure(migrate_command("true"), extra)
    assert stack.run("deploy").returncode == 0
    assert receiver.events() == ["started", "completed"]
    done = receiver.bodies[1]
    assert done["project"] == stack.name and done["environment"] == "staging"
    assert done["text"] == f"[{stack.name}/staging] deployment #1 succeeded"

    stack.configure(migrate_command("exit 5"), extra)
    assert stack.run("deploy").returncode == 1
    assert receiver.events() == ["started", "completed", "started", "failed"]
    failed = receiver.bodies[3]
    assert failed["phase"] == "database-migrate"
    assert "migration command exited with code 5" in str(failed["text"])


def test_an_unreachable_webhook_only_warns(stack: Project) -> None:
    stack.configure(migrate_command("true"), f'\n[notifications]\nwebhook = "http://127.0.0.1:{free_port()}/"\n')
    result = stack.run("deploy")
    assert result.returncode == 0
    assert "notification could not be delivered" in result.stdout


def test_hooks_get_the_phase_context_and_a_failing_before_hook_fails_its_phase(stack: Project) -> None:
    record = stack.path / "hooks.txt"
    extra = f"""
[hooks.database-migrate]
before = [["sh", "-c", "echo before $SUREFOOT_PHASE $SUREFOOT_DEPLOYMENT $SUREFOOT_ATTEMPT >> {record}"]]
after = [["sh", "-c", "echo after $SUREFOOT_PHASE $SUREFOOT_PROJECT >> {record}; exit 3"]]
"""
    stack.configure(migrate_command("true"), extra)
    result = stack.run("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert record.read_text().splitlines() == ["before database-migrate 1 1", f"after database-migrate {stack.name}"]
    assert "after-database-migrate hook" in result.stdout and "exited with code 3" in result.stdout

    stack.configure(migrate_command("true"), '\n[hooks.database-start]\nbefore = [["false"]]\n')
    failed = stack.run("deploy")
    assert failed.returncode == 1
    assert "the before-database-start hook false exited with code 1" in failed.stderr
    assert stack.status()["resume_at"] == "database-start"


def test_post_deploy_commands_run_once_per_release_and_the_summary_masks_credentials(stack: Project) -> None:
    stack.write(".env", "GREETING=hello\nADMIN_PASSWORD=correct-horse-battery-staple\nDOMAIN=shop.example.com\n")
    seeded = stack.path / "seeded.txt"
    extra = f"""
[phases.post-deploy]
urls = ["https://{{DOMAIN}}/", "https://{{DOMAIN}}/api"]
credentials = ["ADMIN_PASSWORD"]
commands = [{{ command = ["sh", "-c", "echo seeded >> {seeded}"] }}, {{ service = "web", command = ["true"] }}]

[phases.verify]
urls = [{{ url = "http://127.0.0.1:{stack.port}/health", consecutive = 2, interval = "0.2s" }}]
"""
    stack.configure(migrate_command("true"), extra)
    result = stack.run("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "https://shop.example.com/api" in result.stdout
    assert f"roll back: surefoot -C {stack.path} rollback" in result.stdout
    # No terminal here: the credential is not shown at all, masked or not.
    assert "corr...aple" not in result.stdout and "correct-horse-battery-staple" not in result.stdout
    phases = [p["name"] for p in stack.status()["phases"]]
    assert phases[-2:] == ["verify", "post-deploy"]
    assert seeded.read_text() == "seeded\n"

    # A resume after a later failure does not seed again; a new release does.
    resumed = stack.run("deploy", "--resume")
    assert "nothing to resume" in resumed.stdout
    assert stack.run("deploy").returncode == 0
    assert seeded.read_text() == "seeded\nseeded\n"
