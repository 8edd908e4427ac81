#!/usr/bin/env bash
# Restart parts of the oracle under PID-file control: stop each part named (SIGTERM, as
# stop_nodes.sh does) and start it again (as run_multi_nodes.sh does), in the mode it was running
# in (its PID file records it). The new configuration of every part is checked first, while the
# old processes still run: a bad setting refuses the restart and leaves them running.
#
# Usage: scripts/restart.sh [--simulate] [--only PART[,PART...]]...   (from any directory)
#   PART: simulator, aggregator, committer, explorer, nodes, or an exchange (its node).
#   Without --only: every part. --simulate is needed only when nothing of the system runs (the
#   mode is then not recorded anywhere); given while parts run in real mode, it is refused.
# Environment: as run_multi_nodes.sh and stop_nodes.sh.
# Exit status: as run_multi_nodes.sh (0 restarted; 1 a part failed to start; 2 usage or a
# configuration error, nothing stopped; 3 refused, nothing stopped).
set -euo pipefail
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/procs.sh
source "$script_dir/lib/procs.sh"

simulate=""
only=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --simulate) simulate=1 ;;
    --only)
      [ "$#" -ge 2 ] || { echo "restart.sh: --only needs a part (e.g. --only kraken)" >&2; exit 2; }
      only+=("$2")
      shift
      ;;
    --only=*) only+=("${1#--only=}") ;;
    -h | --help)
      oracle_usage
      exit 0
      ;;
    *)
      echo "restart.sh: unknown argument '$1' (usage: restart.sh [--simulate] [--only PART...])" >&2
      exit 2
      ;;
  esac
  shift
done
oracle_load_nodes
if [ "${#only[@]}" -gt 0 ]; then
  mapfile -t parts < <(oracle_resolve_parts "${only[@]}")
  [ "${#parts[@]}" -gt 0 ] || exit 2
else
  mapfile -t parts < <(oracle_all_parts)
fi

# The mode: what the running parts were started in (all of them, not only those restarted: one
# system, one mode).
modes=()
while read -r name; do
  pidfile_check "$name"
  [ "$PIDFILE_STATE" = running ] || continue
  mode="$(pidfile_field "$name" mode)"
  [ -n "$mode" ] && modes+=("$mode")
done < <(oracle_all_parts)
recorded=""
for mode in "${modes[@]}"; do
  if [ -n "$recorded" ] && [ "$mode" != "$recorded" ]; then
    echo "REFUSED: the running parts are in different modes (real and simulated); see $(oracle_hint status.sh)" >&2
    exit 3
  fi
  recorded="$mode"
done
if [ "$recorded" = real ] && [ "$simulate" = 1 ]; then
  echo "REFUSED: the system runs in real mode; --simulate would mix simulated prices in." >&2
  echo "  Stop it first ($(oracle_hint stop_nodes.sh --all)), then: $(oracle_hint run_multi_nodes.sh --simulate)" >&2
  exit 3
fi
[ "$recorded" = simulated ] && simulate=1
mode_flag=()
[ "$simulate" = 1 ] && mode_flag=(--simulate)

# Without --simulate the simulator is no part of the system.
restart=()
for name in "${parts[@]}"; do
  if [ "$name" = simulator ] && [ "$simulate" != 1 ]; then
    [ "${#only[@]}" -eq 0 ] && continue
    echo "restart.sh: the exchange simulator runs only in a simulated system (add --simulate)" >&2
    exit 2
  fi
  if [ "$name" = explorer ] && ! [ -x "$oracle_root/.venv/bin/oracle-explorer" ] && ! [ -e "$run_dir/explorer.pid" ]; then
    [ "${#only[@]}" -eq 0 ] && continue
  fi
  restart+=("$name")
done
list="$(IFS=,; printf '%s' "${restart[*]}")"

# Check the configurations while the old processes still serve (the same check run_multi_nodes.sh
# makes, through each program's --check-config); only then stop and start.
check=(--check-only)
"$script_dir/run_multi_nodes.sh" "${mode_flag[@]}" --only "$list" "${check[@]}"
"$script_dir/stop_nodes.sh" --only "$list" || {
  code=$?
  [ "$code" = 3 ] || exit "$code" # 3: a port still held by another process: the start says more
}
exec "$script_dir/run_multi_nodes.sh" "${mode_flag[@]}" --only "$list"
