# Shared by the scripts: make or reuse the virtual environment, installed with the dev extras.
# Sourced, not run. Sets ROOT and PY.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
stamp="$VENV/.installed-$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -x "$PY" ]; then
  echo "==> creating the virtual environment in $VENV" >&2
  python3 -m venv "$VENV"
fi
if [ ! -f "$stamp" ]; then
  echo "==> installing the project and its dev extras" >&2
  "$PY" -m pip install --quiet --upgrade pip >&2
  "$PY" -m pip install --quiet -e "$ROOT[dev]" >&2
  rm -f "$VENV"/.installed-* && touch "$stamp"
fi
cd "$ROOT"
