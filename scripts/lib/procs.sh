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
# Environment (all optional): ORACLE_RUN_DIR (PID files, default <repo>/run), ORACLE_LOG_DIR
# (logs, default <repo>/logs), ORACLE_AGGREGATOR_PORT (50051), ORACLE_SIM_PORT (8099),
# ORACLE_CONFIG_DIR (the per-node configs, default <repo>/config).

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
aggregator_port="${ORACLE_AGGREGATOR_PORT:-50051}"
sim_port="${ORACLE_SIM_PORT:-8099}"

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
oracle_load_nodes() {
  local python table index exchange node_id config
  python="$(oracle_python)" || exit 2
  table="$("$python" "$oracle_root/scripts/lib/node_table.py" "${ORACLE_CONFIG_DIR:-$oracle_root/config}")" || exit 2
  oracle_nodes=()
  while read -r index exchange node_id config; do
    oracle_nodes+=("$index $exchange")
    oracle_node_ids[$index]="$node_id"
    oracle_node_configs[$index]="$config"
  done <<<"$table"
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

# Record a process just started; written to a temporary file first so a reader never sees half.
pidfile_write() {
  local name="$1" pid="$2" file
  file="$(pidfile_path "$name")"
  mkdir -p "$run_dir"
  printf '%s\n%s\n' "$pid" "$(proc_identity "$pid")" >"$file.tmp"
  mv -f "$file.tmp" "$file"
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
