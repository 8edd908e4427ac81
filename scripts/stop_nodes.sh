#!/usr/bin/env bash
# Stop exactly the processes run_multi_nodes.sh started, through their PID files: the nodes, with
# --all every part (nodes, explorer, committer, aggregator, simulator), with --only the parts named.
# Each gets SIGTERM (the services drain and exit), then SIGKILL if it is still there after the
# timeout. A PID file whose process is gone, or whose PID now belongs to another process (start
# time differs), is removed without sending any signal. Never looks processes up by name: a
# process started by hand is left alone, but when it still holds a port of a part that was
# stopped (--all: every port the run script uses), it is named, and the exit status says so.
#
# Usage: scripts/stop_nodes.sh [--all | --only PART[,PART...]...] [--timeout SECONDS]
#   PART: simulator, aggregator, committer, explorer, nodes, or an exchange (its node).
# Environment (optional): ORACLE_RUN_DIR (PID files, <repo>/run), ORACLE_STOP_TIMEOUT (10), and
# the ports (ORACLE_AGGREGATOR_PORT, ORACLE_SIM_PORT, ORACLE_COMMITTER_PORT,
# ORACLE_COMMITTER_HTTP_PORT, ORACLE_EXPLORER_PORT) whose holders are checked after stopping.
# Exit status: 0 everything asked for is stopped; 1 a process survived SIGKILL (or its PID file
# cannot be checked); 2 usage; 3 stopped, but a port of a stopped part is still held by a process
# these scripts did not start (named on stderr).
set -euo pipefail
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/procs.sh
source "$script_dir/lib/procs.sh"

all=0
only=()
timeout="${ORACLE_STOP_TIMEOUT:-10}"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --all) all=1 ;;
    --only)
      [ "$#" -ge 2 ] || { echo "stop_nodes.sh: --only needs a part (e.g. --only kraken)" >&2; exit 2; }
      only+=("$2")
      shift
      ;;
    --only=*) only+=("${1#--only=}") ;;
    --timeout)
      [ "$#" -ge 2 ] || { echo "stop_nodes.sh: --timeout needs a number of seconds" >&2; exit 2; }
      timeout="$2"
      shift
      ;;
    -h | --help)
      oracle_usage
      exit 0
      ;;
    *)
      echo "stop_nodes.sh: unknown argument '$1' (usage: stop_nodes.sh [--all | --only PART...] [--timeout SECONDS])" >&2
      exit 2
      ;;
  esac
  shift
done
case "$timeout" in '' | *[!0-9]*)
  echo "stop_nodes.sh: the timeout must be a whole number of seconds, not '$timeout'" >&2
  exit 2
  ;;
esac
if [ "$all" = 1 ] && [ "${#only[@]}" -gt 0 ]; then
  echo "stop_nodes.sh: --all and --only exclude each other" >&2
  exit 2
fi

stopped_any=0
survivors=0

# stop_group NAME...: SIGTERM every running one at once, wait for all, SIGKILL what is left.
stop_group() {
  local name pids=() names=() i deadline
  for name in "$@"; do
    pidfile_check "$name"
    case "$PIDFILE_STATE" in
      none) ;;
      stale)
        echo "==> $name: removing stale PID file ($PIDFILE_REASON; no signal sent)"
        rm -f "$(pidfile_path "$name")"
        ;;
      unknown)
        echo "==> $name: $PIDFILE_REASON; PID file kept, no signal sent" >&2
        survivors=1
        ;;
      running)
        echo "==> $name: stopping PID $PIDFILE_PID (SIGTERM)"
        kill -TERM "$PIDFILE_PID" 2>/dev/null || true
        pids+=("$PIDFILE_PID")
        names+=("$name")
        ;;
    esac
  done
  [ "${#pids[@]}" -gt 0 ] || return 0
  stopped_any=1
  deadline=$((SECONDS + timeout))
  for i in "${!pids[@]}"; do
    while [ -n "$(proc_identity "${pids[$i]}")" ] && [ "$SECONDS" -lt "$deadline" ]; do
      sleep 0.2
    done
  done
  for i in "${!pids[@]}"; do
    # Re-check the identity: between SIGTERM and now the PID could have been reused.
    pidfile_check "${names[$i]}"
    if [ "$PIDFILE_STATE" = running ]; then
      echo "==> ${names[$i]}: still running after ${timeout}s, sending SIGKILL to PID ${pids[$i]}" >&2
      kill -KILL "${pids[$i]}" 2>/dev/null || true
      sleep 0.5
      pidfile_check "${names[$i]}"
      if [ "$PIDFILE_STATE" = running ]; then
        echo "ERROR: ${names[$i]} (PID ${pids[$i]}) survived SIGKILL; PID file kept" >&2
        survivors=1
        continue
      fi
    fi
    if [ "$PIDFILE_STATE" = unknown ]; then
      echo "ERROR: ${names[$i]}: $PIDFILE_REASON; PID file kept" >&2
      survivors=1
      continue
    fi
    rm -f "$(pidfile_path "${names[$i]}")"
    echo "    ${names[$i]}: stopped"
  done
}

# Every node PID file in the run directory is one run_multi_nodes.sh wrote (node<N>_<exchange>),
# so the node table is not needed for the nodes: what was started is what is recorded.
recorded_nodes=()
for pid_file in "$run_dir"/node*.pid; do
  [ -e "$pid_file" ] || continue
  name="${pid_file##*/}"
  recorded_nodes+=("${name%.pid}")
done
targets=()
if [ "${#only[@]}" -gt 0 ]; then
  oracle_load_nodes
  mapfile -t targets < <(oracle_resolve_parts "${only[@]}")
  [ "${#targets[@]}" -gt 0 ] || exit 2
elif [ "$all" = 1 ]; then
  targets=("${recorded_nodes[@]}" explorer committer aggregator simulator)
else
  targets=("${recorded_nodes[@]}")
fi

# The ports to check afterwards: those the stopped parts were started with (their PID files),
# and with --all every port the run script uses in this environment.
ports=()
add_port() { if [ -n "$2" ]; then ports+=("$2=$1"); fi; }
endpoint_port() { # the port of host:port or http://host:port/...
  local rest="${1#*://}"
  rest="${rest%%/*}"
  if [[ "$rest" == *:* ]]; then printf '%s\n' "${rest##*:}"; fi
}
for name in "${targets[@]}"; do
  add_port "$name" "$(endpoint_port "$(pidfile_field "$name" endpoint)")"
  add_port "$name" "$(endpoint_port "$(pidfile_field "$name" http)")"
done
if [ "$all" = 1 ]; then
  add_port aggregator "$aggregator_port"
  add_port simulator "$sim_port"
  add_port committer "$committer_port"
  add_port committer "$committer_http_port"
  add_port explorer "$explorer_port"
elif [ "${#only[@]}" -gt 0 ]; then
  for name in "${targets[@]}"; do
    case "$name" in
      aggregator) add_port aggregator "$aggregator_port" ;;
      simulator) add_port simulator "$sim_port" ;;
      committer) add_port committer "$committer_port" && add_port committer "$committer_http_port" ;;
      explorer) add_port explorer "$explorer_port" ;;
    esac
  done
fi

# Nodes first, so none of them logs a failed submission to an aggregator that is going away; the
# explorer and the committer next (they read from the aggregator); the simulator last.
group=()
for name in "${targets[@]}"; do [[ "$name" == node* ]] && group+=("$name"); done
[ "${#group[@]}" -eq 0 ] || stop_group "${group[@]}"
group=()
for name in "${targets[@]}"; do [ "$name" = explorer ] || [ "$name" = committer ] && group+=("$name"); done
[ "${#group[@]}" -eq 0 ] || stop_group "${group[@]}"
for name in aggregator simulator; do
  for target in "${targets[@]}"; do [ "$target" = "$name" ] && stop_group "$name"; done
done

if [ "$stopped_any" = 0 ]; then
  echo "Nothing to stop: no running process recorded in $run_dir for ${only[*]:-${targets[*]:-the nodes}}"
fi
if [ "$all" = 0 ] && [ "${#only[@]}" -eq 0 ]; then
  for name in aggregator simulator committer explorer; do
    pidfile_check "$name"
    if [ "$PIDFILE_STATE" = running ]; then
      echo "(the $name, PID $PIDFILE_PID, keeps running; stop everything with: $(oracle_hint stop_nodes.sh --all))"
    fi
  done
fi

# A port still held now is held by a process these scripts did not start (ours are gone): the
# next run_multi_nodes.sh would refuse or reuse it, so say which process it is.
held=0
if [ "${#ports[@]}" -gt 0 ]; then
  declare -A part_of=()
  unique=()
  for entry in "${ports[@]}"; do
    port="${entry%%=*}"
    [ -n "${part_of[$port]:-}" ] || unique+=("$port")
    part_of[$port]="${entry#*=}"
  done
  while IFS=$'\t' read -r port holder; do
    [ -n "$port" ] || continue
    echo "WARNING: port $port (${part_of[$port]}) is still held by $holder, not started by these scripts (or not recorded in $run_dir)" >&2
    held=1
  done < <(port_holders "${unique[@]}")
  if [ "$held" = 1 ]; then
    echo "  It keeps serving that port; stop it where it was started (kill PID), then: $(oracle_hint status.sh)" >&2
  fi
fi
[ "$survivors" = 0 ] || exit 1
[ "$held" = 0 ] || exit 3
exit 0
