# Shared set-up for scripts/: find or install uv, use the machine's Python, sync the workspace.
# Sourced, not run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export UV_PYTHON_DOWNLOADS=never
# Trust the system certificate store (sandbox and corporate CAs live there).
export UV_SYSTEM_CERTS=${UV_SYSTEM_CERTS:-1}
PYTHON=${PYTHON:-python3}
if command -v uv >/dev/null 2>&1; then
  UV=(uv)
else
  if ! "$PYTHON" -m uv --version >/dev/null 2>&1; then
    echo "installing uv with pip ..." >&2
    "$PYTHON" -m pip install --quiet --disable-pip-version-check uv
  fi
  UV=("$PYTHON" -m uv)
fi
# Bytecode compiled once at install: with PYTHONDONTWRITEBYTECODE set, every worker process
# a test starts would otherwise compile each library it imports (~1 s of CPU apiece).
# The sync is exact: it removes what uv.lock does not list, such as a plugin installed into
# .venv by hand while developing it beside the project; CHICORY_SYNC_INEXACT=1 keeps those.
SYNC=(sync --frozen --compile-bytecode --python "$PYTHON" --quiet)
if [[ "${CHICORY_SYNC_INEXACT:-}" == 1 ]]; then
  SYNC+=(--inexact)
fi
"${UV[@]}" "${SYNC[@]}"
