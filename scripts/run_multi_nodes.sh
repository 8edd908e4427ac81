#!/usr/bin/env bash
# Start the oracle, or the parts of it that are not running: the aggregator, the committer (signed
# reports, DLC attestations, anchoring PSBTs), the explorer (web page), and one node per shipped
# config/oracle-node-<N>.toml (binance, coinbase, kraken as shipped), each in the background with
# its own log and PID file. With --simulate, also the local exchange simulator, and everything
# runs on SIMULATED prices (the committer on regtest, writing PSBTs to a directory).
#
# Usage: scripts/run_multi_nodes.sh [--simulate] [--only PART[,PART...]]...   (from any directory)
#   PART: simulator, aggregator, committer, explorer, nodes, or an exchange (binance, coinbase,
#   kraken: its node). Without --only: every part. A part already running (its PID file names a
#   live process) is kept, not started twice: "start what is missing" is what this script does
#   to a partly running system.
# Stop:    scripts/stop_nodes.sh [--all | --only PART...]
# Status:  scripts/status.sh          Restart: scripts/restart.sh [--only PART...]
#
# Before anything is started, every part to start has its configuration checked (each program's
# own --check-config, with the very options it will get), the ports checked, and a node id or log
# file used by a process these scripts did not start refused: one bad setting starts nothing.
#
# Signed by default: on first run each node gets a signing key (<state>/keys/node-<id>.key, 0600,
# in a 0700 directory, never printed) and the aggregator an allowlist of them (keys/allowlist.toml).
#
# Environment (optional): ORACLE_AGGREGATOR_PORT (50051), ORACLE_AGGREGATOR_HOST (bind, 127.0.0.1:
# local nodes only by default, although submissions are signed),
# ORACLE_SIM_PORT (8099), ORACLE_SIM_SEED, ORACLE_COMMITTER_PORT (50061),
# ORACLE_COMMITTER_HTTP_PORT (8061), ORACLE_EXPLORER_PORT (8090), ORACLE_AGGREGATOR_METRICS_PORT
# (9150: the aggregator's Prometheus /metrics), ORACLE_NODE_METRICS_BASE_PORT (9160: node N serves
# /metrics and /healthz on this + N; 0: any free port), ORACLE_RUN_DIR (PID files,
# <repo>/run), ORACLE_LOG_DIR (logs, <repo>/logs), ORACLE_STATE_DIR (the processes' working
# directory: databases and keys, <repo>; simulated runs use <state dir>/data/simulated),
# ORACLE_CONFIG_DIR (<repo>/config), ORACLE_START_TIMEOUT (seconds to wait for a part to answer,
# 30), ORACLE_NODE_SETTLE (seconds a new node must survive to count as started, 2). Each program
# also reads its own variables (ORACLE_NODE_INTERVAL, ORACLE_AGGREGATOR_NODE_TIMEOUT, ...).
#
# --check-only: check the configuration of the parts (running or not) as they would be started,
# and exit: 0 valid, 2 not (restart.sh asks this before it stops anything).
#
# Exit status: 0 every part asked for runs; 1 a part failed to start (its log is printed; what did
# start keeps running); 2 usage, or a configuration error (nothing started); 3 refused (nothing
# started): a part in the other mode (real vs simulated), a port or a node id held by something
# else.
set -euo pipefail
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/procs.sh
source "$script_dir/lib/procs.sh"

simulate=0
only=()
check_only=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --simulate) simulate=1 ;;
    --check-only) check_only=1 ;;
    --only)
      [ "$#" -ge 2 ] || { echo "run_multi_nodes.sh: --only needs a part (e.g. --only kraken)" >&2; exit 2; }
      only+=("$2")
      shift
      ;;
    --only=*) only+=("${1#--only=}") ;;
    -h | --help)
      oracle_usage
      exit 0
      ;;
    *)
      echo "run_multi_nodes.sh: unknown argument '$1' (usage: run_multi_nodes.sh [--simulate] [--only PART[,PART...]])" >&2
      exit 2
      ;;
  esac
  shift
done
oracle_load_nodes

want_mode=real
mode_flag=()
if [ "$simulate" = 1 ]; then
  want_mode=simulated
  mode_flag=(--simulate)
fi
bin="$oracle_root/.venv/bin"
explorer_installed=0
[ -x "$bin/oracle-explorer" ] || [ -d "$oracle_root/src/explorer" ] && explorer_installed=1

selected=()
if [ "${#only[@]}" -gt 0 ]; then
  mapfile -t selected < <(oracle_resolve_parts "${only[@]}")
  [ "${#selected[@]}" -gt 0 ] || exit 2 # oracle_resolve_parts said why
  for name in "${selected[@]}"; do
    if [ "$name" = simulator ] && [ "$simulate" = 0 ]; then
      echo "run_multi_nodes.sh: the exchange simulator serves simulated prices only: add --simulate" >&2
      exit 2
    fi
    if [ "$name" = explorer ] && [ "$explorer_installed" = 0 ]; then
      echo "run_multi_nodes.sh: the explorer is not part of this version (no oracle-explorer)" >&2
      exit 2
    fi
  done
else
  [ "$simulate" = 1 ] && selected+=(simulator)
  selected+=(aggregator committer)
  [ "$explorer_installed" = 1 ] && selected+=(explorer)
  selected+=("${oracle_node_names[@]}")
fi

is_selected() {
  local name
  for name in "${selected[@]}"; do [ "$name" = "$1" ] && return 0; done
  return 1
}

start_timeout="${ORACLE_START_TIMEOUT:-30}"
work_dir="$(oracle_work_dir "$want_mode")"
agg_target="$aggregator_client_host:$aggregator_port"
sim_url="http://127.0.0.1:$sim_port"
committer_target="127.0.0.1:$committer_port"
committer_http="http://127.0.0.1:$committer_http_port"
explorer_url="http://127.0.0.1:$explorer_port/"
only_args=()
[ "${#only[@]}" -eq 0 ] || only_args=(--only "$(IFS=,; printf '%s' "${only[*]}")")
run_hint="$(oracle_hint run_multi_nodes.sh "${mode_flag[@]}" "${only_args[@]}")"

# Every refusal is decided before anything is started or installed; the lock (fd 9, closed in
# every child) keeps two concurrent runs from both passing the checks.
mkdir -p "$run_dir" "$log_dir"
exec 9>"$run_dir/.run_multi_nodes.lock"
if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
  echo "run_multi_nodes.sh: another run_multi_nodes.sh is starting processes in $run_dir; try again" >&2
  exit 3
fi

part_log() { printf '%s/%s.log\n' "$log_dir" "$1"; }
part_out() { printf '%s/%s.out\n' "$log_dir" "$1"; } # stdout/stderr: startup errors, tracebacks

# part_command NAME: sets `cmd`, the command line that starts NAME (and, with --check-config
# appended, checks its configuration: the same options, so the check is of what will run).
part_command() {
  local name="$1" index config
  case "$name" in
    simulator)
      cmd=("$bin/exchange-sim" --host 127.0.0.1 --port "$sim_port" --log-file "$(part_log simulator)")
      if [ -n "${ORACLE_SIM_SEED:-}" ]; then cmd+=(--seed "$ORACLE_SIM_SEED"); fi
      ;;
    aggregator)
      # An inherited ORACLE_AGGREGATOR_SIMULATE must not turn a real run into a simulated one.
      cmd=(env -u ORACLE_AGGREGATOR_SIMULATE "$bin/aggregator" --host "${ORACLE_AGGREGATOR_HOST:-127.0.0.1}"
        --port "$aggregator_port" --log-file "$(part_log aggregator)"
        --metrics-port "$aggregator_metrics_port" --allowlist "$allowlist_file")
      if [ -f "$config_dir/aggregator.toml" ]; then cmd+=(--config "$config_dir/aggregator.toml"); fi
      if [ "$simulate" = 1 ]; then cmd+=(--simulate); else cmd+=(--no-simulate); fi
      ;;
    committer)
      cmd=(env -u ORACLE_COMMITTER_RUN_SIMULATE "$bin/committer" run --aggregator "$agg_target"
        --host 127.0.0.1 --port "$committer_port" --http-port "$committer_http_port"
        --log-file "$(part_log committer)")
      if [ -f "$config_dir/committer.toml" ]; then cmd+=(--config "$config_dir/committer.toml"); fi
      if [ "$simulate" = 1 ]; then cmd+=(--simulate); else cmd+=(--no-simulate); fi
      ;;
    explorer)
      cmd=("$bin/oracle-explorer" --host 127.0.0.1 --port "$explorer_port" --aggregator "$agg_target"
        --committer "$committer_target" --log-file "$(part_log explorer)")
      if [ -f "$config_dir/explorer.toml" ]; then cmd+=(--config "$config_dir/explorer.toml"); fi
      ;;
    node*)
      index="$(oracle_node_index "$name")"
      config="${oracle_node_configs[$index]}"
      # The exchange and the node id come from the node's config, the table's one source: an
      # inherited ORACLE_NODE_EXCHANGE or _ID must not turn three nodes into three of one exchange.
      # --run-dir: the node keeps its node-id lock beside the PID files, so a hand-started node
      # with the same id (from the repository root, or with the same ORACLE_RUN_DIR) is refused.
      cmd=(env -u ORACLE_NODE_EXCHANGE -u ORACLE_NODE_ID -u ORACLE_NODE_CONFIG "$bin/oracle-node"
        --config "$config" --run-dir "$run_dir" --aggregator-url "http://$agg_target"
        --log-file "$(part_log "$name")" --metrics-port "$(node_metrics_port "$index")"
        --key-file "$(node_key_file "$index")")
      if [ "$simulate" = 1 ]; then cmd+=(--simulate --api-url "$sim_url"); else cmd+=(--no-simulate); fi
      ;;
  esac
  return 0
}

# The nodes' signing keys and the aggregator's allowlist of them, under the work directory's
# keys/ (0700), so the system runs signed by default. Keys are made once (0600, never overwritten,
# never printed); the allowlist is written when missing or when a key was just made (a running
# aggregator is then named, with the SIGHUP that reloads it).
node_keys_dir="$work_dir/keys"
allowlist_file="$node_keys_dir/allowlist.toml"
node_key_file() { printf '%s/node-%s.key\n' "$node_keys_dir" "${oracle_node_ids[$1]}"; }

ensure_node_keys() {
  local entry index exchange key out created=0 entries=""
  mkdir -p "$node_keys_dir"
  chmod 700 "$node_keys_dir"
  for entry in "${oracle_nodes[@]}"; do
    read -r index exchange <<<"$entry"
    key="$(node_key_file "$index")"
    if [ ! -e "$key" ]; then
      # Its output is the public key and an entry, never the secret; kept out of the logs anyway.
      if ! out="$("$bin/oracle-node" keygen --out "$key" 2>&1 </dev/null 9>&-)"; then
        echo "ERROR: oracle-node keygen failed for ${oracle_node_ids[$index]}: $out" >&2
        return 1
      fi
      echo "==> signing key created for node ${oracle_node_ids[$index]}: $key (mode 0600)"
      created=1
    fi
  done
  [ "$created" = 1 ] || [ ! -e "$allowlist_file" ] || return 0
  for entry in "${oracle_nodes[@]}"; do
    read -r index exchange <<<"$entry"
    if ! out="$("$bin/oracle-node" pubkey --key-file "$(node_key_file "$index")" \
      --node-id "${oracle_node_ids[$index]}" --exchange "$exchange" 2>&1 </dev/null 9>&-)"; then
      echo "ERROR: $out" >&2
      return 1
    fi
    entries+="$out"$'\n\n'
  done
  {
    echo "# The nodes run_multi_nodes.sh starts, with their keys in this directory. Written when a"
    echo "# key is made (edits are then lost); for other nodes use your own --allowlist file."
    echo
    printf '%s' "$entries"
  } >"$allowlist_file.tmp"
  chmod 644 "$allowlist_file.tmp"
  mv "$allowlist_file.tmp" "$allowlist_file"
  echo "==> aggregator allowlist written: $allowlist_file (${#oracle_nodes[@]} nodes)"
  pidfile_check aggregator
  if [ "$PIDFILE_STATE" = running ] && [ "$(pidfile_field aggregator mode)" = "$want_mode" ]; then
    # Not signalled from here: a process of an older version may not handle SIGHUP (and die).
    echo "==> the running aggregator (PID $PIDFILE_PID) still has the old allowlist: kill -HUP $PIDFILE_PID reloads it"
  fi
  return 0
}

# check_configs PART...: each program's own --check-config, with the options it will be started
# with, all at once; prints every failure and returns 1 when any.
check_configs() {
  local checks name file i names=() check_pids=() bad=()
  mkdir -p "$work_dir"
  checks="$(mktemp -d)"
  for name in "$@"; do
    part_command "$name"
    (cd "$work_dir" && exec "${cmd[@]}" --check-config) >"$checks/$name" 2>&1 </dev/null 9>&- &
    check_pids+=("$!")
    names+=("$name")
    if [ "$name" = committer ] && [ -f "$config_dir/committer.toml" ]; then
      # `committer keygen` reads the file alone (no options): it must be valid on its own too.
      names+=("committer (its file alone, as keygen reads it)")
      (cd "$work_dir" && exec "$bin/committer" run --config "$config_dir/committer.toml" \
        --check-config) >"$checks/committer-file" 2>&1 </dev/null 9>&- &
      check_pids+=("$!")
    fi
  done
  for i in "${!check_pids[@]}"; do
    wait "${check_pids[$i]}" && continue
    if grep -q "No such option: --check-config" "$checks/${names[$i]%% *}"; then
      # A program of a version without the flag: it checks its settings when it starts.
      echo "WARNING: ${names[$i]} cannot check its configuration beforehand (no --check-config)" >&2
      continue
    fi
    bad+=("${names[$i]}")
  done
  for name in "${bad[@]}"; do
    file="$checks/$name"
    [ "${name%% *}" = "$name" ] || file="$checks/${name%% *}-file"
    grep -v '^[[:space:]]*$' "$file" | sed "s/^/  $name: /" >&2
  done
  rm -rf "$checks"
  [ "${#bad[@]}" -eq 0 ]
}
part_endpoint() {
  case "$1" in
    simulator) printf '%s\n' "$sim_url" ;;
    aggregator) printf '%s\n' "$agg_target" ;;
    committer) printf '%s\n' "$committer_target" ;;
    explorer) printf '%s\n' "$explorer_url" ;;
    *) printf '\n' ;;
  esac
}

part_ports() {
  case "$1" in
    simulator) printf '%s\n' "$sim_port" ;;
    aggregator) printf '%s\n' "$aggregator_port" ;;
    committer) printf '%s\n%s\n' "$committer_port" "$committer_http_port" ;;
    explorer) printf '%s\n' "$explorer_port" ;;
  esac
}

label() { printf '%-10s' "${1#node[0-9]*_}"; }

port_variable() {
  case "$1" in
    simulator) echo ORACLE_SIM_PORT ;;
    aggregator) echo ORACLE_AGGREGATOR_PORT ;;
    committer) echo ORACLE_COMMITTER_PORT/ORACLE_COMMITTER_HTTP_PORT ;;
    explorer) echo ORACLE_EXPLORER_PORT ;;
  esac
}


# --- what runs now ------------------------------------------------------------------------------
refused=()
keep=()
external=()
to_start=()
# One system, one mode: a part of ours running in the other mode refuses the run, asked for or not.
other_mode=()
mode_refused=0
while read -r name; do
  pidfile_check "$name"
  recorded="$(pidfile_field "$name" mode)"
  if [ "$PIDFILE_STATE" = running ] && [ -n "$recorded" ] && [ "$recorded" != "$want_mode" ]; then
    other_mode+=("$name (PID $PIDFILE_PID)")
  fi
done < <(oracle_all_parts)
if [ "${#other_mode[@]}" -gt 0 ]; then
  mode_refused=1
  if [ "$simulate" = 1 ]; then
    refused+=("these parts run in REAL mode, but --simulate was asked: ${other_mode[*]}")
  else
    refused+=("these parts run in SIMULATED mode, but real mode was asked: ${other_mode[*]}")
  fi
fi
for name in "${selected[@]}"; do
  pidfile_check "$name"
  case "$PIDFILE_STATE" in
    running)
      recorded="$(pidfile_field "$name" mode)"
      [ -n "$recorded" ] && [ "$recorded" != "$want_mode" ] || keep+=("$name")
      ;;
    unknown) refused+=("$name: $PIDFILE_REASON ($(pidfile_path "$name"))") ;;
    stale)
      echo "==> $name: removing stale PID file $(pidfile_path "$name") ($PIDFILE_REASON)"
      rm -f "$(pidfile_path "$name")"
      to_start+=("$name")
      ;;
    none) to_start+=("$name") ;;
  esac
done

# shellcheck source=scripts/venv.sh
source "$oracle_root/scripts/venv.sh" "" # "": not this script's own arguments
cd "$oracle_root"

if ! ensure_node_keys; then
  echo "REFUSED, nothing was started: the nodes' keys could not be made." >&2
  exit 2
fi

if [ "$check_only" = 1 ]; then
  if ! check_configs "${selected[@]}"; then
    echo "REFUSED: the configuration above is not valid; nothing was changed." >&2
    exit 2
  fi
  echo "configuration OK: ${selected[*]}"
  exit 0
fi

if [ "$simulate" = 1 ]; then
  echo "=================================================================="
  echo " SIMULATED MODE: prices come from the local exchange simulator,"
  echo " NOT from real exchanges. Never use these prices for anything real."
  echo "=================================================================="
fi

# --- small probes, all through the venv python so nothing else needs to be installed -----------

probe() { # probe KIND ENDPOINT: the part answers there (its answer as JSON on stdout)
  "$VENV_PY" "$oracle_root/scripts/lib/status.py" --probe "$1" "$2"
}

# aggregator_mode: prints "simulated" or "real" when an aggregator answers HealthCheck, else fails.
aggregator_mode() {
  local answer
  answer="$("$VENV_PY" "$oracle_root/scripts/test_aggregator.py" --alive --json --timeout 2 \
    --target "$agg_target" 2>/dev/null)" || return 1
  "$VENV_PY" -c 'import json,sys; print("simulated" if json.loads(sys.argv[1])["simulated"] else "real")' "$answer"
}

# committer_mode: "simulated" or "real" when a committer answers on its gRPC port, else fails.
committer_mode() {
  local answer
  answer="$(probe committer "$committer_target" 2>/dev/null)" || return 1
  "$VENV_PY" -c 'import json,sys; print("simulated" if json.loads(sys.argv[1])["simulated"] else "real")' "$answer"
}

# foreign_nodes: one line per exchange whose latest price at the running aggregator came from a
# node these scripts did not start (e.g. one started by hand): starting ours would make it two.
foreign_nodes() {
  local answer
  answer="$("$VENV_PY" "$oracle_root/scripts/test_aggregator.py" --json --timeout 2 \
    --target "$agg_target" 2>/dev/null)" || true
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

# held_ports NAME: one "port P is held by pid N (command)" line per port of NAME that is taken.
held_ports() {
  local ports
  mapfile -t ports < <(part_ports "$1")
  [ "${#ports[@]}" -gt 0 ] || return 0
  port_holders "${ports[@]}" | while IFS=$'\t' read -r port holder; do
    printf 'port %s is held by %s\n' "$port" "$holder"
  done
}

# --- decide the parts to start: every refusal happens here, before anything is started ----------
agg_mode=""
for name in "${keep[@]}"; do
  if [ "$name" = aggregator ]; then
    pidfile_check aggregator
    # Ours and alive, maybe still starting: give it the usual time to answer.
    deadline=$((SECONDS + start_timeout))
    until agg_mode="$(aggregator_mode)" || [ "$SECONDS" -ge "$deadline" ] || proc_gone "$PIDFILE_PID"; do
      sleep 0.3
    done
  fi
done
# Whatever is started talks to the aggregator: it must be in the asked mode, ours or not.
[ -n "$agg_mode" ] || agg_mode="$(aggregator_mode)" || agg_mode=""

start=()
for name in "${to_start[@]}"; do
  case "$name" in
    simulator)
      if sim_answers "$sim_port"; then
        external+=("simulator")
        continue
      fi
      ;;
    aggregator)
      if [ -n "$agg_mode" ]; then
        external+=("aggregator")
        continue
      fi
      ;;
    committer)
      if mode="$(committer_mode)"; then
        if [ "$mode" != "$want_mode" ]; then
          refused+=("the committer on $committer_target (not started by these scripts) runs in $mode mode, $want_mode was asked")
          mode_refused=1
        fi
        external+=("committer")
        continue
      fi
      ;;
    explorer)
      if probe explorer "$explorer_url" >/dev/null 2>&1; then
        external+=("explorer")
        continue
      fi
      ;;
  esac
  while IFS= read -r held; do
    [ -n "$held" ] && refused+=("$name: $held (not started by these scripts); free it or choose another port (e.g. $(port_variable "$name")=...)")
  done < <(held_ports "$name" 2>/dev/null || true)
  locks=("$(part_log "$name").lock")
  if [[ "$name" == node* ]]; then
    locks+=("$run_dir/node-${oracle_node_ids[$(oracle_node_index "$name")]}.lock")
  fi
  while IFS=$'\t' read -r lock holder; do
    [ -n "$lock" ] || continue
    case "$lock" in
      *.log.lock) refused+=("$name: its log file ${lock%.lock} is written by $holder, not started by these scripts") ;;
      *) refused+=("$name: node id ${oracle_node_ids[$(oracle_node_index "$name")]} is used by $holder, not started by these scripts (lock $lock)") ;;
    esac
  done < <(lock_holders "${locks[@]}")
  start+=("$name")
done

if [ -n "$agg_mode" ] && [ "$agg_mode" != "$want_mode" ] && [ "${#other_mode[@]}" -eq 0 ]; then
  mode_refused=1
  if [ "$agg_mode" = simulated ]; then
    refused+=("the aggregator on $agg_target runs in SIMULATED mode, but real mode was asked")
  else
    refused+=("the aggregator on $agg_target runs in REAL mode, but --simulate was asked")
  fi
fi
if [ "${#refused[@]}" -gt 0 ]; then
  echo "REFUSED, nothing was started:" >&2
  printf '  %s\n' "${refused[@]}" >&2
  echo "  See what runs: $(oracle_hint status.sh)" >&2
  if [ "$mode_refused" = 1 ]; then
    other_flag=(--simulate)
    [ "$simulate" = 1 ] && other_flag=()
    echo "  Real and simulated prices are never mixed. Stop that system: $(oracle_hint stop_nodes.sh --all)" >&2
    echo "  or keep it and start what is missing in its mode: $(oracle_hint run_multi_nodes.sh "${other_flag[@]}" "${only_args[@]}")" >&2
  else
    echo "  A process these scripts did not start holds what the part needs: stop it where it was" >&2
    echo "  started, or give this system other ports (the variables above), then: $run_hint" >&2
  fi
  exit 3
fi

starts_nodes=0
for name in "${start[@]}"; do [[ "$name" == node* ]] && starts_nodes=1; done
if [ -n "$agg_mode" ] && [ "$starts_nodes" = 1 ]; then
  foreign="$(foreign_nodes)"
  if [ -n "$foreign" ]; then
    echo "WARNING: the running aggregator has fresh prices from nodes these scripts did not start:"
    printf '%s\n' "$foreign" | sed 's/^/  /'
    echo "  If they still run, those exchanges get a second node (the aggregator takes the median);"
    echo "  they are not in $run_dir, so stop them where they were started if that is not intended."
  fi
fi

# --- check every configuration before starting anything ------------------------------------------
if [ "${#start[@]}" -gt 0 ] && ! check_configs "${start[@]}"; then
  echo "REFUSED, nothing was started: the configuration above is not valid." >&2
  echo "  Fix it, then start again: $run_hint" >&2
  exit 2
fi

# --- start --------------------------------------------------------------------------------------
# launch NAME: start NAME in the background in the work directory and record its PID file.
launch() {
  local name="$1" extra=()
  part_command "$name"
  extra=("mode=$want_mode" "log=$(part_log "$name")" "out=$(part_out "$name")"
    "endpoint=$(part_endpoint "$name")")
  case "$name" in
    committer) extra+=("http=$committer_http/v1/oracle") ;;
    aggregator) extra+=("metrics=$(metrics_url "$aggregator_metrics_port")") ;;
    node*)
      extra+=("config=${oracle_node_configs[$(oracle_node_index "$name")]}")
      extra+=("metrics=$(metrics_url "$(node_metrics_port "$(oracle_node_index "$name")")")")
      if [ -n "${ORACLE_NODE_INTERVAL:-}" ]; then extra+=("interval=$ORACLE_NODE_INTERVAL"); fi
      ;;
  esac
  (cd "$work_dir" && exec nohup "${cmd[@]}") >>"$(part_out "$name")" 2>&1 </dev/null 9>&- &
  launched_pid=$!
  pidfile_write "$name" "$launched_pid" "${extra[@]}"
}

# failed_start NAME PID WHY: report a part that did not come up, with its log and output.
failed_start() {
  echo "ERROR: $1 (PID $2) $3" >&2
  log_tail "$(part_out "$1")"
  if [ -s "$(part_log "$1")" ]; then log_tail "$(part_log "$1")"; fi
}

# wait_ready NAME PID CHECK...: poll CHECK until it succeeds (0), the process dies or time runs out.
wait_ready() {
  local name="$1" pid="$2" deadline
  shift 2
  deadline=$((SECONDS + start_timeout))
  while ! "$@" >/dev/null 2>&1; do
    if proc_gone "$pid"; then
      failed_start "$name" "$pid" "exited during startup"
      rm -f "$(pidfile_path "$name")"
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      failed_start "$name" "$pid" "did not answer within ${start_timeout}s (ORACLE_START_TIMEOUT)"
      echo "It is still running; stop it with: $(oracle_hint stop_nodes.sh --only "$name")" >&2
      return 1
    fi
    sleep 0.3
  done
}

summary=()
failed=()
pids=()
describe() { # describe NAME PID: the summary line of a started or kept part
  local name="$1" pid="$2" text
  text="$(label "$name") PID $pid"
  case "$name" in
    simulator) text+="  $sim_url" ;;
    aggregator) text+="  gRPC $agg_target  metrics $(part_metrics "$name")" ;;
    committer) text+="  gRPC $committer_target  HTTP $committer_http/v1/oracle" ;;
    explorer) text+="  $explorer_url" ;;
    node*) text+="  node ${oracle_node_ids[$(oracle_node_index "$name")]}  metrics $(part_metrics "$name")" ;;
  esac
  printf '%s  log %s\n' "$text" "$(part_log "$name")"
}
part_metrics() { # part_metrics NAME: its metrics endpoint, as recorded when it was started
  local url
  url="$(pidfile_field "$1" metrics)"
  if [ -n "$url" ]; then printf '%s/metrics\n' "$url"; else printf '(a free port: see its log)\n'; fi
}
for name in "${keep[@]}"; do
  pidfile_check "$name"
  summary+=("$(describe "$name" "$PIDFILE_PID") (already running)")
done
for name in "${external[@]}"; do
  summary+=("$(label "$name") (already running, not started by these scripts)  $(part_endpoint "$name")")
done

started_nodes=()
for name in "${start[@]}"; do
  case "$name" in
    simulator)
      echo "==> starting the exchange simulator on $sim_url"
      launch simulator
      wait_ready simulator "$launched_pid" sim_answers "$sim_port" || exit 1
      ;;
    aggregator)
      echo "==> starting the aggregator on port $aggregator_port"
      launch aggregator
      wait_ready aggregator "$launched_pid" aggregator_mode || {
        echo "Nothing after the aggregator was started. Fix it, then: $run_hint" >&2
        exit 1
      }
      mode="$(aggregator_mode)"
      if [ "$mode" != "$want_mode" ]; then
        echo "ERROR: the aggregator started in $mode mode, $want_mode was asked" >&2
        echo "  stop it with: $(oracle_hint stop_nodes.sh --only aggregator)" >&2
        exit 1
      fi
      ;;
    committer)
      # Its keys, made once (0600; never overwritten): the oracle key, the DLC nonce seed, the
      # anchor key, under the work directory's keys/ as config/committer.toml names them.
      keygen=("$bin/committer" keygen)
      [ -f "$config_dir/committer.toml" ] && keygen+=(--config "$config_dir/committer.toml")
      if ! created="$(cd "$work_dir" && "${keygen[@]}" 2>&1 </dev/null 9>&-)"; then
        echo "ERROR: committer keygen failed: $created" >&2
        failed+=(committer)
        continue
      fi
      if grep -q '^created' <<<"$created"; then
        echo "==> committer keys created in $work_dir (mode 0600; back them up):"
        sed 's/^/    /' <<<"$created"
      fi
      echo "==> starting the committer on $committer_target (HTTP $committer_http)"
      launch committer
      ;;
    explorer)
      echo "==> starting the explorer on $explorer_url"
      launch explorer
      ;;
    node*)
      index="$(oracle_node_index "$name")"
      echo "==> starting ${name#node[0-9]*_} node ${oracle_node_ids[$index]}"
      launch "$name"
      started_nodes+=("$name")
      ;;
  esac
  pids+=("$name=$launched_pid")
done
nodes_launched_at=$SECONDS

pid_of() { # the PID this run started NAME with
  local entry
  for entry in "${pids[@]}"; do
    if [ "${entry%%=*}" = "$1" ]; then printf '%s\n' "${entry#*=}"; fi
  done
  return 0
}
for name in committer explorer; do
  pid="$(pid_of "$name")"
  [ -n "$pid" ] || continue
  if [ "$name" = committer ]; then
    wait_ready committer "$pid" probe committer "$committer_target" || failed+=(committer)
  else
    wait_ready explorer "$pid" probe explorer "$explorer_url" || failed+=(explorer)
  fi
done

# A node that cannot start (the aggregator refused it, a lock taken meanwhile) exits at once: say
# so now rather than leave the operator to find a silent gap in the aggregate.
if [ "${#started_nodes[@]}" -gt 0 ]; then
  settle="${ORACLE_NODE_SETTLE:-2}"
  remaining=$((nodes_launched_at + ${settle%.*} - SECONDS))
  [ "$remaining" -le 0 ] || sleep "$remaining"
  for name in "${started_nodes[@]}"; do
    pid="$(pid_of "$name")"
    if proc_gone "$pid"; then
      failed_start "$name" "$pid" "exited during startup"
      rm -f "$(pidfile_path "$name")"
      failed+=("$name")
    fi
  done
fi

for name in "${start[@]}"; do
  pid="$(pid_of "$name")"
  [ -n "$pid" ] || continue
  for bad in "${failed[@]}"; do [ "$bad" = "$name" ] && continue 2; done
  summary+=("$(describe "$name" "$pid")")
done

echo
[ "$simulate" = 1 ] && echo "Running (SIMULATED prices):" || echo "Running (real exchanges):"
[ "${#summary[@]}" -eq 0 ] || printf '  %s\n' "${summary[@]}"
if [ "${#start[@]}" -eq 0 ] && [ "${#failed[@]}" -eq 0 ]; then
  echo "  (everything asked for was already running: nothing started)"
fi
echo "  PID files in $run_dir, working directory $work_dir"
if ! is_selected aggregator && [ -z "$agg_mode" ]; then
  echo "WARNING: no aggregator answers on $agg_target: nodes keep their observations until one does."
  echo "  Start it: $(oracle_hint run_multi_nodes.sh "${mode_flag[@]}" --only aggregator)"
fi
if [ "$simulate" = 1 ] && ! is_selected simulator && ! sim_answers "$sim_port"; then
  echo "WARNING: no exchange simulator answers on $sim_url: simulated nodes cannot fetch."
  echo "  Start it: $(oracle_hint run_multi_nodes.sh --simulate --only simulator)"
fi
if [ "${#failed[@]}" -gt 0 ]; then
  echo >&2
  echo "Did not start: ${failed[*]}; the others keep running." >&2
  echo "Fix the cause above, then start what is missing: $run_hint" >&2
  echo "or stop everything: $(oracle_hint stop_nodes.sh --all)" >&2
  exit 1
fi
echo
echo "Nodes report each closed 1-minute candle just after the minute boundary."
if is_selected explorer || [ "$(pidfile_field explorer endpoint)" != "" ]; then
  echo "Explorer: $explorer_url"
fi
if is_selected aggregator || [ -n "$(pidfile_field aggregator metrics)" ]; then
  echo "Metrics:  aggregator $(part_metrics aggregator)   (Prometheus; the nodes': above, each with /healthz)"
fi
echo "Status:   $(oracle_hint status.sh)"
echo "Monitor:  python3 $oracle_root/scripts/test_aggregator.py --target $agg_target [--watch 10]"
echo "          tail -f $(part_log "${oracle_node_names[0]}")"
echo "Restart:  $(oracle_hint restart.sh --only "${oracle_nodes[0]#* }")   (one part; any of: simulator aggregator committer explorer nodes <exchange>)"
echo "Stop:     $(oracle_hint stop_nodes.sh)         (the nodes)"
echo "          $(oracle_hint stop_nodes.sh --all)   (everything)"
