#!/usr/bin/env bash
# Set up on first run, then run the test suite. Extra arguments go to pytest (e.g. ./test.sh -k cache).
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
