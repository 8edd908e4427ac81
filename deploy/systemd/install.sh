#!/usr/bin/env bash
# Install the oracle as systemd services: the user, a virtual environment with the project, the
# configs, the units. Run from the repository, as root. Existing configs in /etc/btcfi-oracle are
# never overwritten (an operator's edits survive a reinstall); units are replaced.
#
# Usage: sudo deploy/systemd/install.sh [--simulate] [--no-venv]
#   --simulate  a SIMULATED system: also the exchange simulator, and an oracle.env that puts the
#               aggregator, nodes and committer in simulate mode (regtest, PSBTs to a directory)
#   --no-venv   do not create /opt/btcfi-oracle/venv (you install the project there yourself)
# Then: sudo systemctl start btcfi-oracle.target
#
# Environment: DESTDIR (install under this root instead of /, e.g. for a package; then no user is
# created and systemctl is not called), PREFIX (/opt/btcfi-oracle).
#
# Layout: /opt/btcfi-oracle/venv (programs), /etc/btcfi-oracle (configs, oracle.env),
# /var/lib/btcfi-oracle (working directory: databases, keys; made by systemd, 0700),
# /var/log/btcfi-oracle (logs, rotated by the services), /run/btcfi-oracle (node-id locks).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
destdir="${DESTDIR:-}"
prefix="${PREFIX:-/opt/btcfi-oracle}"
simulate=0
venv=1
for arg in "$@"; do
  case "$arg" in
    --simulate) simulate=1 ;;
    --no-venv) venv=0 ;;
    -h | --help)
      awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
      exit 0
      ;;
    *)
      echo "install.sh: unknown argument '$arg' (usage: install.sh [--simulate] [--no-venv])" >&2
      exit 2
      ;;
  esac
done
if [ -z "$destdir" ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run it as root (sudo), or set DESTDIR to install under another root" >&2
  exit 2
fi
etc="$destdir/etc/btcfi-oracle"
units="$destdir/etc/systemd/system"

echo "==> the user btcfi-oracle (systemd-sysusers)"
install -D -m 0644 "$here/btcfi-oracle.sysusers" "$destdir/usr/lib/sysusers.d/btcfi-oracle.conf"
[ -n "$destdir" ] || systemd-sysusers btcfi-oracle.conf

if [ "$venv" = 1 ]; then
  echo "==> $prefix/venv with the project"
  python3 -m venv "$destdir$prefix/venv"
  "$destdir$prefix/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$repo"
fi
install -D -m 0644 "$repo/README.md" "$destdir$prefix/README.md"

echo "==> configs in /etc/btcfi-oracle (existing files kept)"
install -d -m 0750 "$etc"
install_config() { # install_config SOURCE NAME
  if [ -e "$etc/$2" ]; then
    echo "    $2: kept (exists)"
  else
    install -m 0640 "$1" "$etc/$2"
    echo "    $2"
  fi
}
for name in aggregator committer explorer; do
  [ -f "$repo/config/$name.toml" ] && install_config "$repo/config/$name.toml" "$name.toml"
done
# The nodes by exchange: config/oracle-node-<N>.toml becomes oracle-node-<exchange>.toml, the
# file oracle-node@<exchange>.service reads.
exchanges=()
while read -r _index exchange _node_id config; do
  install_config "$config" "oracle-node-$exchange.toml"
  exchanges+=("$exchange")
done < <(python3 "$repo/scripts/lib/node_table.py" "$repo/config")
install -m 0644 "$here/oracle.env.example" "$etc/oracle.env.example"
if [ "$simulate" = 1 ] && [ ! -e "$etc/oracle.env" ]; then
  sed 's/^#\(ORACLE_[A-Z_]*SIMULATE=true\)/\1/; s/^#\(ORACLE_NODE_API_URL=\)/\1/' \
    "$here/oracle.env.example" >"$etc/oracle.env"
  chmod 0640 "$etc/oracle.env"
  echo "    oracle.env (SIMULATED system)"
fi
[ -n "$destdir" ] || chgrp -R btcfi-oracle "$etc"

echo "==> units in /etc/systemd/system"
install -d "$units"
for unit in "$here"/*.service "$here"/*.target; do
  sed "s|/opt/btcfi-oracle|$prefix|g" "$unit" >"$units/$(basename "$unit")"
  chmod 0644 "$units/$(basename "$unit")"
done

enable=(btcfi-oracle.target oracle-aggregator.service oracle-committer.service)
[ -f "$etc/explorer.toml" ] && enable+=(oracle-explorer.service)
[ "$simulate" = 1 ] && enable+=(oracle-exchange-sim.service)
for exchange in "${exchanges[@]}"; do enable+=("oracle-node@$exchange.service"); done
if [ -n "$destdir" ]; then
  echo "DESTDIR install: enable these units on the target system: ${enable[*]}"
  exit 0
fi
systemctl daemon-reload
systemctl enable "${enable[@]}"
echo
echo "Installed. Start everything: systemctl start btcfi-oracle.target"
echo "           See it:           systemctl status 'oracle-*' btcfi-oracle.target"
echo "           Logs:             /var/log/btcfi-oracle/ (and journalctl -u 'oracle-*')"
