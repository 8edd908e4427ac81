#!/usr/bin/env bash
# Show each part of the oracle on this machine: its state, PID, uptime, endpoint, whether it
# answers (gRPC health for the aggregator and the committer, HTTP for the simulator and the
# explorer, the freshness of its log for a node, which has no port) and its log file. What a part
# was started with comes from its PID file (run_multi_nodes.sh records it), so the view is of what
# runs, not of what the environment says today; a part answering on its port without a PID file
# is shown as "not started by these scripts".
#
# Usage: scripts/status.sh [--json]      (from any directory)
# Environment (optional): ORACLE_RUN_DIR, ORACLE_LOG_DIR, and the ports (as run_multi_nodes.sh).
# Exit status: 0 every part that was started runs and answers; 1 a started part is dead, unknown
# or does not answer; 2 usage; 3 nothing was started by these scripts.
set -euo pipefail
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/procs.sh
source "$script_dir/lib/procs.sh"

json=()
for arg in "$@"; do
  case "$arg" in
    --json) json=(--json) ;;
    -h | --help)
      oracle_usage
      exit 0
      ;;
    *)
      echo "status.sh: unknown argument '$arg' (usage: status.sh [--json])" >&2
      exit 2
      ;;
  esac
done
oracle_load_nodes
# shellcheck source=scripts/venv.sh
source "$oracle_root/scripts/venv.sh" "" # grpc, for the health checks

parts=(--part simulator simulator "http://127.0.0.1:$sim_port" "$log_dir/simulator.log"
  --part aggregator aggregator "$aggregator_client_host:$aggregator_port" "$log_dir/aggregator.log"
  --part committer committer "127.0.0.1:$committer_port" "$log_dir/committer.log")
if [ -x "$oracle_root/.venv/bin/oracle-explorer" ] || [ -e "$run_dir/explorer.pid" ]; then
  parts+=(--part explorer explorer "http://127.0.0.1:$explorer_port/" "$log_dir/explorer.log")
fi
for name in "${oracle_node_names[@]}"; do
  parts+=(--part "$name" node "" "$log_dir/$name.log")
done
set +e
"$VENV_PY" "$oracle_root/scripts/lib/status.py" --run-dir "$run_dir" "${json[@]}" "${parts[@]}"
code=$?
set -e
if [ "${#json[@]}" -eq 0 ]; then
  # The hint in the system's own mode, as its PID files record it.
  mode_flag=()
  for pid_file in "$run_dir"/*.pid; do
    [ -e "$pid_file" ] || continue
    if grep -qx 'mode=simulated' "$pid_file"; then mode_flag=(--simulate); fi
  done
  case "$code" in
    1) echo "Some part is down. Start what is missing: $(oracle_hint run_multi_nodes.sh "${mode_flag[@]}")" ;;
    3) echo "Start the system: $(oracle_hint run_multi_nodes.sh) [--simulate]" ;;
  esac
fi
exit "$code"
