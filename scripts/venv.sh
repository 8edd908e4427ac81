#!/usr/bin/env bash
# Sourced by the other scripts: create .venv if missing and (re)install the project when
# pyproject.toml changed since the last install. Sets $VENV_PY.
# Usage: source scripts/venv.sh [EXTRAS]   (e.g. "dev"; without it the runtime dependencies)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-}"
if [ ! -x "$root/.venv/bin/python" ]; then
  echo "==> creating $root/.venv" >&2
  "${PYTHON:-python3}" -m venv "$root/.venv"
fi
VENV_PY="$root/.venv/bin/python"
hash="$(sha256sum < "$root/pyproject.toml" | cut -c1-16)"
# A dev install also satisfies a runtime-only request, hence the glob when no extras are asked for.
if ! compgen -G "$root/.venv/.installed-$hash-${extras:-*}" >/dev/null; then
  spec="$root"
  [ -n "$extras" ] && spec="$root[$extras]"
  echo "==> installing the project into .venv (${extras:-runtime} dependencies)" >&2
  "$VENV_PY" -m pip install --quiet --disable-pip-version-check -e "$spec" >&2
  touch "$root/.venv/.installed-$hash-${extras:-base}"
fi
export VENV_PY
