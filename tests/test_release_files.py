"""What a release keeps and what a rollback restores, on real-world-shaped projects (tests/realworld.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from realworld import Shop, new_built, new_shop

from conftest import Projects


@pytest.fixture
def shop(projects: Projects) -> Shop:
    return new_shop(projects)


@pytest.mark.docker
def test_a_rollback_leaves_unchanged_services_running(shop: Shop) -> None:
    config = shop.path / "surefoot.toml"
    config.write_text(config.read_text().replace("[project]\n", '[project]\nenv_file = ".env"\n'))
    shop.deploy()
    db = shop.container("db")
    worker = shop.container("worker")
    web = shop.container("web")
    # Restoring what runs changes nothing: the release's model is what compose runs.
    same = shop.run("rollback", "1", "--yes")
    assert same.returncode == 0, same.stdout + same.stderr
    assert (shop.container("db"), shop.container("worker"), shop.container("web")) == (db, worker, web)
    # Release 2 changes only the web service's environment.
    shop.write(".env", "GREETING=changed\n")
    shop.deploy()
    assert shop.info()["greeting"] == "changed"
    assert shop.container("db") == db

    manual = shop.run("rollback", "--yes")
    assert manual.returncode == 0, manual.stdout + manual.stderr
    assert shop.info()["greeting"] == "hello"
    assert shop.container("db") == db, "the manual rollback recreated the database"
    assert shop.container("worker") == worker
    assert "db-1  Recreate" not in manual.stdout

    # The deploy after it recreates only what differs (web's environment again).
    shop.deploy()
    assert shop.info()["greeting"] == "changed"
    assert shop.container("db") == db, "the deploy after a rollback recreated the database"
    assert shop.container("worker") == worker

    # An automatic rollback after a failing gate: the database keeps running too.
    shop.write(".env", "GREETING=third\n")
    shop.write("site/health", json.dumps({"status": "degraded"}))
    result = shop.deploy(4)
    assert "release 3 is running again" in result.stderr
    assert shop.info()["greeting"] == "changed"
    assert shop.container("db") == db, "the automatic rollback recreated the database"
    assert shop.container("worker") == worker

    shop.write("site/health", json.dumps({"status": "healthy"}))
    shop.deploy()
    assert shop.info()["greeting"] == "third"
    assert shop.container("db") == db
    assert shop.container("worker") == worker


@pytest.mark.docker
def test_a_rollback_of_a_built_image_leaves_the_database_and_the_next_deploy_alike(projects: Projects) -> None:
    built = new_built(projects)
    built.write("web/health", json.dumps({"status": "healthy", "site": "r1"}))
    built.deploy()
    db = built.container("db")
    built.write("web/health", json.dumps({"status": "healthy", "site": "r2"}))
    built.deploy()
    assert built.health()["site"] == "r2"
    result = built.run("rollback", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert built.health()["site"] == "r1"
    assert built.container("db") == db
    web = built.container("web")
    # Back to release 1's code: the rebuilt image is release 1's, nothing is recreated.
    built.write("web/health", json.dumps({"status": "healthy", "site": "r1"}))
    built.deploy()
    assert built.container("db") == db
    assert built.container("web") == web


@pytest.mark.docker
def test_a_rollback_runs_from_the_release_copies_of_every_file_compose_reads(shop: Shop) -> None:
    shop.deploy()
    r1 = {"conf": "conf-r1", "token": "token-r1", "base": "base-r1", "greeting": "hello", "outside": "outside-r1",
          "motd": "motd-r1"}
    assert shop.info() == r1
    history = json.loads(shop.run("history", "--json").stdout)
    (not_kept,) = history["releases"][0]["not_kept"]
    assert str(shop.outside) in not_kept and "outside the project" in not_kept
    assert "not kept" in shop.run("history").stdout

    # Release 2 changes the code (a read-only folder mount), the config file, the secret,
    # the extended file, the included service's config; its code is broken.
    shop.release("r2", healthy=False, greeting="r2")  # compose's own .env changes too
    result = shop.deploy(4)
    assert "release 1 is running again" in result.stderr
    assert shop.health()["site"] == "r1"
    assert shop.info() == {**r1, "outside": "outside-r2"}  # outside the project: not kept, as it is now
    assert shop.exec("worker", "cat", "/etc/worker.conf") == "worker-r1"
    assert "outside the project" in result.stderr  # the rollback names what it could not restore
    # The operator's working files are left as they are.
    assert (shop.path / "web.conf").read_text() == "conf-r2"
    assert json.loads((shop.path / "site" / "health").read_text())["status"] == "degraded"

    # Fixed, release 3 goes through; then its secret file is deleted and release 1
    # is restored by hand from its own copies.
    shop.release("r3")
    shop.deploy()
    assert shop.info()["token"] == "token-r3"
    assert shop.exec("worker", "cat", "/etc/worker.conf") == "worker-r3"
    (shop.path / "secrets" / "token.txt").unlink()
    (shop.path / "common.yaml").write_text((shop.path / "common.yaml").read_text().replace("base-r3", "base-x"))
    manual = shop.run("rollback", "1", "--yes")
    assert manual.returncode == 0, manual.stdout + manual.stderr
    assert "not restored" in manual.stdout and str(shop.outside) in manual.stdout
    assert shop.health()["site"] == "r1"
    assert shop.info() == {**r1, "outside": "outside-r3"}
    assert shop.exec("worker", "cat", "/etc/worker.conf") == "worker-r1"
    assert not (shop.path / "secrets" / "token.txt").exists()
    # The read-write data folder is data: mounted from where it is, never copied.
    assert not list((shop.path / ".surefoot" / "releases").glob("*/files/project/data"))


@pytest.mark.docker
def test_a_secret_file_that_alone_changed_is_restored(shop: Shop) -> None:
    shop.deploy()
    db = shop.container("db")
    shop.write("secrets/token.txt", "token-r2")  # compose sees no change: web keeps running, reads it
    shop.deploy()
    assert shop.info()["token"] == "token-r2"
    result = shop.run("rollback", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert shop.info()["token"] == "token-r1"
    assert shop.container("db") == db
    assert (shop.path / "secrets" / "token.txt").read_text() == "token-r2"


@pytest.mark.docker
def test_a_release_not_healthy_is_refused_with_the_true_reason(shop: Shop) -> None:
    shop.deploy()
    shop.release("r2", healthy=False)
    shop.deploy(4)
    shop.release("r3")
    shop.deploy()  # its cleanup removes release 2's files: it was never healthy
    result = shop.run("rollback", "2", "--yes")
    assert result.returncode == 2
    assert "release 2 cannot be restored: it failed its deployment and was rolled back" in result.stderr
    assert "past keeping" not in result.stderr


class Hooks(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, object]]]]:
    received: ClassVar[list[dict[str, object]]] = []
    handler = type("Handler", (Hooks,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.docker
def test_a_manual_rollback_sends_the_webhook(shop: Shop, webhook: tuple[str, list[dict[str, object]]]) -> None:
    url, received = webhook
    config = shop.path / "surefoot.toml"
    config.write_text(config.read_text() + f'\n[notifications]\nwebhook = "{url}"\nenvironment = "test"\n')
    shop.deploy()
    shop.write(".env", "GREETING=changed\n")
    shop.deploy()
    received.clear()
    result = shop.run("rollback", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    events = [(body["event"], body.get("release"), body.get("trigger")) for body in received]
    assert events == [("rolled-back", 1, "manual")]
    assert "rolled back by hand to release 1" in str(received[0]["text"])


@pytest.mark.docker
def test_the_release_records_a_dirty_work_tree(shop: Shop) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(shop.path), *args], check=True, capture_output=True)

    git("init", "-q")
    (shop.path / ".gitignore").write_text("data/\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "r1")
    shop.deploy()  # the state folder (untracked) does not count as a change
    shop.write("web.conf", "edited")
    shop.deploy()
    commits = [r["git_commit"] for r in json.loads(shop.run("history", "--json").stdout)["releases"]]
    head = subprocess.run(["git", "-C", str(shop.path), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert commits == [f"{head}-dirty", head]


@pytest.mark.docker
def test_the_rollback_question_names_the_release(shop: Shop) -> None:
    import os
    import pty
    import subprocess

    shop.deploy()
    shop.write(".env", "GREETING=changed\n")
    shop.deploy()
    master, slave = pty.openpty()
    process = subprocess.Popen(shop.command("rollback"), stdin=slave, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    os.close(slave)
    os.write(master, b"n\n")
    output, _ = process.communicate(timeout=60)
    os.close(master)
    created = json.loads(shop.run("history", "--json").stdout)["releases"][1]["created_at"]
    assert f"Restore release 1 ({created.replace('T', ' ')[:16]} UTC)?" in output, output
    assert shop.info()["greeting"] == "changed"  # declined: nothing restored


def test_content_digest_sees_content_and_modes_not_the_state_folder(tmp_path: Path) -> None:
    from surefoot.deploy.release_files import content_digest

    site = tmp_path / "site"
    (site / ".surefoot").mkdir(parents=True)
    (site / "index.html").write_text("one")
    before = content_digest(site, site / ".surefoot")
    (site / ".surefoot" / "log").write_text("written by a deploy")
    assert content_digest(site, site / ".surefoot") == before
    (site / "index.html").write_text("two")
    changed = content_digest(site, site / ".surefoot")
    assert changed != before
    (site / "index.html").chmod(0o700)
    assert content_digest(site, site / ".surefoot") != changed
    assert content_digest(tmp_path / "gone") is None


def test_choose_release_gives_the_true_reason(tmp_path: Path) -> None:
    from surefoot.base.errors import NoRelease
    from surefoot.deploy.run.rollback import choose_release, describe_release
    from surefoot.store import Release, StateStore

    with StateStore.open(tmp_path / "state.db") as store:
        for number, outcome, kept in ((1, "healthy", False), (2, "healthy", False), (3, "healthy", True),
                                      (4, "rolled-back", False), (5, "healthy", True)):
            folder = tmp_path / "releases" / str(number)
            if kept:
                folder.mkdir(parents=True)
            healthy_at = f"2026-05-01T10:0{number}:00.000Z" if outcome == "healthy" else None
            store.save_release(Release(number, "shop", "2026-05-01T10:00:00.000Z", outcome, healthy_at, {}, {},
                                       "", "", "0123456789abcdef-dirty", str(folder), None))

        def reason(number: int | None, keep: int = 2) -> str:
            with pytest.raises(NoRelease) as caught:
                choose_release(store, "shop", number, keep)
            return str(caught.value)

        assert "release 4 cannot be restored: it failed its deployment and was rolled back; its images and files " \
               "were removed" in reason(4)
        assert "release 1 is past keeping: only the last 2 healthy releases" in reason(1)
        assert "release 2 cannot be restored: its files are gone" in reason(2, keep=5)
        assert "there is no release 9" in reason(9)
        assert choose_release(store, "shop", None, 2).id == 3
        assert describe_release(choose_release(store, "shop", 3, 2)) == \
            "release 3 (2026-05-01 10:00 UTC, git 0123456789-dirty)"


def test_what_a_release_keeps_and_what_it_says_it_could_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    from surefoot.deploy import release_files

    project = tmp_path / "app"
    state = project / ".surefoot"
    (project / "big").mkdir(parents=True)
    (project / "big" / "blob").write_bytes(b"x" * 4096)
    (project / "conf").mkdir()
    (project / "conf" / "app.conf").write_text("conf")
    (project / "data").mkdir()
    (project / "one.conf").write_text("one")
    (state / "logs").mkdir(parents=True)
    (state / "logs" / "a.log").write_text("log")
    outside = tmp_path / "outside.conf"
    outside.write_text("outside")
    monkeypatch.setattr(release_files, "FOLDER_LIMIT", 1024)

    def bind(source: Path, target: str, read_only: bool = False) -> dict[str, object]:
        return {"type": "bind", "source": str(source), "target": target, "read_only": read_only}

    model = {
        "services": {"web": {"volumes": [
            bind(project / "big", "/big", True), bind(project / "conf", "/conf", True),
            bind(project / "data", "/data"), bind(project / "one.conf", "/one.conf"),
            bind(outside, "/outside.conf", True), bind(project, "/src", True),
        ]}},
        "secrets": {"gone": {"file": str(project / "missing.txt")}},
    }
    folder = state / "releases" / "1"
    folder.mkdir(parents=True)
    kept = release_files.keep_files(folder, model, {"services": {"web": {}}}, project, state)
    assert sorted(f["target"] for f in kept.files) == ["/conf", "/one.conf"]  # the project: bigger than 1 KiB
    assert (folder / "files" / "project" / "conf" / "app.conf").read_text() == "conf"
    assert len(kept.not_kept) == 4
    assert any("/big" in item and "larger than" in item for item in kept.not_kept)
    assert any(str(outside) in item and "outside the project" in item for item in kept.not_kept)
    assert any("secret gone" in item and "missing" in item for item in kept.not_kept)
    assert not (folder / "files" / "project" / "data").exists()
    # Under the limit, the project folder mounted read-only is kept, without the state folder.
    monkeypatch.setattr(release_files, "FOLDER_LIMIT", 1 << 20)
    folder = state / "releases" / "2"
    folder.mkdir(parents=True)
    kept = release_files.keep_files(folder, {"services": {"web": {"volumes": [bind(project, "/src", True)]}}}, {},
                                  project, state)
    assert [f["target"] for f in kept.files] == ["/src"]
    assert (folder / "files" / "project-folder" / "one.conf").read_text() == "one"
    assert not (folder / "files" / "project-folder" / ".surefoot").exists()
    assert release_files.content_digest(project, state) == kept.files[0]["digest"]
