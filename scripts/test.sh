#!/usr/bin/env bash
# THE test command (README.md names it; .ci/run calls it): sets up .venv (creates it, or
# reinstalls the project when pyproject.toml changed), then ruff check, ruff format --check,
# mypy --strict and pytest. A run that collects no tests fails.
#
# Usage: scripts/test.sh [PYTEST ARGS...]     e.g. scripts/test.sh -m "not e2e" -k aggregation -x
#        scripts/test.sh -h | --help          this text (touches nothing: no venv, no install)
#        scripts/test.sh --pytest-help        pytest's own help, through the venv
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${1:-}" in
  -h | --help)
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
    exit 0
    ;;
  --pytest-help)
    exec "$root/.venv/bin/python" -m pytest --help
    ;;
esac
cd "$root"
# shellcheck source=scripts/venv.sh
source "$root/scripts/venv.sh" dev
bin="$root/.venv/bin"

echo "==> ruff check"; "$bin/ruff" check .
echo "==> ruff format --check"; "$bin/ruff" format --check .
echo "==> mypy --strict"; "$bin/mypy"
echo "==> pytest"
set +e
"$bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"
