"""The deployment lock on a remote target: an flock held there by a process that lives as
long as surefoot's SSH session. One remote ``sh`` takes ``FOLDER/.surefoot/deploy.lock``
(util-linux ``flock -n``), writes its holder to ``deploy.lock.json`` (pid, host = the
control machine's name, since; as lock.py), says ``locked``, then stays in the foreground
reading the heartbeat lines (``.``) surefoot writes to its stdin every ``heartbeat`` s.
It ends, and the kernel drops the lock, at EOF (a release; surefoot or its ssh client
killed: the pipe closes, the master sends EOF), when sshd's session ends (a dropped
connection), or after ``grace`` s without a heartbeat (the network gone: sshd would not
notice an idle session for hours). ``grace`` exceeds the client's own dead-connection
timeout (ServerAlive, 45 s), so surefoot gives up first.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading

from surefoot.base.errors import CommandTimeout, LockHeld
from surefoot.hosts.ssh.args import SshError, classify
from surefoot.hosts.ssh.connection import SshConnection
from surefoot.proc.held import Held
from surefoot.store import now_iso
from surefoot.store.lock import LOCK_NAME, Holder

LOCK_DIR = ".surefoot"

# $1 the project folder, $2 the holder's JSON, $3 the grace in seconds. A status probe holds
# a shared lock for an instant: retry for half a second before calling the lock busy.
_HOLD = """f="$1/.surefoot/deploy.lock"
for c in flock timeout head; do command -v "$c" >/dev/null || { echo "$c is not installed"; exit 3; }; done
umask 077; mkdir -p "${f%/*}" || exit 3
exec 9>>"$f"
i=0
until flock -n 9; do
  i=$((i + 1)); [ "$i" -lt 5 ] || break; sleep 0.1
done
if [ "$i" -ge 5 ]; then
  j=0; while [ ! -s "$f.json" ] && [ "$j" -lt 10 ]; do sleep 0.1; j=$((j + 1)); done
  echo busy; cat "$f.json" 2>/dev/null; echo; exit 0
fi
printf '%s\\n' "$2" >"$f.json.tmp" && mv -f "$f.json.tmp" "$f.json" || exit 3
echo locked
while [ "$(timeout "$3" head -n 1)" = . ]; do :; done
rm -f "$f.json"
"""
# $1 the project folder. A shared lock refused (flock's 1) means an exclusive holder.
_PROBE = """f="$1/.surefoot/deploy.lock"
[ -e "$f" ] || { echo free; exit 0; }
command -v flock >/dev/null || { echo "flock is not installed"; exit 3; }
flock -n -s "$f" true; rc=$?
[ "$rc" -eq 0 ] && { echo free; exit 0; }
[ "$rc" -eq 1 ] || { echo "cannot open $f"; exit 3; }
j=0; while [ ! -s "$f.json" ] && [ "$j" -lt 10 ]; do sleep 0.1; j=$((j + 1)); done
echo held; cat "$f.json" 2>/dev/null; echo
"""


def holder_json(holder: Holder) -> str:
    return json.dumps({"pid": holder.pid, "host": holder.host, "since": holder.since})


def parse_holder(text: str) -> Holder:
    """The holder info file's text; fields that are missing or of the wrong type become None."""
    with contextlib.suppress(ValueError):
        data = json.loads(text)
        if isinstance(data, dict):
            pid, host, since = data.get("pid"), data.get("host"), data.get("since")
            return Holder(pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None,
                          host if isinstance(host, str) and host else None,
                          since if isinstance(since, str) and since else None)
    return Holder(None, None, None)


class RemoteLock:
    """``with RemoteLock(conn, "/var/lib/surefoot/myapp", label="web1"): deploy()``"""

    def __init__(self, conn: SshConnection, folder: str, *, label: str, host: str | None = None,
                 pid: int | None = None, heartbeat: float = 10, grace: int = 60, timeout: float = 60):
        self.conn, self.folder, self.label, self.host, self.pid = conn, folder, label, host, pid
        self.heartbeat, self.grace, self.timeout = heartbeat, grace, timeout
        self.path = f"{folder.rstrip('/')}/{LOCK_DIR}/{LOCK_NAME}"
        self._held: Held | None = None
        self._stop = threading.Event()

    @property
    def held(self) -> bool:
        """Whether the remote holder still runs (False after a release or a lost connection)."""
        return self._held is not None and self._held.running()

    def acquire(self) -> None:
        """Raises LockHeld naming the holder, or SshError when the target cannot be reached."""
        if self._held is not None:
            return
        me = Holder(self.pid or os.getpid(), self.host or socket.gethostname(), now_iso())
        held = self.conn.hold(["sh", "-c", _HOLD, "sh", self.folder, holder_json(me), str(self.grace)])
        try:
            answer = held.readline(self.timeout)
            info = held.readline(5) if answer == "busy" else None
        except CommandTimeout:
            held.close(1)
            raise SshError(f"target {self.label}: no answer within {self.timeout:g} s while taking the "
                           f"deployment lock {self.path}", "timeout") from None
        if answer == "locked":
            self._held, self._stop = held, threading.Event()
            threading.Thread(target=self._beat, args=(held, self._stop), daemon=True, name=f"lock-{self.label}").start()
            return
        held.close()
        if answer == "busy":
            holder = parse_holder(info or "")
            raise LockHeld(f"target {self.label} is locked by another deployment: {holder.describe()}",
                           holder.pid, holder.host, holder.since)
        raise classify(self.conn.target, held.stderr) or SshError(
            f"target {self.label}: cannot take the deployment lock {self.path}: "
            f"{answer or (held.stderr.strip().splitlines() or ['no message'])[-1]}", "command")

    def _beat(self, held: Held, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat) and held.write(b".\n"):
            pass

    def release(self) -> None:
        """Ends the remote holder (EOF on its stdin) and waits for it: the lock is free when
        this returns. Safe to call twice."""
        held, self._held = self._held, None
        if held is None:
            return
        self._stop.set()
        held.close()

    def __enter__(self) -> RemoteLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def remote_holder(conn: SshConnection, folder: str) -> Holder | None:
    """Who holds the target's deployment lock now; None when nobody does (an info file left
    by a killed holder does not count: only a held flock does)."""
    result = conn.run(["sh", "-c", _PROBE, "sh", folder], timeout=30)
    answer, _, rest = result.stdout.partition("\n")
    if answer == "free":
        return None
    if answer == "held":
        return parse_holder(rest)
    raise SshError(f"{conn.target.label}: cannot read the deployment lock in {folder}: "
                   f"{answer or (result.stderr.strip().splitlines() or ['no message'])[-1]}", "command")
