#!/usr/bin/env bash
# Sourced by run_multi_nodes.sh, stop_nodes.sh and test_exchanges.sh: where the oracle's processes
# keep their PID files and logs, and when a PID file may be trusted; also the --help and --simulate
# handling and the simulator probe those scripts share.
#
# A PID file holds two lines: the PID and that process's start time (field 22 of /proc/PID/stat,
# in clock ticks since boot; read directly, so nothing depends on `ps` being installed). The start
# time is what makes "stop exactly what we started" safe: after a crash or a reboot the PID may
# belong to an unrelated process, and a file whose start time does not match is stale, never a
# reason to send a signal. Whether a process has exited is asked of `kill -0`, so a start time that
# cannot be read never makes a live process look dead (and its PID file disappear). Nothing here
# ever looks a process up by its name.
#
# A PID file may hold more lines after those two, `key=value` each, recording how the part was
# started (mode=simulated|real, endpoint, log, ...): `scripts/status.sh` and `restart.sh` read them,
# so what they show is what was started, not what the environment says today.
#
# The parts: simulator, aggregator, committer, explorer and one node per config/oracle-node-<N>.toml
# (named node<N>_<exchange>; `--only` also takes the exchange's name, or `nodes` for all of them).
#
# Environment (all optional): ORACLE_RUN_DIR (PID files, default <repo>/run), ORACLE_LOG_DIR
# (logs, default <repo>/logs), ORACLE_STATE_DIR (working directory of the started processes, where
# their configs' relative data/ and keys/ paths resolve: default <repo>; simulated runs use
# <state dir>/data/simulated, so simulated databases and keys never mix with real ones),
# ORACLE_CONFIG_DIR (the configs, default <repo>/config), ORACLE_AGGREGATOR_PORT (50051),
# ORACLE_SIM_PORT (8099), ORACLE_COMMITTER_PORT (50061), ORACLE_COMMITTER_HTTP_PORT (8061),
# ORACLE_EXPLORER_PORT (8090).

oracle_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Relative directories given by the caller are relative to the caller's directory, not the repo.
oracle_abs_dir() {
  case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$PWD" "$1" ;;
  esac
}

run_dir="$(oracle_abs_dir "${ORACLE_RUN_DIR:-$oracle_root/run}")"
log_dir="$(oracle_abs_dir "${ORACLE_LOG_DIR:-$oracle_root/logs}")"
state_dir="$(oracle_abs_dir "${ORACLE_STATE_DIR:-$oracle_root}")"
config_dir="$(oracle_abs_dir "${ORACLE_CONFIG_DIR:-$oracle_root/config}")"
aggregator_port="${ORACLE_AGGREGATOR_PORT:-50051}"
sim_port="${ORACLE_SIM_PORT:-8099}"
committer_port="${ORACLE_COMMITTER_PORT:-50061}"
committer_http_port="${ORACLE_COMMITTER_HTTP_PORT:-8061}"
explorer_port="${ORACLE_EXPLORER_PORT:-8090}"
# Prometheus endpoints (127.0.0.1): the aggregator's, and node N's at the base port + N (9161,
# 9162, 9163 for the shipped nodes); a base of 0 gives every node any free port (its log says which).
aggregator_metrics_port="${ORACLE_AGGREGATOR_METRICS_PORT:-9150}"
node_metrics_base_port="${ORACLE_NODE_METRICS_BASE_PORT:-9160}"

# node_metrics_port N: the metrics (and /healthz) port node N is started with.
node_metrics_port() {
  if [ "$node_metrics_base_port" = 0 ]; then echo 0; else echo $((node_metrics_base_port + $1)); fi
}

# metrics_url PORT: where a metrics endpoint on PORT answers ("" for 0: a port chosen at start).
metrics_url() {
  if [ "$1" = 0 ]; then echo ""; else echo "http://127.0.0.1:$1"; fi
}

# oracle_work_dir MODE: where a part of that mode (simulated or real) runs.
oracle_work_dir() {
  if [ "$1" = simulated ]; then
    printf '%s/data/simulated\n' "$state_dir"
  else
    printf '%s\n' "$state_dir"
  fi
}

# Every variable the scripts read that decides which system they act on. A hint printed for the
# operator to copy carries the ones that are set (directories made absolute), or the copied
# command would act on another system (e.g. the default run/ instead of ORACLE_RUN_DIR's).
oracle_env_vars=(ORACLE_RUN_DIR ORACLE_LOG_DIR ORACLE_STATE_DIR ORACLE_CONFIG_DIR
  ORACLE_AGGREGATOR_HOST ORACLE_AGGREGATOR_PORT ORACLE_SIM_PORT ORACLE_SIM_SEED
  ORACLE_COMMITTER_PORT ORACLE_COMMITTER_HTTP_PORT ORACLE_EXPLORER_PORT
  ORACLE_AGGREGATOR_METRICS_PORT ORACLE_NODE_METRICS_BASE_PORT)

# oracle_hint SCRIPT [ARGS...]: the command line that runs scripts/SCRIPT in this environment.
oracle_hint() {
  local words=() var value
  for var in "${oracle_env_vars[@]}"; do
    value="${!var:-}"
    [ -n "$value" ] || continue
    case "$var" in
      ORACLE_RUN_DIR) value="$run_dir" ;;
      ORACLE_LOG_DIR) value="$log_dir" ;;
      ORACLE_STATE_DIR) value="$state_dir" ;;
      ORACLE_CONFIG_DIR) value="$config_dir" ;;
    esac
    words+=("$var=$(printf '%q' "$value")")
  done
  words+=("$oracle_root/scripts/$1")
  shift
  local arg
  for arg in "$@"; do words+=("$(printf '%q' "$arg")"); done
  printf '%s\n' "${words[*]}"
}

# The aggregator binds ORACLE_AGGREGATOR_HOST (default 0.0.0.0); clients on this machine reach a
# wildcard bind over loopback.
case "${ORACLE_AGGREGATOR_HOST:-0.0.0.0}" in
  0.0.0.0 | "::" | "[::]" | "") aggregator_client_host=127.0.0.1 ;;
  *) aggregator_client_host="$ORACLE_AGGREGATOR_HOST" ;;
esac

# oracle_python: a python (3.11+, for tomllib) to run the scripts' small helpers with: the venv's
# when there is one, else python3 from PATH. Fails, saying so, when neither will do.
oracle_python() {
  local candidate
  for candidate in "${VENV_PY:-}" "$oracle_root/.venv/bin/python" "$(command -v python3 2>/dev/null || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import tomllib' 2>/dev/null; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  echo "$(basename "$0"): needs Python 3.11 or later (python3 on PATH, or $oracle_root/.venv)" >&2
  return 1
}

# oracle_load_nodes: the node table, from the one place it is declared, the shipped per-node
# configs (config/oracle-node-<N>.toml: [oracle] exchange and node_id; scripts/lib/node_table.py
# reads them). Sets oracle_nodes ("<N> <exchange>" per node, in node order; node N is named
# node<N>_<exchange> in run/ and logs/), oracle_node_ids[N] and oracle_node_configs[N].
# Exits 2 when the configs do not make a table of one node per exchange.
oracle_nodes=()
oracle_node_ids=()
oracle_node_configs=()
oracle_node_names=()
oracle_load_nodes() {
  local python table index exchange node_id config
  python="$(oracle_python)" || exit 2
  table="$("$python" "$oracle_root/scripts/lib/node_table.py" "$config_dir")" || exit 2
  oracle_nodes=()
  oracle_node_names=()
  while read -r index exchange node_id config; do
    oracle_nodes+=("$index $exchange")
    oracle_node_ids[$index]="$node_id"
    oracle_node_configs[$index]="$config"
    oracle_node_names+=("node${index}_${exchange}")
  done <<<"$table"
}

# Every part, in start order (the node table must be loaded).
oracle_all_parts() {
  printf '%s\n' simulator aggregator committer explorer "${oracle_node_names[@]}"
}

# oracle_resolve_parts SPEC...: the part names SPEC (comma lists allowed) stands for, one per line,
# in start order and each once. A part (`aggregator`), an exchange (`kraken`: its node), a node
# name (`node3_kraken`) or id (`oracle-node-3`), or `nodes`. Exits 2 on an unknown name.
oracle_resolve_parts() {
  local spec word name wanted=() index exchange found
  for spec in "$@"; do
    for word in ${spec//,/ }; do
      found=0
      case "$word" in
        simulator | aggregator | committer | explorer)
          wanted+=("$word")
          found=1
          ;;
        nodes)
          wanted+=("${oracle_node_names[@]}")
          found=1
          ;;
      esac
      for entry in "${oracle_nodes[@]}"; do
        read -r index exchange <<<"$entry"
        if [ "$word" = "$exchange" ] || [ "$word" = "node${index}_${exchange}" ] ||
          [ "$word" = "${oracle_node_ids[$index]}" ]; then
          wanted+=("node${index}_${exchange}")
          found=1
        fi
      done
      if [ "$found" = 0 ]; then
        local exchanges=()
        for entry in "${oracle_nodes[@]}"; do
          read -r index exchange <<<"$entry"
          exchanges+=("$exchange")
        done
        echo "$(basename "$0"): unknown part '$word'; use simulator, aggregator, committer, explorer, nodes or an exchange (${exchanges[*]})" >&2
        exit 2
      fi
    done
  done
  while read -r name; do
    for word in "${wanted[@]}"; do
      if [ "$word" = "$name" ]; then
        printf '%s\n' "$name"
        break
      fi
    done
  done < <(oracle_all_parts)
}

# oracle_node_index NAME: N of node<N>_<exchange>.
oracle_node_index() {
  local rest="${1#node}"
  printf '%s\n' "${rest%%_*}"
}

# proc_stat PID: sets PROC_STATE and PROC_START from /proc/PID/stat (both empty if unreadable).
# The second field, the command name in parentheses, may itself hold spaces and ')', so the fields
# are counted from after the LAST ')': state is field 3, starttime field 22.
proc_stat() {
  local stat fields
  PROC_STATE=""
  PROC_START=""
  { stat="$(<"/proc/$1/stat")"; } 2>/dev/null || return 0
  read -r -a fields <<<"${stat##*)}"
  PROC_STATE="${fields[0]:-}"
  PROC_START="${fields[19]:-}"
}

# The start time of a live process, empty when there is none (zombies count as gone: their
# parent may never reap them, e.g. under a container's PID 1).
proc_identity() {
  proc_stat "$1"
  case "$PROC_STATE" in Z | X | "") return 0 ;; esac
  printf '%s\n' "$PROC_START"
}

# proc_gone PID: true once the process has exited. `kill -0` decides; it also fails for a process
# of another user (EPERM), which /proc still shows, and it succeeds for a zombie, which has exited.
# (No bare `return` here: called from an EXIT trap, it would return the status from before the trap.)
proc_gone() {
  if kill -0 "$1" 2>/dev/null; then
    proc_stat "$1"
    [ "$PROC_STATE" = Z ]
  else
    [ ! -d /proc/self ] || [ ! -e "/proc/$1" ]
  fi
}

pidfile_path() { printf '%s/%s.pid\n' "$run_dir" "$1"; }

# pidfile_write NAME PID [KEY=VALUE...]: record a process just started, with how it was started.
# Written to a temporary file first so a reader never sees half.
pidfile_write() {
  local name="$1" pid="$2" file
  shift 2
  file="$(pidfile_path "$name")"
  mkdir -p "$run_dir"
  {
    printf '%s\n%s\n' "$pid" "$(proc_identity "$pid")"
    [ "$#" -eq 0 ] || printf '%s\n' "$@"
  } >"$file.tmp"
  mv -f "$file.tmp" "$file"
}

# pidfile_field NAME KEY: a recorded KEY=VALUE of NAME's PID file ("" when absent).
pidfile_field() {
  local file line
  file="$(pidfile_path "$1")"
  [ -r "$file" ] || return 0
  while IFS= read -r line; do
    case "$line" in "$2="*) printf '%s\n' "${line#*=}" && return 0 ;; esac
  done <"$file"
}

# port_holders PORT...: "PORT<TAB>holder" for each port something listens on (read from /proc).
port_holders() {
  local python
  python="$(oracle_python)" || return 0
  "$python" "$oracle_root/scripts/lib/holders.py" port "$@"
}

# lock_holders PATH...: "PATH<TAB>holder" for each lock file a running process holds.
lock_holders() {
  local python
  python="$(oracle_python)" || return 0
  "$python" "$oracle_root/scripts/lib/holders.py" lock "$@"
}

# pidfile_check NAME: sets PIDFILE_PID, PIDFILE_REASON (why stale) and PIDFILE_STATE to one of
#   none     no PID file;
#   running  the recorded process is alive and is the one that was started;
#   stale    the file names a dead process, or a PID now used by another process, or is garbage;
#   unknown  the PID is alive but its start time cannot be read: neither signalled nor forgotten.
pidfile_check() {
  local name="$1" file pid recorded current
  file="$(pidfile_path "$name")"
  PIDFILE_PID=""
  PIDFILE_STATE=none
  PIDFILE_REASON=""
  [ -e "$file" ] || return 0
  PIDFILE_STATE=stale
  pid="$(sed -n 1p "$file" 2>/dev/null)"
  recorded="$(sed -n 2p "$file" 2>/dev/null)"
  case "$pid" in '' | *[!0-9]*)
    PIDFILE_REASON="it holds no PID"
    return 0
    ;;
  esac
  PIDFILE_PID="$pid"
  current="$(proc_identity "$pid")"
  if proc_gone "$pid"; then
    PIDFILE_REASON="PID $pid is no longer running"
  elif [ -z "$current" ]; then
    PIDFILE_STATE=unknown
    PIDFILE_REASON="PID $pid is running but its start time cannot be read"
  elif ! [[ "$recorded" =~ ^[0-9]+$ ]]; then
    # Written by an older version of these scripts (a `ps -o lstart=` date): cannot be compared.
    PIDFILE_STATE=unknown
    PIDFILE_REASON="PID $pid is running; its PID file is from an older version of these scripts \
(start time '$recorded'), so whether it is ours cannot be checked: stop it by hand if it is"
  elif [ "$current" != "$recorded" ]; then
    PIDFILE_REASON="PID $pid now belongs to another process, started $current (clock ticks after boot)"
  else
    PIDFILE_STATE=running
  fi
}

# Print the last lines of a log so a failed start explains itself.
log_tail() {
  local file="$1" lines="${2:-20}"
  if [ -s "$file" ]; then
    echo "---- last $lines lines of $file ----" >&2
    tail -n "$lines" "$file" >&2
    echo "---- end of $file ----" >&2
  else
    echo "(log $file is empty or missing)" >&2
  fi
}

# Print the calling script's header comment (line 2 up to the first line that is not a comment):
# its --help text, so the two never drift apart.
oracle_usage() {
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
}

# oracle_simulate_args ARGS...: the one option of run_multi_nodes.sh and test_exchanges.sh. Sets
# simulate to 1 or 0; -h/--help prints the usage and exits 0, anything else exits 2.
oracle_simulate_args() {
  local arg me
  me="$(basename "$0")"
  simulate=0
  for arg in "$@"; do
    case "$arg" in
      --simulate) simulate=1 ;;
      -h | --help)
        oracle_usage
        exit 0
        ;;
      *)
        echo "$me: unknown argument '$arg' (usage: $me [--simulate])" >&2
        exit 2
        ;;
    esac
  done
}

# sim_answers PORT: the exchange simulator's health endpoint on 127.0.0.1:PORT answers 200.
# Needs $VENV_PY (scripts/venv.sh), so nothing else has to be installed.
sim_answers() {
  "$VENV_PY" - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/_sim/health", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}
