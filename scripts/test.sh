#!/usr/bin/env bash
# THE test command (README.md names it; .ci/run calls it): sets up .venv, then lint, types, tests.
# Extra arguments go to pytest, e.g. scripts/test.sh -k aggregation -x
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
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
