"""A damaged state store: a clear message and a non-zero exit, never a traceback, the stack untouched."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Project, migrate_command

pytestmark = [pytest.mark.docker, pytest.mark.reliability]


def corrupt_truncated(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])


def corrupt_empty(db: Path) -> None:
    db.write_bytes(b"")


def corrupt_garbage(db: Path) -> None:
    db.write_bytes(b"\x00\xffnot a database at all\n" * 500)


def corrupt_header(db: Path) -> None:
    data = bytearray(db.read_bytes())
    data[16:24] = b"\xff" * 8  # page size and format bytes
    db.write_bytes(bytes(data))


def newer_schema(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()


DAMAGE = {
    "truncated": corrupt_truncated,
    "empty": corrupt_empty,
    "garbage": corrupt_garbage,
    "bad-header": corrupt_header,
    "newer-schema": newer_schema,
}


@pytest.fixture
def deployed(stack: Project) -> Project:
    stack.configure(migrate_command("true"))
    result = stack.run("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    return stack


def web_container(project: Project) -> str:
    return project.docker("ps", "-q", "--filter", f"label=com.docker.compose.project={project.name}",
                          "--filter", "label=com.docker.compose.service=web").strip()


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_store(deployed: Project, damage: str) -> None:
    db = deployed.path / ".surefoot" / "state.db"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    before = web_container(deployed)
    DAMAGE[damage](db)
    for command in (["deploy"], ["status"], ["status", "--json"], ["history"]):
        result = deployed.run(*command)
        output = result.stdout + result.stderr
        assert "Traceback" not in output, output
        if damage == "empty" and result.returncode == 0:
            continue  # an empty file is a valid, empty store: a new history starts
        assert result.returncode != 0, f"{command}: {output}"
        assert str(db) in result.stderr, output
    if damage != "empty":
        assert web_container(deployed) == before  # the running stack was not touched


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_filesystem(deployed: Project, small_disk: Path) -> None:
    deployed.env["SUREFOOT_STATE_DIR"] = str(small_disk)
    (small_disk / "filler").write_bytes(b"\0" * 1000 * 1024)
    with pytest.raises(OSError):
        (small_disk / "more").write_bytes(b"\0" * 64 * 1024)
    before = web_container(deployed)
    result = deployed.run("deploy")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output, output
    assert str(small_disk) in result.stderr
    assert web_container(deployed) == before
    # Space freed, the same command works.
    (small_disk / "filler").unlink()
    (small_disk / "more").unlink(missing_ok=True)
    again = deployed.run("deploy")
    assert again.returncode == 0, again.stdout + again.stderr


def test_read_only_state_folder(deployed: Project, small_disk: Path) -> None:
    deployed.env["SUREFOOT_STATE_DIR"] = str(small_disk)
    assert deployed.run("deploy").returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    for command in (["deploy"], ["status"]):
        result = deployed.run(*command)
        output = result.stdout + result.stderr
        assert "Traceback" not in output, output
        if command == ["status"] and result.returncode == 0:
            assert "completed" in result.stdout  # reading a read-only store is fine
            continue
        assert result.returncode != 0
        assert str(small_disk) in result.stderr
