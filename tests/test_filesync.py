"""Mirroring a project folder to a target (surefoot.hosts.ssh.mirror): manifest diffing and the local
scan as units; syncs, puts and fetches on a real test server (tests/servers.py), checked by
reading the server over its own ssh."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from servers import Server, ServerPool
from surefoot.base.errors import ConfigError
from surefoot.config.address import parse_target
from surefoot.hosts.ssh.args import SshError
from surefoot.hosts.ssh.connection import SshConnection
from surefoot.hosts.ssh.mirror import (
    MANIFEST,
    Entry,
    Manifest,
    Mirror,
    SyncError,
    diff,
    dump_manifest,
    excluded,
    folders_of,
    load_manifest,
    safe_path,
    scan,
)

REPO = Path(__file__).resolve().parent.parent
HOUR_NS = 3600 * 1_000_000_000


def file(sha: str, mode: int = 0o644, size: int = 1) -> Entry:
    return Entry("file", mode, size, 1, 1, sha)


# --- diffing (pure) -----------------------------------------------------------------------


def test_diff_sends_new_and_changed_entries_and_nothing_else() -> None:
    old = {"same": file("a"), "edited": file("a"), "chmod": file("a"), "d": Entry("dir", 0o755),
           "link": Entry("link", link="same")}
    new = {"same": file("a"), "edited": file("b"), "chmod": file("a", 0o755), "d": Entry("dir", 0o755),
           "link": Entry("link", link="edited"), "added": file("c"), "d/new": file("")}
    assert diff(old, new) == (["added", "chmod", "d/new", "edited", "link"], [])


def test_diff_sends_a_file_not_hashed_yet_even_when_the_old_entry_has_no_hash() -> None:
    assert diff({"x": file("")}, {"x": file("")}) == (["x"], [])


def test_diff_removes_what_is_gone_children_before_parents() -> None:
    old = {"d": Entry("dir", 0o755), "d/x": file("a"), "d/sub": Entry("dir", 0o755), "d/sub/y": file("b"),
           "d y": file("c"), "keep": file("k")}
    send, remove = diff(old, {"keep": file("k")})
    assert send == []
    assert remove == ["d/x", "d/sub/y", "d/sub", "d y", "d"]


def test_diff_removes_then_sends_an_entry_of_another_kind() -> None:
    old = {"a": file("a"), "b": Entry("dir", 0o755), "b/x": file("x"), "c": Entry("link", link="a")}
    new = {"a": Entry("dir", 0o755), "b": Entry("link", link="a"), "c": file("a")}
    assert diff(old, new) == (["a", "b", "c"], ["c", "b/x", "b", "a"])


def test_manifest_round_trips_and_a_damaged_one_reads_as_empty() -> None:
    manifest = Manifest({"a b/é": file("f" * 64, 0o600, 12), "d": Entry("dir", 0o700),
                         "l": Entry("link", link="../x"), "empty": Entry("file", 0o644, 0, 5, 6, "e3b0")}, 42)
    assert load_manifest(dump_manifest(manifest)) == manifest
    for damaged in (None, b"", b"{", b"[]", b'{"version": 2, "entries": {}, "scanned_ns": 1}',
                    b'{"version": 1, "entries": {"a": {"kind": "file", "colour": 1}}, "scanned_ns": 1}'):
        assert load_manifest(damaged) == Manifest({})


def test_a_manifest_naming_a_path_outside_the_mirror_reads_as_damaged() -> None:
    """The manifest lives on the server: one that names ``../victim`` (or an absolute path) would
    have the next sync remove it there. It reads as empty: all is sent again, nothing removed."""
    for path in ("../victim.txt", "a/../../victim", "/etc/passwd", "a//b", "./a", "", "a/."):
        data = json.dumps({"version": 1, "scanned_ns": 1,
                           "entries": {"fine": {"kind": "file"}, path: {"kind": "file"}}}).encode()
        assert load_manifest(data) == Manifest({}), path
    assert safe_path("app/static/a file.css") and safe_path("..hidden/x..y")
    assert folders_of(["a/b/c", "a/d", "e"]) == ["a", "a/b"]


def test_excluded_matches_names_and_relative_paths_not_prefixes() -> None:
    exclude = {".git", "deploy/secrets"}
    assert excluded(".git", exclude) and excluded(".git/config", exclude)
    assert excluded("deploy/secrets/key", exclude)
    assert not excluded(".gitignore", exclude)
    assert not excluded("deploy/secretsfile", exclude)
    assert not excluded("sub/.git", exclude)


# --- the local scan -----------------------------------------------------------------------


def tree(root: Path) -> Path:
    """A project folder with what a mirror must keep."""
    (root / "app" / "static").mkdir(parents=True)
    (root / "app" / "main.py").write_text("print('hi')\n")
    (root / "app" / "static" / "a file.css").write_text("body {}\n")
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "run.sh").chmod(0o755)
    (root / "données é.txt").write_text("unicode\n")
    (root / "empty").mkdir()
    (root / "link-to-main").symlink_to("app/main.py")
    (root / "link-to-app").symlink_to("app")
    (root / ".env").write_text("SECRET=hunter2\n")
    (root / ".env").chmod(0o644)
    (root / "compose.yaml").write_text("services: {}\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".surefoot").mkdir()
    (root / ".surefoot" / "state.db").write_text("local state\n")
    return root


def test_scan_keeps_modes_links_and_empty_folders_and_leaves_excluded_names(tmp_path: Path) -> None:
    entries = scan(tree(tmp_path), {".git", ".surefoot"}, {".env"}, Manifest({}))
    assert entries["run.sh"].mode == 0o755 and entries["app/main.py"].mode == 0o644
    assert entries[".env"].mode == 0o600, "a private file is sent 0600 whatever its mode here"
    assert entries["link-to-main"] == Entry("link", link="app/main.py")
    assert entries["link-to-app"] == Entry("link", link="app"), "a link to a folder is not followed"
    assert entries["empty"].kind == "dir"
    assert "données é.txt" in entries and "app/static/a file.css" in entries
    assert not any(path.startswith((".git", ".surefoot")) for path in entries)
    assert all(entry.sha256 == "" for entry in entries.values()), "nothing new is hashed ahead (hashed on the way)"


def test_scan_reuses_a_hash_only_for_an_unchanged_file_hashed_long_enough_ago(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    info = path.stat()
    real = hashlib.sha256(b"12345").hexdigest()
    recorded = Entry("file", 0o644, 5, info.st_mtime_ns, info.st_ctime_ns, "recorded")
    settled = Manifest({"f": recorded}, info.st_mtime_ns + HOUR_NS)
    assert scan(tmp_path, (), (), settled)["f"].sha256 == "recorded", "(size, mtime, ctime) match: not read"
    racy = Manifest({"f": recorded}, info.st_mtime_ns + 1000)
    assert scan(tmp_path, (), (), racy)["f"].sha256 == real, "changed just before that scan: read again"
    touched = Manifest({"f": Entry("file", 0o644, 5, info.st_mtime_ns - 1, info.st_ctime_ns, "recorded")},
                       info.st_mtime_ns + HOUR_NS)
    assert scan(tmp_path, (), (), touched)["f"].sha256 == real
    resized = Manifest({"f": Entry("file", 0o644, 4, 1, 1, "recorded")}, info.st_mtime_ns + HOUR_NS)
    assert scan(tmp_path, (), (), resized)["f"].sha256 == "", "another size: sent without hashing ahead"


def test_mirror_refuses_a_relative_remote_folder_and_a_private_file_outside_the_project(tmp_path: Path) -> None:
    conn = SshConnection(parse_target("ssh://root@web1", name="web1"))
    for bad in ("srv/app", "/", "", "//"):
        with pytest.raises(ConfigError, match="absolute path"):
            Mirror(conn, tmp_path, bad)
    with pytest.raises(ConfigError, match="not inside"):
        Mirror(conn, tmp_path / "project", "/srv/app", private=[tmp_path / "elsewhere.env"])
    mirror = Mirror(conn, tmp_path, "/srv/app/", private=[Path(".env"), tmp_path / "deploy" / "prod.env"],
                    exclude=["./node_modules/", ".git"])
    assert mirror.private == {".env", "deploy/prod.env"}
    assert mirror.exclude == {"node_modules", ".git", ".surefoot"}
    assert mirror.remote_root == "/srv/app"


# --- on a real test server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server(test_servers: ServerPool) -> Server:
    return test_servers.server(0)


@pytest.fixture(scope="module")
def conn(server: Server) -> Iterator[SshConnection]:
    connection = SshConnection(parse_target(server.alias, ssh_config=server.ssh_config, name="web1"))
    connection.open()
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def remote_root(server: Server) -> Iterator[str]:
    root = f"/var/lib/surefoot/test-{uuid.uuid4().hex[:8]}"
    yield root
    server.ssh("rm", "-rf", "--", root, check=False)


def remote_tree(server: Server, root: str) -> dict[str, str]:
    """Every path under ``root`` with its type, mode and, for a link, its target."""
    listing = server.ssh("sh", "-c", 'cd "$1" && find . -mindepth 1 -printf "%P\\t%y %m %l\\n"', "sh", root).stdout
    return dict(line.split("\t", 1) for line in listing.splitlines())


def cat(server: Server, path: str) -> str:
    return server.ssh("cat", "--", path).stdout


@pytest.mark.docker
def test_run_bytes_streams_binary_input_and_output_and_stops_at_its_timeout(conn: SshConnection) -> None:
    data = bytes(range(256)) * 4096

    def feed(stdin: IO[bytes]) -> None:
        for start in range(0, len(data), 65536):
            stdin.write(data[start:start + 65536])

    assert conn.run_bytes(["cat"], feed=feed, check=True).stdout == data
    assert conn.run_bytes(["cat"], feed=b"\0\xff\n").stdout == b"\0\xff\n"
    started = time.monotonic()
    with pytest.raises(SshError, match=r"web1.*`sleep 30` gave no answer within 1 s") as caught:
        conn.run_bytes(["sleep", "30"], timeout=1)
    assert caught.value.kind == "timeout" and time.monotonic() - started < 10
    with pytest.raises(SshError, match=r"^target web1 \(ssh://server-0\): waiting gave no answer within 1 s$"):
        conn.run_bytes(["sleep", "30"], timeout=1, what="waiting")

    def broken(stdin: IO[bytes]) -> None:
        stdin.write(b"part")
        raise ValueError("local failure")

    with pytest.raises(ValueError, match="local failure"):
        conn.run_bytes(["cat"], feed=broken, timeout=10)


@pytest.mark.docker
def test_sync_sends_everything_once_then_only_what_changed(
        conn: SshConnection, server: Server, remote_root: str, tmp_path: Path) -> None:
    root = tree(tmp_path / "project")
    mirror = Mirror(conn, root, remote_root, private=[Path(".env")])

    first = mirror.sync()
    assert (first.sent, first.removed, first.files) == (8, 0, 8)  # 6 files, 2 symlinks
    assert first.bytes == sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()
                              and p.relative_to(root).parts[0] not in (".git", ".surefoot"))
    listed = remote_tree(server, remote_root)
    assert listed == {
        ".env": "f 600 ", "app": "d 755 ", "app/main.py": "f 644 ", "app/static": "d 755 ",
        "app/static/a file.css": "f 644 ", "compose.yaml": "f 644 ", "données é.txt": "f 644 ",
        "empty": "d 755 ", "link-to-app": "l 777 app", "link-to-main": "l 777 app/main.py",
        "run.sh": "f 755 ", ".surefoot": "d 700 ", ".surefoot/files.json": "f 600 "}, \
        ".git and the local .surefoot are never sent; the target's .surefoot holds only the manifest"
    assert cat(server, f"{remote_root}/données é.txt") == "unicode\n"
    assert cat(server, f"{remote_root}/app/static/a file.css") == "body {}\n"
    assert server.ssh("stat", "-c", "%U", f"{remote_root}/app/main.py").stdout.strip() == "root"
    manifest = load_manifest(mirror.fetch(MANIFEST))
    assert manifest.entries[".env"].sha256 == hashlib.sha256(b"SECRET=hunter2\n").hexdigest()

    assert mirror.sync() == type(first)(sent=0, removed=0, bytes=0, files=8)

    main = root / "app" / "main.py"
    main.write_text("print('HI')\n")  # the same size: told apart by its hash
    edited = mirror.sync()
    assert (edited.sent, edited.removed, edited.bytes) == (1, 0, 12)
    assert cat(server, f"{remote_root}/app/main.py") == "print('HI')\n"

    (root / "run.sh").unlink()
    (root / "link-to-app").unlink()
    removed = mirror.sync()
    assert (removed.sent, removed.removed, removed.files) == (0, 2, 6)
    listed = remote_tree(server, remote_root)
    assert "run.sh" not in listed and "link-to-app" not in listed and "app/main.py" in listed

    again = Mirror(conn, root, remote_root, private=[Path(".env")])  # another run: reads the manifest there
    assert again.sync().sent == 0
    for path in root.rglob("*"):  # files settled long ago: not even read again
        if not path.is_symlink():
            os.utime(path, ns=(time.time_ns() - HOUR_NS, path.stat().st_mtime_ns - HOUR_NS))
    assert again.sync().sent == 0
    assert {e.sha256 for e in again._manifest.entries.values() if e.kind == "file"} != {""}  # type: ignore[union-attr]


@pytest.mark.docker
def test_a_tampered_manifest_or_a_folder_replaced_by_a_symlink_never_reaches_outside_the_mirror(
        conn: SshConnection, server: Server, remote_root: str, tmp_path: Path) -> None:
    """Whoever can write the project folder on the server (a root container with ``.`` mounted)
    cannot make the next sync remove or write outside it."""
    root = tree(tmp_path / "project")
    outside = f"/var/lib/surefoot/outside-{uuid.uuid4().hex[:8]}"
    server.ssh("sh", "-c", 'mkdir -p "$1" && echo precious > "$1/victim.txt"', "sh", outside)
    try:
        Mirror(conn, root, remote_root, private=[Path(".env")]).sync()
        # 1. the manifest there names a path outside the mirror
        manifest = json.loads(cat(server, f"{remote_root}/{MANIFEST}"))
        manifest["entries"][f"../{outside.rsplit('/', 1)[1]}/victim.txt"] = {"kind": "file", "mode": 420}
        server.ssh("sh", "-c", 'printf %s "$2" > "$1"', "sh", f"{remote_root}/{MANIFEST}", json.dumps(manifest))
        report = Mirror(conn, root, remote_root, private=[Path(".env")]).sync()
        assert cat(server, f"{outside}/victim.txt") == "precious\n"
        assert report.sent == report.files == 8  # damaged: everything sent again, nothing removed
        # 2. a folder of the mirror replaced by a symlink to a folder outside it
        server.ssh("sh", "-c", 'cp -a "$1/app/." "$2/" && rm -rf "$1/app" && ln -s "$2" "$1/app"', "sh",
                   remote_root, outside)
        (root / "app" / "main.py").write_text("print('changed')\n")
        (root / "app" / "static" / "a file.css").unlink()
        mirror = Mirror(conn, root, remote_root, private=[Path(".env")])
        mirror.sync()
        assert cat(server, f"{outside}/main.py") == "print('hi')\n"  # not written through the link
        assert "static/a file.css" in remote_tree(server, outside)  # nor removed through it
        listed = remote_tree(server, remote_root)
        assert listed["app"] == "d 755 " and listed["app/main.py"] == "f 644 "  # a folder again, sent whole
        assert cat(server, f"{remote_root}/app/main.py") == "print('changed')\n"
        assert "app/static/a file.css" not in listed
        # 3. a single file put under a folder that is a symlink: refused, nothing written
        server.ssh("sh", "-c", 'rm -rf "$1/.surefoot/releases"; ln -s "$2" "$1/.surefoot/releases"', "sh",
                   remote_root, outside)
        (tmp_path / "model.json").write_text("{}")
        with pytest.raises(SyncError, match="releases is a symlink: nothing is written through it"):
            mirror.put(tmp_path / "model.json", ".surefoot/releases/3/model.json")
        assert "3" not in remote_tree(server, outside)
    finally:
        server.ssh("rm", "-rf", "--", outside, check=False)


@pytest.mark.docker
def test_sync_removes_only_what_it_sent(
        conn: SshConnection, server: Server, remote_root: str, tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data" / "seed.sql").write_text("insert\n")
    (root / "gone").mkdir()
    (root / "gone" / "x").write_text("x\n")
    mirror = Mirror(conn, root, remote_root)
    mirror.sync()
    server.ssh("sh", "-c", 'echo db > "$1/data/made-there"; echo mine > "$1/notes"', "sh", remote_root)
    (root / "data" / "seed.sql").unlink()
    (root / "data").rmdir()
    (root / "gone" / "x").unlink()
    (root / "gone").rmdir()
    report = mirror.sync()
    assert report.removed == 2
    listed = remote_tree(server, remote_root)
    assert "data/made-there" in listed and "notes" in listed, "files surefoot did not send stay"
    assert "data/seed.sql" not in listed and "gone" not in listed, "an emptied folder it sent goes"


@pytest.mark.docker
def test_an_entry_that_changes_kind_is_replaced(
        conn: SshConnection, server: Server, remote_root: str, tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "config").write_text("a file\n")
    (root / "assets").mkdir()
    (root / "assets" / "logo").write_text("logo\n")
    (root / "current").symlink_to("assets")
    mirror = Mirror(conn, root, remote_root)
    mirror.sync()
    (root / "config").unlink()
    (root / "config").mkdir()
    (root / "config" / "app.ini").write_text("[app]\n")
    (root / "current").unlink()
    (root / "current").write_text("now a file\n")
    (root / "assets" / "logo").unlink()
    (root / "assets").rmdir()
    (root / "assets").symlink_to("config")
    mirror.sync()
    listed = remote_tree(server, remote_root)
    assert listed["config"] == "d 755 " and listed["config/app.ini"] == "f 644 "
    assert listed["current"] == "f 644 " and listed["assets"] == "l 777 config"
    assert cat(server, f"{remote_root}/assets/app.ini") == "[app]\n"


@pytest.mark.docker
def test_a_sync_that_fails_on_the_target_keeps_the_last_manifest_and_is_sent_again(
        conn: SshConnection, server: Server, remote_root: str, tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "a.txt").write_text("a1\n")
    mirror = Mirror(conn, root, remote_root)
    mirror.sync()
    before = mirror.fetch(MANIFEST)
    (root / "a.txt").write_text("a2\n")
    (root / "report").write_text("a file here\n")
    server.ssh("sh", "-c", 'mkdir -p "$1/report" && echo theirs > "$1/report/keep"', "sh", remote_root)
    with pytest.raises(SyncError) as caught:
        mirror.sync()
    message = str(caught.value)
    assert "web1" in message and "report" in message and "\n" not in message
    assert mirror.fetch(MANIFEST) == before, "the manifest is renamed into place only after tar succeeded"
    assert server.ssh("ls", "-a", f"{remote_root}/.surefoot").stdout.split() == [".", "..", "files.json"]
    server.ssh("rm", "-rf", "--", f"{remote_root}/report")
    again = mirror.sync()
    assert again.sent == 2, "what the failed sync sent is sent again"
    assert cat(server, f"{remote_root}/a.txt") == "a2\n" and cat(server, f"{remote_root}/report") == "a file here\n"


STALL = "/tmp/sf-stall-tar"
TAR_WRAPPER = f"""#!/bin/sh
if [ -e {STALL} ]; then echo $$ > {STALL}.pid; exec sleep 3600; fi
exec /usr/bin/tar "$@"
"""


@pytest.mark.docker
def test_a_connection_dropped_mid_transfer_is_one_line_and_the_next_sync_sends_again(
        conn: SshConnection, server: Server, remote_root: str, tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(4 * 1024 * 1024))  # more than the pipes hold
    (root / "small.txt").write_text("small\n")
    # The target's tar stalls (a wrapper earlier in PATH), so the stream is still being
    # written when the server drops the connection.
    server.exec("sh", "-c", f'cat > /usr/local/bin/tar <<"EOF"\n{TAR_WRAPPER}EOF\n'
                f"chmod 755 /usr/local/bin/tar && touch {STALL}")
    dropping = SshConnection(parse_target(server.alias, ssh_config=server.ssh_config, name="web1"))
    dropping.open()
    failure: list[BaseException] = []

    def sync() -> None:
        try:
            Mirror(dropping, root, remote_root).sync()
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=sync)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while server.exec("test", "-e", f"{STALL}.pid", check=False).returncode != 0:
            assert time.monotonic() < deadline, "the stalled tar never started"
            time.sleep(0.1)
        server.exec("sh", "-c", 'for f in /proc/[0-9]*/cmdline; do '
                    'if tr "\\0" " " <"$f" | grep -q "^sshd: root"; then p=${f#/proc/}; kill "${p%/cmdline}"; fi; '
                    f'done; kill "$(cat {STALL}.pid)"')
        worker.join(timeout=60)
    finally:
        server.exec("rm", "-f", "/usr/local/bin/tar", STALL, f"{STALL}.pid")
        dropping.close()
        conn.ensure_open()  # the module's connection was dropped too
    assert not worker.is_alive()
    assert failure and isinstance(failure[0], SshError), failure
    message = str(failure[0])
    assert failure[0].kind == "dropped" and message.startswith("target web1 (ssh://server-0): the SSH connection")
    assert "sending files to" in message and "\n" not in message
    report = Mirror(conn, root, remote_root).sync()
    assert report.sent == 2 and report.bytes == 4 * 1024 * 1024 + 6
    assert server.ssh("sha256sum", f"{remote_root}/big.bin").stdout.split()[0] == \
        hashlib.sha256((root / "big.bin").read_bytes()).hexdigest()


@pytest.mark.docker
def test_a_private_file_already_there_world_readable_ends_0600(
        conn: SshConnection, server: Server, remote_root: str, tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "prod.env").write_text("TOKEN=1\n")
    Mirror(conn, root, remote_root).sync()
    assert remote_tree(server, remote_root)["prod.env"] == "f 644 "
    (root / "prod.env").write_text("TOKEN=2\n")
    Mirror(conn, root, remote_root, private=[root / "prod.env"]).sync()
    assert remote_tree(server, remote_root)["prod.env"] == "f 600 "
    assert cat(server, f"{remote_root}/prod.env") == "TOKEN=2\n"


UNREADABLE_SCRIPT = """
import sys
import threading
from pathlib import Path
from surefoot.base.errors import SurefootError
from surefoot.hosts.ssh.mirror import Mirror
from surefoot.hosts.ssh.connection import SshConnection
from surefoot.config.address import parse_target
alias, config, local, remote = sys.argv[1:]
with SshConnection(parse_target(alias, ssh_config=config, name="web1")) as conn:
    try:
        Mirror(conn, Path(local), remote).sync()
    except SurefootError as exc:
        print(exc)
        sys.exit(1)
"""


@pytest.mark.docker
def test_a_file_not_readable_here_is_a_clear_error_and_nothing_is_sent(
        server: Server, remote_root: str, tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "ok.txt").write_text("ok\n")
    (root / "locked.key").write_text("key\n")
    (root / "locked.key").chmod(0)
    # Tests run as root, who reads anything: without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
    # a mode-0 file is unreadable to root too (the ssh key, root's own 0600, still is).
    result = subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c", UNREADABLE_SCRIPT,
         server.alias, str(server.ssh_config), str(root), remote_root],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 1, result.stderr
    message = result.stdout.strip()
    assert message.count("\n") == 0 and "Traceback" not in result.stderr
    assert "web1" in message and str(root / "locked.key") in message and "Permission denied" in message
    assert server.ssh("test", "-e", remote_root, check=False).returncode == 1, "nothing was sent"


@pytest.mark.docker
def test_a_remote_failure_names_the_target_and_the_folder(
        conn: SshConnection, server: Server, remote_root: str, tmp_path: Path) -> None:
    server.ssh("sh", "-c", 'mkdir -p "$(dirname "$1")" && echo x > "$1"', "sh", remote_root)  # a file, not a folder
    (tmp_path / "a").write_text("a\n")
    with pytest.raises(SyncError) as caught:
        Mirror(conn, tmp_path, remote_root).sync()
    message = str(caught.value)
    assert "web1" in message and remote_root in message and "\n" not in message


@pytest.mark.docker
def test_put_writes_when_the_content_differs_and_fetch_reads_back(
        conn: SshConnection, server: Server, remote_root: str, tmp_path: Path) -> None:
    generated = tmp_path / ".surefoot" / "compose.resolved.yaml"
    generated.parent.mkdir()
    generated.write_text(f"volumes: ['{tmp_path}/data:/data']\n")

    def to_remote(text: str) -> str:
        return text.replace(str(tmp_path), remote_root)

    mirror = Mirror(conn, tmp_path, remote_root)
    assert mirror.fetch(".surefoot/compose.yaml") is None
    assert mirror.put(generated, ".surefoot/compose.yaml", text_map=to_remote) is True
    path = f"{remote_root}/.surefoot/compose.yaml"
    assert cat(server, path) == f"volumes: ['{remote_root}/data:/data']\n"
    assert server.ssh("stat", "-c", "%a", path).stdout.strip() == "600"
    assert mirror.put(generated, ".surefoot/compose.yaml", text_map=to_remote) is False
    other = Mirror(conn, tmp_path, remote_root)  # another run: the target's copy is compared
    assert other.put(generated, ".surefoot/compose.yaml", text_map=to_remote) is False
    assert other.put(generated, ".surefoot/compose.yaml", text_map=to_remote, mode=0o644) is True
    assert server.ssh("stat", "-c", "%a", path).stdout.strip() == "644"
    generated.write_text("changed\n")
    assert other.put(generated, path) is True
    assert other.fetch(path) == b"changed\n"
    binary = tmp_path / "blob"
    binary.write_bytes(bytes(range(256)))
    other.put(binary, "/tmp/sf-blob")
    assert other.fetch("/tmp/sf-blob") == bytes(range(256))
    server.ssh("rm", "-f", "/tmp/sf-blob")
    with pytest.raises(SyncError, match=r"web1.*not UTF-8"):
        other.put(binary, "x", text_map=to_remote)
    with pytest.raises(SyncError, match=rf"web1.*cannot read {re.escape(remote_root)}/\.surefoot"):
        other.fetch(".surefoot")  # a folder
    assert not server.ssh("sh", "-c", 'ls -a "$1"', "sh", f"{remote_root}/.surefoot").stdout.count("new")


@pytest.mark.docker
def test_a_200_file_20_mb_tree_syncs_and_resyncs(
        conn: SshConnection, server: Server, remote_root: str, tmp_path: Path) -> None:
    root = tmp_path / "big"
    for index in range(200):
        path = root / f"dir{index % 10}" / f"file-{index}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(100 * 1024))
    mirror = Mirror(conn, root, remote_root)
    started = time.monotonic()
    first = mirror.sync()
    first_seconds = time.monotonic() - started
    assert (first.sent, first.bytes) == (200, 200 * 100 * 1024)
    started = time.monotonic()
    assert Mirror(conn, root, remote_root).sync().sent == 0  # a new run: fetches the manifest, hashes all
    rerun_seconds = time.monotonic() - started
    started = time.monotonic()
    assert mirror.sync().sent == 0
    again_seconds = time.monotonic() - started
    sizes = server.ssh("du", "-sb", "--exclude=.surefoot", remote_root).stdout.split()[0]
    assert int(sizes) >= 200 * 100 * 1024
    print(f"\n200 files, 20 MB: first sync {first_seconds:.2f} s, no-change sync in a new run "
          f"{rerun_seconds:.2f} s, no-change sync in the same run {again_seconds:.3f} s")
    assert json.loads(mirror.fetch(MANIFEST) or b"{}")["version"] == 1
