"""Test servers: containers on the local engine, each running its own dockerd and sshd.

A server is reached over real SSH on a port published on 127.0.0.1, as root, with a
key pair the pool generates; strict host-key checking stays on (the pool writes a
known_hosts from each server's own host key) and sshd keeps its default settings
(``MaxStartups 10:30:100``), so tests meet what a real server does. Facts about what
works on this machine: "Test servers" in DESIGN.md.

    pool = ServerPool(folder)           # a session fixture in conftest.py: test_servers
    server = pool.server(0)             # started on first use, then shared (at most 3)
    server.ssh("docker", "info")        # ssh -F pool.ssh_config server-0 docker info
    server.load_image("surefoot-test/busybox:1")   # docker save | ssh server docker load
    pool.teardown()                     # removes the containers and volumes it made

The image (``surefoot-test/server:<hash>``) is built once from the local
``debian:bookworm-slim`` and kept between runs; its tag is a hash of the Dockerfile and
the entrypoint, so changing either builds a new one.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVER_REPOSITORY = "surefoot-test/server"
MAX_SERVERS = 3
COMPOSE_PLUGINS = [Path(folder) / "docker-compose" for folder in (
    "/usr/local/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins",
    str(Path.home() / ".docker" / "cli-plugins"))]
LABEL = "surefoot-test.server"

DOCKERFILE = """\
FROM debian:bookworm-slim
RUN apt-get update -q \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \\
      docker.io openssh-server iptables python3 ca-certificates \\
 && rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_*_key* \\
 && mkdir -p /run/sshd /root/.ssh && chmod 700 /root/.ssh
COPY docker-compose /usr/local/lib/docker/cli-plugins/docker-compose
COPY entrypoint.sh /entrypoint.sh
ENTRYPOINT ["/bin/sh", "/entrypoint.sh"]
"""

# /sys and the cgroup v1 hierarchies come read-only without --privileged: remount them
# read-write so dockerd can make cgroups. Each server gets its own host key.
ENTRYPOINT = """\
set -e
mount -o remount,rw /sys 2>/dev/null || mount -o remount,bind,rw /sys || true
mount -o remount,bind,rw /sys/fs/cgroup 2>/dev/null || true
for m in $(awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts); do
    mount -o remount,bind,rw "$m" 2>/dev/null || true
done
printf '%s\\n' "$AUTHORIZED_KEY" > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
rm -f /var/run/docker.pid
setsid dockerd >/var/log/dockerd.log 2>&1 </dev/null &
exec /usr/sbin/sshd -D -e -o HostKey=/etc/ssh/ssh_host_ed25519_key
"""

# A bare server, what a new VPS is: sshd (on 2222: the port in use is the connection's, not 22
# by assumption), python3 without venv, sudo, no Docker. Users: root; deploy, with passwordless
# sudo; asker, whose sudo asks for a password. apt keeps what it downloads (the archive is a
# volume the bare servers of a session share). The proxy CA of these machines is added for pip
# (PyPI goes through it here): that is these machines' setup, never shipped.
BARE_DOCKERFILE = """\
FROM debian:bookworm-slim
RUN apt-get update -q \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \\
      openssh-server sudo python3 ca-certificates \\
 && rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_*_key* /etc/apt/apt.conf.d/docker-clean \\
 && mkdir -p /run/sshd \\
 && useradd -m -s /bin/bash deploy && useradd -m -s /bin/bash asker && echo 'asker:not-a-real-password' | chpasswd \\
 && echo 'deploy ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deploy && echo 'asker ALL=(ALL) ALL' > /etc/sudoers.d/asker
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null && printf '[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n' > /etc/pip.conf
COPY entrypoint.sh /entrypoint.sh
ENTRYPOINT ["/bin/sh", "/entrypoint.sh"]
"""
BARE_ENTRYPOINT = """\
set -e
mount -o remount,rw /sys 2>/dev/null || mount -o remount,bind,rw /sys || true
mount -o remount,bind,rw /sys/fs/cgroup 2>/dev/null || true
for m in $(awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts); do
    mount -o remount,bind,rw "$m" 2>/dev/null || true
done
for home in /root /home/deploy /home/asker; do
    mkdir -p "$home/.ssh" && printf '%s\\n' "$AUTHORIZED_KEY" > "$home/.ssh/authorized_keys"
    chown -R "$(stat -c %u:%g "$home")" "$home/.ssh" && chmod 700 "$home/.ssh" && chmod 600 "$home/.ssh/authorized_keys"
done
ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
exec /usr/sbin/sshd -D -e -p 2222 -o HostKey=/etc/ssh/ssh_host_ed25519_key
"""
BARE_SSH_PORT = 2222
CA_FOLDER = Path("/usr/local/share/ca-certificates")

RUN_FLAGS = [
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined",
    "--device", "/dev/fuse", "--device-cgroup-rule", "a *:* rwm",
]


class ServerError(RuntimeError):
    pass


def _run(argv: Sequence[str], *, timeout: float = 60, check: bool = True,
         input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                            input=None if input is None else input.decode())
    if check and result.returncode != 0:
        raise ServerError(f"{shlex.join(argv)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result


def image_tag() -> str:
    digest = hashlib.sha256((DOCKERFILE + "\0" + ENTRYPOINT).encode()).hexdigest()[:12]
    return f"{SERVER_REPOSITORY}:{digest}"


def ensure_image(workdir: Path) -> tuple[str, float | None]:
    """The server image, built when missing. Returns its tag and the build time (None: reused)."""
    tag = image_tag()
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag, None
    plugin = next((path for path in COMPOSE_PLUGINS if path.exists()), None)
    if plugin is None:
        raise ServerError(f"the compose v2 plugin is missing ({COMPOSE_PLUGINS[0]}): run scripts/setup.sh")
    context = workdir / "server-image"
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "entrypoint.sh").write_text(ENTRYPOINT)
    shutil.copy(plugin, context / "docker-compose")
    started = time.monotonic()
    build = ["docker", "build", "-q", "-t", tag, "--label", f"{LABEL}.image=1", str(context)]
    try:
        _run(build, timeout=900)
    except ServerError:  # the legacy builder's untagged step images can vanish under a concurrent prune: once more
        _run(build, timeout=900)
    shutil.rmtree(context, ignore_errors=True)
    return tag, time.monotonic() - started


def bare_image_tag() -> str:
    certificates = b"".join(path.read_bytes() for path in sorted(CA_FOLDER.glob("*.crt")))
    digest = hashlib.sha256((BARE_DOCKERFILE + "\0" + BARE_ENTRYPOINT).encode() + certificates).hexdigest()[:12]
    return f"{SERVER_REPOSITORY}:bare-{digest}"


def ensure_bare_image(workdir: Path) -> str:
    """The bare server's image, built when missing."""
    tag = bare_image_tag()
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    context = workdir / "bare-image"
    (context / "ca").mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(BARE_DOCKERFILE)
    (context / "entrypoint.sh").write_text(BARE_ENTRYPOINT)
    for certificate in CA_FOLDER.glob("*.crt"):
        shutil.copy(certificate, context / "ca" / certificate.name)
    _run(["docker", "build", "-q", "-t", tag, "--label", f"{LABEL}.image=1", str(context)], timeout=900)
    shutil.rmtree(context, ignore_errors=True)
    return tag


@dataclass
class Server:
    """One running test server. ``alias`` is its Host in ``ssh_config``."""

    alias: str
    container: str
    volume: str
    port: int
    ssh_config: Path

    @property
    def url(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    def ssh_argv(self, *command: str) -> list[str]:
        """ssh to this server; the remote command's words are quoted for the remote shell."""
        argv = ["ssh", "-F", str(self.ssh_config), self.alias]
        if command:
            argv += ["--", shlex.join(command)]
        return argv

    def ssh(self, *command: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(self.ssh_argv(*command), timeout=timeout, check=check)

    def exec(self, *command: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command inside the server, through the local engine (not over SSH)."""
        return _run(["docker", "exec", self.container, *command], timeout=timeout, check=check)

    def load_image(self, image: str, timeout: float = 300) -> None:
        """Ship an image from the local engine: docker save | ssh server docker load
        (skipped when the server already has the same image id)."""
        local_id = _run(["docker", "image", "inspect", "-f", "{{.Id}}", image]).stdout.strip()
        remote = self.ssh("docker", "image", "inspect", "-f", "{{.Id}}", image, check=False)
        if remote.returncode == 0 and remote.stdout.strip() == local_id:
            return
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        try:
            load = subprocess.run(self.ssh_argv("docker", "load", "-q"), stdin=save.stdout,
                                  capture_output=True, text=True, timeout=timeout)
        finally:
            assert save.stdout is not None
            save.stdout.close()
            save.wait(timeout=timeout)
        if save.returncode != 0 or load.returncode != 0:
            raise ServerError(f"shipping {image} to {self.alias} failed: {load.stderr.strip()}")


class ServerPool:
    """Up to three servers for a test session, started on first use and shared."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        self.session = uuid.uuid4().hex[:8]
        self.key = folder / "id_ed25519"
        self.known_hosts = folder / "known_hosts"
        self.ssh_config = folder / "ssh_config"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "surefoot-test", "-f", str(self.key)])
        self.known_hosts.write_text("")
        self.servers: dict[int, Server] = {}
        self.bare_servers: dict[int, Server] = {}
        self.volumes: list[str] = []  # shared by the bare servers
        self.image: str | None = None
        self.build_seconds: float | None = None
        self.start_seconds: dict[int, float] = {}
        self._write_config()

    def server(self, index: int = 0) -> Server:
        return self.start(index + 1)[index]

    def start(self, count: int) -> list[Server]:
        """The first ``count`` servers, starting the missing ones at the same time."""
        if not 1 <= count <= MAX_SERVERS:
            raise ValueError(f"at most {MAX_SERVERS} test servers")
        if self.image is None:
            self.image, self.build_seconds = ensure_image(self.folder)
        missing = [i for i in range(count) if i not in self.servers]
        if missing:
            _remove(self.bare_servers)  # never more than three at once
            started = time.monotonic()
            launched = [self._launch(i) for i in missing]
            self._write_config()
            with ThreadPoolExecutor(len(launched)) as workers:
                list(workers.map(self._wait_ready, launched))
            for i in missing:
                self.start_seconds[i] = time.monotonic() - started
        return [self.servers[i] for i in range(count)]

    def bare(self, index: int, *, fresh: bool = False) -> Server:
        """Bare server ``index`` (0-2; see BARE_DOCKERFILE), started on first use (``fresh``:
        started anew, whatever an earlier test did to it). The servers with Docker are stopped
        first: never more than three at once."""
        if not 0 <= index < MAX_SERVERS:
            raise ValueError(f"at most {MAX_SERVERS} test servers")
        if fresh and index in self.bare_servers:
            _remove({index: self.bare_servers.pop(index)})
        if index not in self.bare_servers:
            self.teardown()
            image = ensure_bare_image(self.folder)
            archive = f"sft-bare-{self.session}-apt"
            if archive not in self.volumes:
                _run(["docker", "volume", "create", "--label", f"{LABEL}={self.session}", archive])
                self.volumes.append(archive)
            server = self._launch(index, image=image, alias=f"bare-{index}", port=BARE_SSH_PORT,
                                  mounts=["-v", f"{archive}:/var/cache/apt/archives"], into=self.bare_servers)
            self._write_config()
            deadline = time.monotonic() + 60
            while server.ssh("true", check=False, timeout=30).returncode != 0:
                if time.monotonic() > deadline:
                    raise ServerError(f"{server.alias}: no SSH in 60 s: {self._logs(server)}")
                time.sleep(0.2)
        return self.bare_servers[index]

    def _launch(self, index: int, *, image: str | None = None, alias: str | None = None, port: int = 22,
                mounts: Sequence[str] = (), into: dict[int, Server] | None = None) -> Server:
        image = image or self.image
        assert image is not None
        alias = alias or f"server-{index}"
        name = f"sft-{alias}-{self.session}"
        volume = f"{name}-docker"
        labels = ["--label", f"{LABEL}={self.session}"]
        _run(["docker", "volume", "create", *labels, volume])
        public_key = (self.key.parent / (self.key.name + ".pub")).read_text().strip()
        try:
            _run(["docker", "run", "-d", "--name", name, "--hostname", alias, *labels, *RUN_FLAGS,
                  "-v", f"{volume}:/var/lib/docker", *mounts, "-p", f"127.0.0.1::{port}",
                  "-e", f"AUTHORIZED_KEY={public_key}", image])
            port = int(_run(["docker", "port", name, f"{port}/tcp"]).stdout.split()[0].rsplit(":", 1)[1])
        except Exception:
            _run(["docker", "rm", "-f", "-v", name], check=False)
            _run(["docker", "volume", "rm", "-f", volume], check=False)
            raise
        server = Server(alias, name, volume, port, self.ssh_config)
        (into if into is not None else self.servers)[index] = server
        host_key = self._host_key(server)
        with self.known_hosts.open("a") as known:
            known.write(f"[127.0.0.1]:{port} {host_key}\n")
        return server

    def _host_key(self, server: Server, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            result = server.exec("cat", "/etc/ssh/ssh_host_ed25519_key.pub", check=False)
            if result.returncode == 0 and result.stdout.strip():
                kind, key = result.stdout.split()[:2]
                return f"{kind} {key}"
            if time.monotonic() > deadline:
                raise ServerError(f"{server.alias} made no host key: {self._logs(server)}")
            time.sleep(0.1)

    def _wait_ready(self, server: Server, timeout: float = 90) -> None:
        """Until SSH answers and `docker info` works inside."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            result = server.ssh("docker", "info", "--format", "{{.ServerVersion}}", check=False, timeout=30)
            if result.returncode == 0 and result.stdout.strip():
                return
            last = result.stderr.strip()
            time.sleep(0.2)
        raise ServerError(f"{server.alias} not ready in {timeout:.0f} s: {last}\n{self._logs(server)}")

    def _logs(self, server: Server) -> str:
        logs = _run(["docker", "logs", "--tail", "20", server.container], check=False)
        daemon = server.exec("tail", "-n", "20", "/var/log/dockerd.log", check=False)
        return f"{logs.stdout}{logs.stderr}\n{daemon.stdout}"

    def _write_config(self) -> None:
        lines = []
        for server in [*self.servers.values(), *self.bare_servers.values()]:
            lines += [f"Host {server.alias}", "    HostName 127.0.0.1", f"    Port {server.port}", ""]
        lines += [
            "Host *",
            "    User root",
            f"    IdentityFile {self.key}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {self.known_hosts}",
            "    GlobalKnownHostsFile /dev/null",
            "    StrictHostKeyChecking yes",
            "    BatchMode yes",
            "    ConnectTimeout 10",
            "    LogLevel ERROR",
            "",
        ]
        self.ssh_config.write_text("\n".join(lines))

    def teardown(self, *, bare: bool = False) -> None:
        """Removes the servers with Docker this pool made (and with ``bare`` the bare ones and
        the volumes they share), and nothing else."""
        _remove(self.servers)
        if bare:
            _remove(self.bare_servers)
            for volume in self.volumes:
                _run(["docker", "volume", "rm", "-f", volume], check=False, timeout=120)
            self.volumes.clear()


def _remove(servers: dict[int, Server]) -> None:
    for server in servers.values():
        _run(["docker", "rm", "-f", "-v", server.container], check=False, timeout=120)
        _run(["docker", "volume", "rm", "-f", server.volume], check=False, timeout=120)
    servers.clear()


def make_swarm(servers: Sequence[Server]) -> None:
    """The first server inits a swarm, the others join it as workers (never this machine's
    engine: the swarm lives inside the servers). Any swarm they were in is left first."""
    for server in servers:
        server.ssh("docker", "swarm", "leave", "--force", check=False)
    address = servers[0].ssh("hostname", "-i").stdout.split()[0]
    servers[0].ssh("docker", "swarm", "init", "--advertise-addr", address)
    token = servers[0].ssh("docker", "swarm", "join-token", "-q", "worker").stdout.strip()
    for server in servers[1:]:
        own = server.ssh("hostname", "-i").stdout.split()[0]
        server.ssh("docker", "swarm", "join", "--advertise-addr", own, "--token", token, f"{address}:2377")


def leave_swarm(servers: Sequence[Server]) -> None:
    """Every server leaves its swarm, the workers first."""
    for server in [*servers[1:], *servers[:1]]:
        server.ssh("docker", "swarm", "leave", "--force", check=False, timeout=120)


@contextmanager
def loopback_registry(servers: Sequence[Server], folder: Path, port: int) -> Iterator[str]:
    """An image registry (Debian's docker-registry) on this machine's loopback, and the same
    address on each server's loopback through an SSH remote forward: one name every engine
    reaches (a loopback registry needs no TLS). Yields ``127.0.0.1:PORT``."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise ServerError("docker-registry is missing: run scripts/setup.sh")
    config = folder / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {folder / 'images'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: error\n")
    serving = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tunnels = [subprocess.Popen(["ssh", "-F", str(server.ssh_config), "-N", "-o", "ExitOnForwardFailure=yes",
                                 "-R", f"127.0.0.1:{port}:127.0.0.1:{port}", server.alias]) for server in servers]
    script = f"import urllib.request;urllib.request.urlopen('http://127.0.0.1:{port}/v2/',timeout=3)"
    try:
        deadline = time.monotonic() + 30
        while not (all(t.poll() is None for t in tunnels)
                   and all(s.ssh("python3", "-c", script, check=False).returncode == 0 for s in servers)):
            if time.monotonic() > deadline:
                raise ServerError(f"the registry on 127.0.0.1:{port} is not reached through the tunnels in 30 s")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        for process in [*tunnels, serving]:
            process.terminate()
            process.wait(timeout=10)
