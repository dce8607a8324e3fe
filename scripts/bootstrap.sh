#!/usr/bin/env bash
# Shared set-up of run_train.sh and run_tests.sh: make .venv when missing and install the project.
# torch goes in first (TORCH_SPEC, default torch==2.13.0) so a CPU machine never pulls CUDA wheels;
# a stamp file records what was installed, so later runs start at once.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$here/.venv}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"
extras="${1:-}"

# pip's own progress stays quiet; its warnings about unreachable local index folders are noise.
pip_quiet() {
  "$@" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }
  return "${PIPESTATUS[0]}"
}

python_bin="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "[bootstrap] creating $venv"
  "$python_bin" -m venv "$venv"
fi
stamp="$venv/.torchtitan_vla-installed"
want="$torch_spec|$extras|$(cat "$here/pyproject.toml" | sha256sum | cut -c1-16)"
have="$(cat "$stamp" 2>/dev/null || true)"
# An install with the dev extra also serves a run that needs none (run_train.sh after run_tests.sh).
if [ "$have" != "$want" ] && [ "$have" != "${want/|$extras|/|dev|}" -o -n "$extras" ]; then
  echo "[bootstrap] installing $torch_spec, then torchtitan_vla${extras:+[$extras]}"
  pip_quiet "$venv/bin/python" -m pip install -q --upgrade pip
  pip_quiet "$venv/bin/python" -m pip install -q "$torch_spec"
  pip_quiet "$venv/bin/python" -m pip install -q -e "$here${extras:+[$extras]}"
  if [ "$extras" = dev ]; then
    # The real openpi client drives the policy-server tests. It declares numpy<2 but runs on numpy 2;
    # --no-deps keeps pip from downgrading numpy (its needs are in the runtime deps and the dev extra).
    pip_quiet "$venv/bin/python" -m pip install -q --no-deps "openpi-client==0.1.2"
  fi
  echo "$want" > "$stamp"
fi
