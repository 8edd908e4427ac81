#!/usr/bin/env bash
# Fetch the newest closed 1-minute candle from each exchange once (`oracle-node --once`) and print
# exchange, minute, close and latency: the quickest check that this machine can reach every venue
# and parse its answer. Nothing is submitted to the aggregator.
#
# Usage: scripts/test_exchanges.sh [--simulate]      (from any directory)
# With --simulate the candles come from the local exchange simulator on ORACLE_SIM_PORT (8099); if
# none answers there, a temporary one is started on a free port and stopped afterwards.
# Exit status: 0 every exchange answered; 1 at least one failed; 2 usage.
set -euo pipefail
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/procs.sh
source "$script_dir/lib/procs.sh"

oracle_simulate_args "$@"
oracle_load_nodes

# shellcheck source=scripts/venv.sh
source "$oracle_root/scripts/venv.sh" ""  # "": not this script's own arguments
bin="$oracle_root/.venv/bin"
cd "$oracle_root"
work="$(mktemp -d)"
temp_sim_pid=""
cleanup() {
  if [ -n "$temp_sim_pid" ] && ! proc_gone "$temp_sim_pid"; then
    kill -TERM "$temp_sim_pid" 2>/dev/null || true
    wait "$temp_sim_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

once_args=(--no-simulate)
if [ "$simulate" = 1 ]; then
  echo "SIMULATED: candles from the local exchange simulator, not from real exchanges"
  port="$sim_port"
  if ! sim_answers "$port"; then
    port="$("$VENV_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$bin/exchange-sim" --host 127.0.0.1 --port "$port" >"$work/simulator.log" 2>&1 </dev/null &
    temp_sim_pid=$!
    echo "(no simulator on port $sim_port: started a temporary one on port $port)"
    deadline=$((SECONDS + ${ORACLE_START_TIMEOUT:-30}))
    until sim_answers "$port"; do
      if proc_gone "$temp_sim_pid" || [ "$SECONDS" -ge "$deadline" ]; then
        echo "ERROR: the temporary exchange simulator on port $port did not come up" >&2
        log_tail "$work/simulator.log"
        exit 1
      fi
      sleep 0.2
    done
  fi
  once_args=(--simulate --api-url "http://127.0.0.1:$port")
fi

print_candle() { # print_candle FILE: one table row from the JSON object `oracle-node --once` printed
  "$VENV_PY" -c '
import json, sys
candle = json.load(open(sys.argv[1]))
exchange, minute, close, quote, latency = (
    candle[key] for key in ("exchange", "minute_utc", "close", "quote", "latency_ms")
)
label = "  SIMULATED" if candle.get("simulated") else ""
print(f"{exchange:<9} {minute:<18} {close:>16} {quote:<5} {latency:>5} ms{label}")
' "$1"
}

# The three fetches run at once: against unreachable venues each one spends its retries (seconds),
# and the operator waits for the slowest, not for the sum.
fetch_pids=()
for entry in "${oracle_nodes[@]}"; do
  read -r index exchange <<<"$entry"
  env -u ORACLE_NODE_EXCHANGE -u ORACLE_NODE_CONFIG \
    "$bin/oracle-node" --config "${oracle_node_configs[$index]}" --node-id "test-exchanges-$exchange" \
    --log-file "$work/$exchange.log" --once "${once_args[@]}" \
    >"$work/$exchange.json" 2>"$work/$exchange.err" </dev/null &
  fetch_pids+=("$!")
done

failed=0
printf '%-9s %-18s %16s %-5s %8s\n' exchange minute close quote latency
for i in "${!oracle_nodes[@]}"; do
  read -r index exchange <<<"${oracle_nodes[$i]}"
  if wait "${fetch_pids[$i]}" && print_candle "$work/$exchange.json"; then
    continue
  fi
  # The node's own one-line reason is on stderr; the log is the fallback if it died silently.
  reason="$(grep -v '^[[:space:]]*$' "$work/$exchange.err" 2>/dev/null | tail -n 1 || true)"
  [ -n "$reason" ] || reason="$(tail -n 1 "$work/$exchange.log" 2>/dev/null || true)"
  printf '%-9s FAILED: %s\n' "$exchange" "${reason:-no output}"
  failed=1
done
exit "$failed"
