#!/usr/bin/env bash
# The test command: installs what the tests need (scripts/setup.sh, then what only the tests
# use), then runs the whole suite on the real Docker engine. Extra arguments go to pytest.
#
# Only the tests need: busybox-static (tiny test images), tmux (the terminal tests), chromium and
# a font (`history --html` opened headless), docker-registry (build = "registry" and layer
# shipping), debootstrap (the test servers' base when no registry answers) and pytest, hypothesis,
# ruff and mypy in .venv.
#
# With no arguments but pytest's output flags (-q, -v, -x, -p no:cacheprovider, -r...),
# the whole suite runs in three groups, to finish sooner on 2 cores:
#   1. the tests on test servers (SSH, several servers: mostly waiting on their own
#      dockerd) beside 2. every other test, then
#   3. the tests that stop this machine's Docker engine (nothing else may run then).
# Any other argument (a path, -m, -k, ...) runs pytest once, as given.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

say() { printf '\033[1mtest:\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || missing+=(fonts-dejavu-core)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing what only the tests need: ${missing[*]}"
    if [ -n "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ]; then as_root dpkg --configure -a || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -f; fi
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if ! .venv/bin/python -c 'import pytest, hypothesis' >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.surefoot-dev-installed ]; then
    say "installing the test dependencies into .venv"
    .venv/bin/pip install -q -e '.[dev]'
    touch .venv/.surefoot-dev-installed
fi
PYTEST=(.venv/bin/python -m pytest)

whole=1
expect_value=0
for arg in "$@"; do
    if [ "$expect_value" = 1 ]; then expect_value=0; continue; fi
    case "$arg" in
        -q|-qq|-v|-vv|-x|-s|--tb=*|-r*|--durations=*) ;;
        -p) expect_value=1 ;;
        *) whole=0 ;;
    esac
done
if [ "$whole" = 0 ]; then
    exec "${PYTEST[@]}" "$@"
fi

SERVERS=(tests/test_remote.py tests/test_fleet.py tests/test_ssh.py tests/test_filesync.py tests/test_layers.py
         tests/test_remotelock.py tests/test_imageship.py tests/test_swarm.py tests/test_bare_server.py)
STOPPERS=(tests/test_prerequisites.py tests/reliability/test_docker_faults.py)
ignore=()
for path in "${SERVERS[@]}" "${STOPPERS[@]}"; do ignore+=("--ignore=$path"); done

log=$(mktemp)
"${PYTEST[@]}" "$@" "${SERVERS[@]}" >"$log" 2>&1 &
servers=$!
status=0
"${PYTEST[@]}" "$@" "${ignore[@]}" tests || status=$?
servers_status=0
wait "$servers" || servers_status=$?
echo "--- the tests on test servers (run beside the others) ---"
cat "$log"
rm -f "$log"
echo "--- the tests that stop this machine's Docker engine ---"
stoppers_status=0
"${PYTEST[@]}" "$@" "${STOPPERS[@]}" || stoppers_status=$?
if [ "$status" != 0 ] || [ "$servers_status" != 0 ] || [ "$stoppers_status" != 0 ]; then
    echo "FAILED: other tests exit $status, test-server tests exit $servers_status, engine-stopping tests exit $stoppers_status"
    exit 1
fi
