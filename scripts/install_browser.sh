#!/usr/bin/env bash
# Install what the explorer's browser test needs: Debian's Chromium (/usr/bin/chromium), driven by
# the Python playwright package from the dev extras (never a downloaded browser build).
# Called by .ci/run before the tests; a developer may run it once too. It never fails the run:
# without a browser, tests/explorer/test_browser.py is skipped and says so loudly.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then
  echo "==> browser: $(chromium --version 2>/dev/null || echo chromium) already installed" >&2
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "==> browser: no chromium, and cannot apt-get install it here (not root or no apt);" \
       "the explorer's browser test will be SKIPPED" >&2
  exit 0
fi
echo "==> browser: installing Debian's chromium for the explorer's browser test" >&2
start=$(date +%s)
if DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
   && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2; then
  echo "==> browser: $(chromium --version 2>/dev/null) installed in $(( $(date +%s) - start )) s" >&2
else
  echo "==> browser: apt-get install chromium FAILED; the explorer's browser test will be SKIPPED" >&2
fi
exit 0
