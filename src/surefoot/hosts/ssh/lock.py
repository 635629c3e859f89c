"""The deployment lock on a remote target: an flock held there by a process that lives as
long as surefoot's SSH session. One remote ``sh`` takes ``FOLDER/.surefoot/deploy.lock``
(util-linux ``flock -n``), writes its holder to ``deploy.lock.json`` (pid, host = the
control machine's name, since, and a random ``token``), says ``locked``, then stays in the
foreground answering ``alive`` to each heartbeat line (``.``) surefoot writes to its stdin
every ``heartbeat`` s. It ends, and the kernel drops the lock, at EOF (a release; surefoot or
its ssh client killed: the pipe closes, the master sends EOF), when sshd's session ends (a
dropped connection), or after ``grace`` s without a heartbeat (the network gone, or the control
machine asleep or stopped: sshd would not notice an idle session for hours).

A lock that ended there must never be believed held here: a laptop that slept past ``grace``
would otherwise carry on while another deployment took the lock meanwhile. So
(:meth:`RemoteLock.check`, called before every command to the server):

- the last answer (``alive``) must be younger than ``grace - heartbeat`` by the wall clock
  (which, unlike the monotonic one, counts a suspend): the holder has then heard from us within
  ``grace`` and still holds the lock; past that, or once the holder is gone, the lock is lost
  and :class:`~surefoot.base.errors.LockLost` says so;
- and the server checks too: every command runs under a watchdog that refuses to start unless
  ``deploy.lock.json`` still carries our token, and stops the command when the token goes
  (:mod:`surefoot.hosts.ssh.remote`): a command in flight when the lock expired is cut within
  seconds, so nothing is changed there after another deployment could have taken the lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping

from surefoot.base.errors import CommandTimeout, LockHeld, LockLost
from surefoot.hosts.ssh.args import SshError, classify
from surefoot.hosts.ssh.connection import SshConnection
from surefoot.proc.held import Held
from surefoot.store import now_iso
from surefoot.store.lock import LOCK_NAME, Holder, holder_of

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
while [ "$(timeout "$3" head -n 1)" = . ]; do echo alive; done
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


def holder_json(holder: Holder, token: str = "") -> str:
    return json.dumps({"pid": holder.pid, "host": holder.host, "since": holder.since,
                       **({"token": token} if token else {})})


def token_mark(token: str) -> str:
    """How ``deploy.lock.json`` carries ``token`` (what the watchdog looks for)."""
    return json.dumps({"token": token})[1:-1]


def parse_holder(text: str) -> Holder:
    """The holder info file's text; fields that are missing or of the wrong type become None."""
    with contextlib.suppress(ValueError):
        return holder_of(json.loads(text))
    return Holder(None, None, None)


def grace_seconds(environ: Mapping[str, str] = os.environ) -> int:
    """How long the holder on the server waits for a heartbeat: 60 s (SUREFOOT_LOCK_GRACE, for
    tests, may shorten it)."""
    text = environ.get("SUREFOOT_LOCK_GRACE", "")
    return max(3, int(text)) if text.isdigit() else 60


class RemoteLock:
    """``with RemoteLock(conn, "/var/lib/surefoot/myapp", label="web1"): deploy()``"""

    def __init__(self, conn: SshConnection, folder: str, *, label: str, host: str | None = None,
                 pid: int | None = None, heartbeat: float | None = None, grace: int | None = None,
                 timeout: float = 60, clock: Callable[[], float] = time.time):
        self.conn, self.folder, self.label, self.host, self.pid = conn, folder, label, host, pid
        self.grace = grace if grace is not None else grace_seconds()
        self.heartbeat = heartbeat if heartbeat is not None else self.grace / 6
        self.timeout = timeout
        self.clock = clock  # the wall clock: it counts a suspend, which the monotonic one does not
        self.path = f"{folder.rstrip('/')}/{LOCK_DIR}/{LOCK_NAME}"
        self.token = ""  # while held: the token written in deploy.lock.json
        self._held: Held | None = None
        self._stop = threading.Event()
        self._contact = 0.0  # when the holder last answered
        self._gone = False  # the holder ended (or stopped answering) while we held the lock

    @property
    def held(self) -> bool:
        """Whether the lock is ours now (False after a release, or once it was lost)."""
        return self._held is not None and not self._lost_for()

    def acquire(self) -> None:
        """Raises LockHeld naming the holder, or SshError when the target cannot be reached."""
        if self._held is not None:
            return
        me = Holder(self.pid or os.getpid(), self.host or socket.gethostname(), now_iso())
        token = secrets.token_hex(16)
        held = self.conn.hold(["sh", "-c", _HOLD, "sh", self.folder, holder_json(me, token), str(self.grace)])
        try:
            answer = held.readline(self.timeout)
            info = held.readline(5) if answer == "busy" else None
        except CommandTimeout:
            held.close(1)
            raise SshError(f"target {self.label}: no answer within {self.timeout:g} s while taking the "
                           f"deployment lock {self.path}", "timeout") from None
        if answer == "locked":
            self._held, self._stop, self.token = held, threading.Event(), token
            self._contact, self._gone = self.clock(), False
            threading.Thread(target=self._beat, args=(held, self._stop), daemon=True, name=f"lock-{self.label}").start()
            return
        code = held.close()
        if answer == "busy":
            holder = parse_holder(info or "")
            raise LockHeld(f"target {self.label} is locked by another deployment: {holder.describe()}",
                           holder.pid, holder.host, holder.since)
        # ssh's own failure is exit 255; anything else is the script's (a "Permission denied" from
        # mkdir is not a refused key).
        raise (classify(self.conn.target, held.stderr) if code == 255 else None) or SshError(
            f"target {self.label}: cannot take the deployment lock {self.path}: "
            f"{answer or (held.stderr.strip().splitlines() or ['no message'])[-1]}", "command")

    def _beat(self, held: Held, stop: threading.Event) -> None:
        """A heartbeat every ``heartbeat`` s, and the holder's answer to it; the holder gone (its
        output ended, our pipe to it closed) is the lock lost."""
        while not stop.wait(self.heartbeat):
            try:
                answer = held.readline(self.heartbeat) if held.write(b".\n") else None
            except CommandTimeout:
                continue  # no answer yet: the contact ages, check() judges it
            if answer != "alive":
                if not stop.is_set():
                    self._gone = True
                return
            self._contact = self.clock()

    def _lost_for(self) -> float | None:
        """Seconds without contact, when the lock can no longer be believed held; else None.
        The holder's ssh client ended (killed, or its connection dropped) loses it at once."""
        silent = self.clock() - self._contact
        ended = self._held is not None and not self._held.running()
        if self._gone or ended or silent > self.grace - self.heartbeat:
            return max(silent, 0.0)
        return None

    def check(self) -> None:
        """Raises LockLost unless the lock is still ours (see the module); nothing while not held."""
        if self._held is None:
            return
        if self._lost_for() is not None:
            raise self.lost()

    def lost(self) -> LockLost:
        """The error that says the lock was lost, and after how long without contact."""
        silent = max(self.clock() - self._contact, 0.0)
        return LockLost(f"lost the deployment lock on {self.label} after {silent:.0f} s without contact; "
                        "another deployment may have run: see `surefoot status`")

    def release(self) -> None:
        """Ends the remote holder (EOF on its stdin) and waits for it: the lock is free when
        this returns. Safe to call twice."""
        held, self._held = self._held, None
        if held is None:
            return
        self._stop.set()
        self.token = ""
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
