#!/usr/bin/env bash
# Start the whole oracle: the aggregator (unless one already serves its port), then one node per
# shipped config/oracle-node-<N>.toml (node N, its exchange and node id as that file says:
# binance, coinbase, kraken), each in the background with its own log and PID file.
# With --simulate, also the local exchange simulator, and everything runs on simulated prices.
#
# Usage: scripts/run_multi_nodes.sh [--simulate]      (from any directory)
# Stop:  scripts/stop_nodes.sh [--all]
#
# Environment (optional): ORACLE_AGGREGATOR_PORT (50051), ORACLE_AGGREGATOR_HOST (bind, 127.0.0.1:
# the aggregator does not authenticate submissions yet, so only local nodes by default),
# ORACLE_SIM_PORT (8099), ORACLE_SIM_SEED, ORACLE_NODE_INTERVAL (seconds, passed as --interval),
# ORACLE_RUN_DIR (PID files, <repo>/run), ORACLE_LOG_DIR (logs, <repo>/logs),
# ORACLE_START_TIMEOUT (seconds to wait for a process to answer, 30), ORACLE_NODE_SETTLE (seconds
# a new node must survive to count as started, 2); the aggregator also reads its own
# ORACLE_AGGREGATOR_* variables (e.g. ORACLE_AGGREGATOR_NODE_TIMEOUT).
#
# Exit status: 0 all started; 1 something failed to start; 2 usage; 3 refused (a node for an
# exchange is still running, or the running aggregator is in the other mode, or a port is taken).
set -euo pipefail
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/procs.sh
source "$script_dir/lib/procs.sh"

oracle_simulate_args "$@"
oracle_load_nodes

start_timeout="${ORACLE_START_TIMEOUT:-30}"

# The node-per-exchange rule is checked before anything is started or installed: a refusal must
# leave the running system exactly as it was. The lock (fd 9, closed in every child) keeps two
# concurrent runs from both passing that check.
mkdir -p "$run_dir" "$log_dir"
exec 9>"$run_dir/.run_multi_nodes.lock"
if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
  echo "run_multi_nodes.sh: another run_multi_nodes.sh is starting processes in $run_dir; try again" >&2
  exit 3
fi

refused=()
for entry in "${oracle_nodes[@]}"; do
  read -r index exchange <<<"$entry"
  name="node${index}_${exchange}"
  pidfile_check "$name"
  case "$PIDFILE_STATE" in
    running) refused+=("$exchange: node PID $PIDFILE_PID is still running ($(pidfile_path "$name"))") ;;
    unknown) refused+=("$exchange: $PIDFILE_REASON ($(pidfile_path "$name"))") ;;
    stale)
      echo "==> removing stale PID file $(pidfile_path "$name") ($PIDFILE_REASON)"
      rm -f "$(pidfile_path "$name")"
      ;;
  esac
done
if [ "${#refused[@]}" -gt 0 ]; then
  echo "REFUSED: one node per exchange; a second node would report the same exchange twice:" >&2
  printf '  %s\n' "${refused[@]}" >&2
  echo "Stop the running nodes first: $oracle_root/scripts/stop_nodes.sh" >&2
  exit 3
fi

# shellcheck source=scripts/venv.sh
source "$oracle_root/scripts/venv.sh" ""  # "": not this script's own arguments
bin="$oracle_root/.venv/bin"
cd "$oracle_root"

if [ "$simulate" = 1 ]; then
  echo "=================================================================="
  echo " SIMULATED MODE: prices come from the local exchange simulator,"
  echo " NOT from real exchanges. Never use these prices for anything real."
  echo "=================================================================="
fi

# --- small probes, all through the venv python so nothing else needs to be installed -----------

port_in_use() { # port_in_use HOST PORT: something accepts TCP connections there
  "$VENV_PY" - "$1" "$2" <<'EOF'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
EOF
}

# aggregator_mode: prints "simulated" or "real" when an aggregator answers HealthCheck, else fails.
aggregator_mode() {
  local answer
  answer="$("$VENV_PY" "$oracle_root/scripts/test_aggregator.py" --alive --json --timeout 2 \
    --target "$aggregator_client_host:$aggregator_port" 2>/dev/null)" || return 1
  "$VENV_PY" -c 'import json,sys; print("simulated" if json.loads(sys.argv[1])["simulated"] else "real")' "$answer"
}

# foreign_nodes: one line per exchange whose latest price at the running aggregator came from a
# node these scripts did not start (e.g. one started by hand): starting ours would make it two.
foreign_nodes() {
  local answer
  answer="$("$VENV_PY" "$oracle_root/scripts/test_aggregator.py" --json --timeout 2 \
    --target "$aggregator_client_host:$aggregator_port" 2>/dev/null)" || true
  [ -n "$answer" ] || return 0
  local ours=() index exchange
  for entry in "${oracle_nodes[@]}"; do
    read -r index exchange <<<"$entry"
    ours+=("$exchange=${oracle_node_ids[$index]}")
  done
  "$VENV_PY" - "$answer" "${ours[@]}" <<'EOF'
import json, sys
ours = dict(pair.split("=", 1) for pair in sys.argv[2:])  # exchange -> our node id
for point in json.loads(sys.argv[1]).get("inputs", []):
    nodes = point["node_id"].split(",")
    others = [node for node in nodes if node and node != ours.get(point["source"])]
    if others:
        print(f"{point['source']}: {', '.join(others)} reported {point['minute_utc']}")
EOF
}

# wait_ready NAME PID LOG CHECK...: poll CHECK until it succeeds, the process dies or time runs out.
wait_ready() {
  local name="$1" pid="$2" log="$3" deadline
  shift 3
  deadline=$((SECONDS + start_timeout))
  while ! "$@" >/dev/null 2>&1; do
    if proc_gone "$pid"; then
      echo "ERROR: $name (PID $pid) exited during startup" >&2
      log_tail "$log"
      rm -f "$(pidfile_path "$name")"
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "ERROR: $name (PID $pid) did not answer within ${start_timeout}s (ORACLE_START_TIMEOUT)" >&2
      log_tail "$log"
      echo "It is still running; stop it with: $oracle_root/scripts/stop_nodes.sh --all" >&2
      exit 1
    fi
    sleep 0.3
  done
}

# --- decide: every refusal happens here, before anything is started -----------------------------
sim_url="http://127.0.0.1:$sim_port"
sim_log="$log_dir/simulator.log"
sim_action=none
if [ "$simulate" = 1 ]; then
  pidfile_check simulator
  if [ "$PIDFILE_STATE" = running ]; then
    sim_action=ours
    sim_pid="$PIDFILE_PID"
  elif sim_answers "$sim_port"; then
    sim_action=external
  elif port_in_use 127.0.0.1 "$sim_port"; then
    echo "REFUSED: port $sim_port is in use by something that is not the exchange simulator;" >&2
    echo "  free it or choose another port: ORACLE_SIM_PORT=8199 $0 --simulate" >&2
    exit 3
  else
    sim_action=start
  fi
  [ "$PIDFILE_STATE" = stale ] && rm -f "$(pidfile_path simulator)"
fi

want_mode=real
[ "$simulate" = 1 ] && want_mode=simulated
agg_target="$aggregator_client_host:$aggregator_port"
agg_log="$log_dir/aggregator.log"
pidfile_check aggregator
agg_pid="$PIDFILE_PID"
agg_ours="$PIDFILE_STATE"
[ "$agg_ours" = stale ] && rm -f "$(pidfile_path aggregator)"
if [ "$agg_ours" = running ]; then
  # Ours and alive, maybe still starting: give it the usual time to answer.
  wait_ready aggregator "$agg_pid" "$agg_log" aggregator_mode
fi
if mode="$(aggregator_mode)"; then
  agg_action=reuse
  foreign="$(foreign_nodes)"
  if [ -n "$foreign" ]; then
    echo "WARNING: the running aggregator has fresh prices from nodes these scripts did not start:"
    printf '%s\n' "$foreign" | sed 's/^/  /'
    echo "  If they still run, those exchanges get a second node (the aggregator takes the median);"
    echo "  they are not in $run_dir, so stop them where they were started if that is not intended."
  fi
  if [ "$mode" != "$want_mode" ]; then
    if [ "$mode" = simulated ]; then
      echo "REFUSED: the aggregator on $agg_target runs in SIMULATED mode, but real mode was asked." >&2
      echo "  Real and simulated prices are never mixed: stop it first ($oracle_root/scripts/stop_nodes.sh --all)" >&2
      echo "  or run with --simulate." >&2
    else
      echo "REFUSED: the aggregator on $agg_target runs in REAL mode, but --simulate was asked." >&2
      echo "  Real and simulated prices are never mixed: stop it first ($oracle_root/scripts/stop_nodes.sh --all)" >&2
      echo "  or run without --simulate." >&2
    fi
    exit 3
  fi
elif port_in_use "$aggregator_client_host" "$aggregator_port"; then
  echo "REFUSED: port $aggregator_port is in use by something that does not answer the oracle's HealthCheck;" >&2
  echo "  free it or choose another port: ORACLE_AGGREGATOR_PORT=50052 $0" >&2
  exit 3
else
  agg_action=start
fi

# --- start --------------------------------------------------------------------------------------
summary=()
case "$sim_action" in
  ours)
    wait_ready simulator "$sim_pid" "$sim_log" sim_answers "$sim_port"
    summary+=("simulator   PID $sim_pid (already running)  $sim_url  log $sim_log")
    ;;
  external) summary+=("simulator   (already running, not started by these scripts)  $sim_url") ;;
  start)
    sim_args=(--host 127.0.0.1 --port "$sim_port")
    [ -n "${ORACLE_SIM_SEED:-}" ] && sim_args+=(--seed "$ORACLE_SIM_SEED")
    echo "==> starting the exchange simulator on $sim_url"
    nohup "$bin/exchange-sim" "${sim_args[@]}" >>"$sim_log" 2>&1 </dev/null 9>&- &
    sim_pid=$!
    pidfile_write simulator "$sim_pid"
    wait_ready simulator "$sim_pid" "$sim_log" sim_answers "$sim_port"
    summary+=("simulator   PID $sim_pid  $sim_url  log $sim_log")
    ;;
esac

if [ "$agg_action" = reuse ]; then
  if [ "$agg_ours" = running ]; then
    summary+=("aggregator  PID $agg_pid (already running)  $agg_target  log $agg_log")
  else
    summary+=("aggregator  (already running, not started by these scripts)  $agg_target")
  fi
else
  agg_args=(--host "${ORACLE_AGGREGATOR_HOST:-127.0.0.1}" --port "$aggregator_port" --log-file "$agg_log")
  [ -f "$oracle_root/config/aggregator.toml" ] && agg_args+=(--config "$oracle_root/config/aggregator.toml")
  if [ "$simulate" = 1 ]; then agg_args+=(--simulate); else agg_args+=(--no-simulate); fi
  echo "==> starting the aggregator on port $aggregator_port"
  # An inherited ORACLE_AGGREGATOR_SIMULATE must not turn a real run into a simulated one.
  nohup env -u ORACLE_AGGREGATOR_SIMULATE "$bin/aggregator" "${agg_args[@]}" >>"$agg_log" 2>&1 </dev/null 9>&- &
  agg_pid=$!
  pidfile_write aggregator "$agg_pid"
  wait_ready aggregator "$agg_pid" "$agg_log" aggregator_mode
  mode="$(aggregator_mode)"
  if [ "$mode" != "$want_mode" ]; then
    echo "ERROR: the aggregator started in $mode mode, $want_mode was asked" >&2
    echo "  stop it with: $oracle_root/scripts/stop_nodes.sh --all" >&2
    exit 1
  fi
  summary+=("aggregator  PID $agg_pid  $agg_target  log $agg_log")
fi

# --- nodes --------------------------------------------------------------------------------------
node_pids=()
for entry in "${oracle_nodes[@]}"; do
  read -r index exchange <<<"$entry"
  name="node${index}_${exchange}"
  node_id="${oracle_node_ids[$index]}"
  node_log="$log_dir/$name.log"
  # The exchange and the node id come from the node's config, the table's one source.
  # --run-dir: the node keeps its node-id lock beside the PID files, so a hand-started node with
  # the same id (from the repository root, or with the same ORACLE_RUN_DIR) is refused.
  node_args=(--config "${oracle_node_configs[$index]}" --run-dir "$run_dir"
    --aggregator-url "http://$aggregator_client_host:$aggregator_port" --log-file "$node_log")
  [ -n "${ORACLE_NODE_INTERVAL:-}" ] && node_args+=(--interval "$ORACLE_NODE_INTERVAL")
  if [ "$simulate" = 1 ]; then
    node_args+=(--simulate --api-url "$sim_url")
  else
    node_args+=(--no-simulate)
  fi
  echo "==> starting $exchange node $node_id"
  # The node's config names its exchange and id: an inherited ORACLE_NODE_EXCHANGE or _ID must
  # not turn three nodes into three of one exchange.
  nohup env -u ORACLE_NODE_EXCHANGE -u ORACLE_NODE_ID -u ORACLE_NODE_CONFIG \
    "$bin/oracle-node" "${node_args[@]}" >>"$node_log" 2>&1 </dev/null 9>&- &
  node_pid=$!
  pidfile_write "$name" "$node_pid"
  node_pids+=("$node_pid")
  summary+=("$(printf '%-11s PID %s  node %s  log %s' "$exchange" "$node_pid" "$node_id" "$node_log")")
done

# A node that cannot start (bad config, aggregator refused it) exits at once: say so now rather
# than leave the operator to find a silent gap in the aggregate.
sleep "${ORACLE_NODE_SETTLE:-2}"
failed=0
for i in "${!oracle_nodes[@]}"; do
  read -r index exchange <<<"${oracle_nodes[$i]}"
  name="node${index}_${exchange}"
  if proc_gone "${node_pids[$i]}"; then
    echo "ERROR: the $exchange node (PID ${node_pids[$i]}) exited during startup" >&2
    log_tail "$log_dir/$name.log"
    rm -f "$(pidfile_path "$name")"
    failed=1
  fi
done
if [ "$failed" = 1 ]; then
  echo "Some nodes did not start; the others keep running. Stop them with: $oracle_root/scripts/stop_nodes.sh" >&2
  exit 1
fi

echo
[ "$simulate" = 1 ] && echo "Running (SIMULATED prices):" || echo "Running (real exchanges):"
printf '  %s\n' "${summary[@]}"
echo "  PID files in $run_dir"
echo
echo "Nodes report each closed 1-minute candle just after the minute boundary."
echo "Monitor: python3 $oracle_root/scripts/test_aggregator.py --target $agg_target [--watch 10]"
read -r first_index first_exchange <<<"${oracle_nodes[0]}"
echo "         tail -f $log_dir/node${first_index}_${first_exchange}.log"
echo "Stop:    $oracle_root/scripts/stop_nodes.sh         (the nodes)"
echo "         $oracle_root/scripts/stop_nodes.sh --all   (also the aggregator and the simulator)"
