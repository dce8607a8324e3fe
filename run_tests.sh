#!/usr/bin/env bash
# Set up .venv (first run only) and run the test suite. Extra arguments go to pytest,
# e.g. ./run_tests.sh -k config, or RUN_SLOW=1 ./run_tests.sh for the slow end-to-end tests too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash scripts/bootstrap.sh dev
# Meta-World renders offscreen with OSMesa on CPU; install it when we can (its tests skip without it).
if ! ldconfig -p 2>/dev/null | grep -q libOSMesa && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[run_tests] installing libosmesa6 for offscreen MuJoCo rendering"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libosmesa6 >/dev/null) \
    || echo "[run_tests] could not install libosmesa6; the Meta-World tests will skip"
fi
exec .venv/bin/python -m pytest "$@"
