#!/usr/bin/env bash
# Re-vendor the explorer's chart library (uPlot) from the npm registry into the package, so the
# page works offline (no CDN). Usage: scripts/vendor_uplot.sh [VERSION]   (default: the pinned one)
# It takes only the three files the page uses, plus the licence, and records the version and the
# tarball's integrity in VENDORED.md. Needs npm (the registry client); nothing runs at build time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${1:-1.6.32}"
dest="$root/src/explorer/static/vendor/uplot"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "uplot@$version" >/dev/null && tar xzf "uplot-$version.tgz")
integrity="$(cd "$work" && npm view "uplot@$version" dist.integrity)"
mkdir -p "$dest"
cp "$work/package/dist/uPlot.iife.min.js" "$work/package/dist/uPlot.min.css" "$dest/"
cp "$work/package/LICENSE" "$dest/LICENSE"
cat > "$dest/VENDORED.md" <<DOC
# uPlot, vendored

- package: \`uplot\` from the npm registry, version **$version** (MIT licence, see LICENSE)
- tarball integrity: \`$integrity\`
- files taken: \`dist/uPlot.iife.min.js\`, \`dist/uPlot.min.css\`, \`LICENSE\` (unchanged)
- how: \`scripts/vendor_uplot.sh $version\` (npm pack, extract, copy; see the script)

Served by the explorer at \`/static/vendor/uplot/\`; the page loads no script from anywhere else.
DOC
echo "vendored uplot $version into $dest"
