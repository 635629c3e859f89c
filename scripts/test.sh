#!/usr/bin/env bash
# The test command: installs what the tests need (scripts/setup.sh), then runs
# the whole suite on the real Docker engine. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
