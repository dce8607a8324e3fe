#!/usr/bin/env bash
# Set up .venv (first run only) and run the test suite. Extra arguments go to pytest,
# e.g. ./run_tests.sh -k config, or RUN_SLOW=1 ./run_tests.sh for the slow end-to-end tests too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash scripts/bootstrap.sh dev
exec .venv/bin/python -m pytest "$@"
