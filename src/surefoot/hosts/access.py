"""Who surefoot is on a host, and how it gets root there.

One command (:data:`SCRIPT`) asks the host: the user and its groups (as this session has
them: a group added later applies at the next login), the SSH connection (the port in use),
the platform, and whether ``sudo -n true`` works. :func:`parse` is pure. ``sudo -n`` never
asks for a password: a sudo that wants one answers at once, and surefoot says what to do
instead of waiting on a prompt nobody sees.
"""

from __future__ import annotations

from dataclasses import dataclass

SUDO = ("sudo", "-n")

SCRIPT = r"""echo "uid=$(id -u)"
echo "user=$(id -un)"
echo "group=$(id -gn)"
echo "groups=$(id -Gn)"
echo "ssh=${SSH_CONNECTION:-}"
echo "platform=$(uname -s) $(uname -m)"
if [ "$(id -u)" = 0 ]; then echo "sudo=root"
elif ! command -v sudo >/dev/null 2>&1; then echo "sudo=missing"
elif said=$(sudo -n true 2>&1 </dev/null); then echo "sudo=yes"
else echo "sudo=no"; printf 'said=%s\n' "$(printf '%s\n' "$said" | head -n 1)"
fi
"""


@dataclass(frozen=True)
class Access:
    """What :data:`SCRIPT` found. ``sudo``: ``root`` (no need), ``yes`` (without a password),
    ``password`` (it asks for one), ``no`` (not allowed), ``missing`` (not installed)."""

    user: str
    group: str = ""
    groups: tuple[str, ...] = ()
    root: bool = False
    sudo: str = "root"
    sudo_said: str = ""
    ssh_port: int | None = None  # the port this session came in on, from SSH_CONNECTION
    platform: str = ""  # "Linux x86_64"

    @property
    def elevate(self) -> tuple[str, ...] | None:
        """The words that run a command as root: none for root, ``sudo -n`` where sudo needs no
        password; None when root cannot be had."""
        if self.root:
            return ()
        return SUDO if self.sudo == "yes" else None

    @property
    def docker_direct(self) -> bool:
        """Whether docker commands run as the user (root, or the session is in the docker group)."""
        return self.root or "docker" in self.groups

    @property
    def docker_prefix(self) -> tuple[str, ...]:
        """The words before a docker command: ``sudo -n`` when only sudo reaches the daemon."""
        return () if self.docker_direct or self.elevate is None else self.elevate

    def why_not_root(self, label: str) -> str:
        """One line: why commands cannot run as root on ``label``, and the two fixes."""
        why = {"password": "sudo asks for a password", "missing": "sudo is not installed",
               "no": f"{self.user} may not use sudo"}.get(self.sudo, "sudo does not work")
        said = f" ({self.sudo_said})" if self.sudo_said else ""
        return (f"{label}: {self.user} is not root and {why}{said}; surefoot never types a password. "
                f"Fix: let {self.user} use sudo without a password (a line "
                f"`{self.user} ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/{self.user}), "
                f"or connect as root (ssh://root@...)")


def parse(text: str) -> Access:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key not in fields:
            fields[key] = value.strip()
    sudo = fields.get("sudo", "missing")
    said = fields.get("said", "")
    if sudo == "no" and "password" in said.lower():
        sudo = "password"
    ssh = fields.get("ssh", "").split()
    port = int(ssh[3]) if len(ssh) == 4 and ssh[3].isdigit() else None
    return Access(user=fields.get("user", ""), group=fields.get("group", ""),
                  groups=tuple(fields.get("groups", "").split()), root=fields.get("uid") == "0",
                  sudo=sudo, sudo_said=said, ssh_port=port, platform=fields.get("platform", ""))
