"""A project folder mirrored to a target over SSH, only what changed sent.

The manifest of what was sent (path -> kind, mode, size, mtime_ns, ctime_ns, sha256, link) is kept on
the target (``.surefoot/files.json``) and in memory. A file with the same size and times is not read
again unless it changed within 2 s before the scan that hashed it (git's "racily clean"); a new one is
hashed on the way. Gone paths are removed there (``rm -f``; folders ``rmdir`` when empty), then ONE tar
stream goes to GNU ``tar -x`` under ``umask 077`` (never more open than the final mode; private files
0600), the manifest its last member, renamed into place once tar succeeded. Edits made by hand on the
target are not noticed; sockets, fifos and devices are not sent.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import stat
import tarfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import IO, Any, NamedTuple

from surefoot.base.errors import ConfigError, SurefootError
from surefoot.hosts.ssh.connection import SshConnection

MANIFEST = ".surefoot/files.json"
_RACY_NS = 2_000_000_000  # a file changed this close before the scan that hashed it is hashed again
_MIN_RATE = 256 * 1024  # the slowest transfer allowed, in bytes per second (its timeout)
_CHUNK = 256 * 1024
# Before anything is written or removed in the mirror: each folder named after the root ($1) that
# is a symlink there (the mirror holds folders, not links to them: someone replaced one) is
# unlinked, never followed, and named on stdout ("unlinked PATH"); the caller then sends every
# file again, since nothing under it can be trusted.
_FOLDERS_REAL = ('for d do if [ -L "$d" ]; then rm -f -- "$d" && echo "unlinked $d"; fi; done; ')
_EXTRACT = ('set -e; umask 022; mkdir -p -m 0755 -- "$1"; cd -- "$1"; shift; ' + _FOLDERS_REAL + 'umask 077; '
            'tar -x -p --no-same-owner -f - || { s=$?; rm -f .surefoot/files.json.new; exit $s; }; '
            'mv -f -- .surefoot/files.json.new .surefoot/files.json')
_REMOVE = ('cd -- "$1" || exit 0; shift; ' + _FOLDERS_REAL +
           'xargs -0 -r sh -c \'for p do if [ -d "$p" ] && [ ! -L "$p" ]; '
           'then rmdir --ignore-fail-on-non-empty -- "$p"; else rm -f -- "$p"; fi; done\' sh')
_FETCH = '[ -e "$1" ] || exit 44; exec cat -- "$1"'  # 44: absent
# $1 the root, $2 the file under it, $3 its mode: written atomically unless a folder on its way
# is a symlink (exit 45: nothing written).
_PUT = ('set -e; umask 022; mkdir -p -- "$1"; cd -- "$1"; d=$(dirname -- "$2"); p=$d; while [ "$p" != . ]; do '
        '[ -L "$p" ] && { echo "$p is a symlink: nothing is written through it" >&2; exit 45; }; p=$(dirname -- "$p"); '
        'done; mkdir -p -- "$d"; umask 077; t="$2.surefoot-new"; cat > "$t"; '
        'if cmp -s -- "$t" "$2" && [ "$(stat -c %a -- "$2")" = "$3" ]; then rm -f -- "$t"; echo same; '
        'else chmod -- "$3" "$t"; mv -f -T -- "$t" "$2"; echo sent; fi')


class SyncError(SurefootError):
    """A file cannot be read here or written on the target (one line naming both)."""


@dataclass(frozen=True)
class SyncReport:
    sent: int  # files and symlinks sent (folders are not counted)
    removed: int  # files and symlinks removed on the target
    bytes: int  # the sent files' contents
    files: int  # files and symlinks in the mirror


@dataclass(frozen=True)
class Entry:
    kind: str  # "file", "link" or "dir"
    mode: int = 0
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    sha256: str = ""  # a file's content; "" when not hashed yet (then it is sent)
    link: str = ""  # a symlink's target

    def same(self, other: Entry) -> bool:
        return (self.kind, self.mode, self.link) == (other.kind, other.mode, other.link) and (
            self.kind != "file" or (self.sha256 != "" and self.sha256 == other.sha256))


class Manifest(NamedTuple):
    entries: Mapping[str, Entry]
    scanned_ns: int = 0  # when the scan that made it started (this machine's clock)


def diff(old: Mapping[str, Entry], new: Mapping[str, Entry]) -> tuple[list[str], list[str]]:
    """What to send (new or changed; parents first), to remove (gone or of another kind; children first)."""
    send = sorted(path for path, entry in new.items() if path not in old or not entry.same(old[path]))
    remove = sorted((path for path, entry in old.items() if path not in new or new[path].kind != entry.kind),
                    reverse=True)
    return send, remove


def dump_manifest(manifest: Manifest) -> bytes:
    defaults = {f.name: f.default for f in fields(Entry)}
    entries = {path: {k: v for k, v in vars(entry).items() if k == "kind" or v != defaults[k]}
               for path, entry in sorted(manifest.entries.items())}
    return json.dumps({"version": 1, "scanned_ns": manifest.scanned_ns, "entries": entries}).encode()


def safe_path(path: str) -> bool:
    """Whether ``path`` (a manifest's entry) stays inside the mirror: relative, and no ``..``,
    ``.`` or empty part (the manifest lives on the server: anyone who can write there could
    name ``../victim`` for the next sync to remove)."""
    return bool(path) and not path.startswith("/") and all(part not in ("", ".", "..") for part in path.split("/"))


def load_manifest(data: bytes | None) -> Manifest:
    """An empty manifest when there is none, it cannot be read, or it names a path outside the
    mirror (it is damaged then): all is sent, nothing removed."""
    try:
        raw: Any = json.loads(data or b"null")
        if raw.get("version") == 1:
            entries = {str(k): Entry(**entry) for k, entry in raw["entries"].items()}
            if all(safe_path(path) for path in entries):
                return Manifest(entries, int(raw["scanned_ns"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        pass
    return Manifest({})


def folders_of(paths: Collection[str]) -> list[str]:
    """The folders above ``paths``, parents first (each checked before a path below it is touched)."""
    found = {"/".join(parts[:end]) for parts in (p.split("/") for p in paths) for end in range(1, len(parts))}
    return sorted(found, key=lambda folder: (folder.count("/"), folder))


def excluded(relative: str, exclude: Collection[str]) -> bool:
    return any(relative == name or relative.startswith(name + "/") for name in exclude)


def scan(root: Path, exclude: Collection[str], private: Collection[str], previous: Manifest) -> dict[str, Entry]:
    """The tree under ``root``; a file is hashed when its entry cannot be trusted nor its size differs."""
    entries: dict[str, Entry] = {}
    trusted_before = previous.scanned_ns - _RACY_NS

    def walk(folder: str, prefix: str) -> None:
        try:
            with os.scandir(folder) as listing:
                items = sorted(listing, key=lambda item: item.name)
        except OSError as exc:
            raise SyncError(f"cannot read the folder {folder}: {exc.strerror}") from None
        for item in items:
            path = prefix + item.name
            if excluded(path, exclude):
                continue
            try:
                info = item.stat(follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    entries[path] = Entry("link", link=os.readlink(item.path))
            except FileNotFoundError:  # removed meanwhile
                continue
            if stat.S_ISDIR(info.st_mode):
                entries[path] = Entry("dir", stat.S_IMODE(info.st_mode))
                walk(item.path, path + "/")
            elif stat.S_ISREG(info.st_mode):
                mode = 0o600 if path in private else stat.S_IMODE(info.st_mode)
                entry = Entry("file", mode, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
                old = previous.entries.get(path)
                if old is None or old.kind != "file" or old.size != info.st_size:
                    _Reader(item.path, 0).file.close()  # an unreadable file fails before anything is sent
                elif (old.mtime_ns, old.ctime_ns) == (entry.mtime_ns, entry.ctime_ns) and old.mtime_ns < trusted_before:
                    entry = replace(entry, sha256=old.sha256)
                else:
                    entry = replace(entry, sha256=_Reader(item.path, info.st_size).hash())
                entries[path] = entry

    walk(str(root), "")
    return entries


class _Reader:
    """A local file read to its recorded size, hashed; its errors are SyncErrors, never OSErrors."""

    def __init__(self, path: str, size: int):
        self.path, self.left, self.digest = path, size, hashlib.sha256()
        try:
            self.file = open(path, "rb")  # noqa: SIM115 - closed by the callers
        except OSError as exc:
            raise SyncError(f"cannot read {path}: {exc.strerror}") from None

    def read(self, size: int = -1) -> bytes:
        want = self.left if size < 0 else min(size, self.left)
        try:
            chunk = self.file.read(want)
        except OSError as exc:
            raise SyncError(f"cannot read {self.path}: {exc.strerror}") from None
        if len(chunk) < want:
            raise SyncError(f"{self.path} changed while it was being read: sync again")
        self.left -= len(chunk)
        self.digest.update(chunk)
        return chunk

    def hash(self) -> str:
        with self.file:
            while self.read(_CHUNK):
                pass
        return self.digest.hexdigest()


class Mirror:
    """``local_root`` mirrored to ``remote_root`` through ``conn`` (open). ``exclude``: top-level names or relative
    paths never sent (and ``.surefoot``, where the manifest is); ``private``: local files sent 0600."""

    def __init__(self, conn: SshConnection, local_root: Path, remote_root: str, *,
                 exclude: Sequence[str] = (".git", ".surefoot"), private: Collection[Path] = ()):
        self.conn, self.label = conn, conn.target.label
        self.remote_root = posixpath.normpath(remote_root) if remote_root else ""
        if not self.remote_root.startswith("/") or self.remote_root.strip("/") == "":
            raise ConfigError(f"the folder on {self.label} must be an absolute path other than /, not {remote_root!r}")
        self.local_root = Path(local_root).absolute()
        self.exclude = {name.strip("/").removeprefix("./") for name in exclude} | {".surefoot"}
        self.private = {self._relative(Path(path)) for path in private}
        self._manifest: Manifest | None = None
        self._puts: dict[str, tuple[str, int]] = {}

    def keep_private(self, paths: Collection[Path]) -> None:
        """These files too are sent 0600 (they hold secrets); those outside the project are not sent."""
        for path in paths:
            full = Path(os.path.normpath(self.local_root / path))
            if full.is_relative_to(self.local_root) and full != self.local_root:
                self.private.add(full.relative_to(self.local_root).as_posix())

    def _relative(self, path: Path) -> str:
        full = Path(os.path.normpath(self.local_root / path))
        if not full.is_relative_to(self.local_root) or full == self.local_root:
            raise ConfigError(f"{path} is not inside {self.local_root}: it cannot be mirrored to {self.label}")
        return full.relative_to(self.local_root).as_posix()

    def sync(self) -> SyncReport:
        if self._manifest is None:
            self._manifest = load_manifest(self.fetch(MANIFEST))
        old, started = self._manifest, time.time_ns()
        try:
            entries = scan(self.local_root, self.exclude, self.private, old)
        except SyncError as exc:
            raise SyncError(f"{self.label}: {exc}") from None
        send, remove = diff(old.entries, entries)
        unlinked = self._remove(remove) if remove else False
        new = Manifest(entries, started)
        if send or remove or entries != old.entries:
            new, sent_unlinked = self._send(send, new)
            unlinked = unlinked or sent_unlinked
        if unlinked:  # a folder there had been replaced by a symlink: what was under it is unknown
            send = diff({}, entries)[0]
            new, _ = self._send(send, Manifest(entries, started))
        self._manifest = new  # unchanged: the scan just checked the racy files, so its time stands
        sent = [new.entries[path] for path in send if new.entries[path].kind != "dir"]
        return SyncReport(sent=len(sent), removed=sum(1 for path in remove if old.entries[path].kind != "dir"),
                          bytes=sum(entry.size for entry in sent),
                          files=sum(1 for entry in new.entries.values() if entry.kind != "dir"))

    def _remove(self, paths: Sequence[str]) -> bool:
        """Remove ``paths`` there; True when a folder on their way was a symlink (unlinked)."""
        listing = b"".join(os.fsencode("./" + path) + b"\0" for path in paths)
        result = self.conn.run_bytes(["sh", "-c", _REMOVE, "sh", self.remote_root, *folders_of(paths)], feed=listing,
                                     timeout=60 + len(paths) / 500, what=f"removing files in {self.remote_root}")
        if result.returncode != 0:
            raise SyncError(f"{self.label}: removing files in {self.remote_root} failed: {_first(result.stderr)}")
        return b"unlinked " in result.stdout

    def _send(self, paths: Sequence[str], manifest: Manifest) -> tuple[Manifest, bool]:
        """Send ``paths`` there with the manifest; and whether a folder on their way was a
        symlink (unlinked, the files under it to be sent again)."""
        entries = dict(manifest.entries)

        def feed(stdin: IO[bytes]) -> None:
            with tarfile.open(fileobj=stdin, mode="w|", format=tarfile.PAX_FORMAT, bufsize=_CHUNK) as tar:
                for path in paths:
                    entries[path] = self._add(tar, path, entries[path])
                tar.addfile(_member(".surefoot", tarfile.DIRTYPE, 0o700))
                data = dump_manifest(Manifest(entries, manifest.scanned_ns))
                tar.addfile(_member(MANIFEST + ".new", tarfile.REGTYPE, 0o600, len(data)), io.BytesIO(data))

        result = self.conn.run_bytes(["sh", "-c", _EXTRACT, "sh", self.remote_root, *folders_of(paths)], feed=feed,
                                     timeout=120 + sum(entries[path].size for path in paths) / _MIN_RATE,
                                     what=f"sending files to {self.remote_root}")
        if result.returncode != 0:
            raise SyncError(f"{self.label}: sending files to {self.remote_root} failed: {_first(result.stderr)}")
        return Manifest(entries, manifest.scanned_ns), b"unlinked " in result.stdout

    def _add(self, tar: tarfile.TarFile, path: str, entry: Entry) -> Entry:
        if entry.kind != "file":
            kind, mode = (tarfile.DIRTYPE, entry.mode) if entry.kind == "dir" else (tarfile.SYMTYPE, 0o777)
            tar.addfile(_member(path, kind, mode, link=entry.link))
            return entry
        try:
            reader = _Reader(str(self.local_root / path), entry.size)
            with reader.file:
                tar.addfile(_member(path, tarfile.REGTYPE, entry.mode, entry.size, entry.mtime_ns), reader)
        except SyncError as exc:
            raise SyncError(f"{self.label}: {exc}") from None
        return replace(entry, sha256=reader.digest.hexdigest())

    def put(self, local: Path, remote: str, *, text_map: Callable[[str], str] | None = None,
            mode: int = 0o600) -> bool:
        """Writes ``local`` (its text rewritten by ``text_map``) at ``remote`` (absolute, or under
        ``remote_root``), atomically, never more open than ``mode``, when the bytes or mode there
        differ (not sent again when put alike in this process). Returns whether it was written."""
        try:
            data = Path(local).read_bytes()
            if text_map is not None:
                data = text_map(data.decode("utf-8")).encode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text, so it cannot be rewritten"
            raise SyncError(f"{self.label}: cannot read {local}: {why}") from None
        path, key = self._remote(remote), (hashlib.sha256(data).hexdigest(), mode)
        if self._puts.get(path) == key:
            return False
        inside = path.startswith(self.remote_root + "/")
        root, relative = (self.remote_root, path[len(self.remote_root) + 1:]) if inside else posixpath.split(path)
        result = self.conn.run_bytes(["sh", "-c", _PUT, "sh", root, relative, format(mode, "o")], feed=data,
                                     timeout=60 + len(data) / _MIN_RATE, what=f"writing {path}")
        if result.returncode != 0:
            raise SyncError(f"{self.label}: writing {path} failed: {_first(result.stderr)}")
        self._puts[path] = key
        return result.stdout.strip() == b"sent"

    def fetch(self, remote: str) -> bytes | None:
        """A file's bytes from the target (``remote`` as for put); None when it is absent."""
        path = self._remote(remote)
        result = self.conn.run_bytes(["sh", "-c", _FETCH, "sh", path], timeout=300, what=f"reading {path}")
        if result.returncode not in (0, 44):
            raise SyncError(f"{self.label}: cannot read {path}: {_first(result.stderr)}")
        return result.stdout if result.returncode == 0 else None

    def _remote(self, remote: str) -> str:
        return posixpath.normpath(posixpath.join(self.remote_root, remote))


def _member(name: str, kind: bytes, mode: int, size: int = 0, mtime_ns: int = 0, link: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.mode, member.size, member.linkname = kind, mode, size, link
    member.mtime = mtime_ns // 1_000_000_000 if mtime_ns else int(time.time())
    return member


def _first(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[0] if lines else "no message"
