#!/usr/bin/env bash
# Stop exactly the processes run_multi_nodes.sh started, through their PID files: the three nodes,
# and with --all also the aggregator and the exchange simulator. Each gets SIGTERM (the services
# drain and exit), then SIGKILL if it is still there after the timeout. A PID file whose process is
# gone, or whose PID now belongs to another process (start time differs), is removed without
# sending any signal. Never looks processes up by name: a node started by hand is left alone.
#
# Usage: scripts/stop_nodes.sh [--all] [--timeout SECONDS]      (from any directory)
# Environment (optional): ORACLE_RUN_DIR (PID files, <repo>/run), ORACLE_STOP_TIMEOUT (10).
# Exit status: 0 everything asked for is stopped; 1 a process survived SIGKILL; 2 usage.
set -euo pipefail
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib/procs.sh
source "$script_dir/lib/procs.sh"

all=0
timeout="${ORACLE_STOP_TIMEOUT:-10}"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --all) all=1 ;;
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
      echo "stop_nodes.sh: unknown argument '$1' (usage: stop_nodes.sh [--all] [--timeout SECONDS])" >&2
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

# Nodes first, so none of them logs a failed submission to an aggregator that is going away.
# Every node PID file in the run directory is one run_multi_nodes.sh wrote (node<N>_<exchange>),
# so the node table is not needed here: what was started is what is recorded.
node_names=()
for pid_file in "$run_dir"/node*.pid; do
  [ -e "$pid_file" ] || continue
  name="${pid_file##*/}"
  node_names+=("${name%.pid}")
done
[ "${#node_names[@]}" -eq 0 ] || stop_group "${node_names[@]}"
if [ "$all" = 1 ]; then
  stop_group aggregator
  stop_group simulator
fi

if [ "$stopped_any" = 0 ]; then
  echo "Nothing to stop: no running process recorded in $run_dir"
fi
if [ "$all" = 0 ]; then
  for name in aggregator simulator; do
    pidfile_check "$name"
    if [ "$PIDFILE_STATE" = running ]; then
      echo "(the $name, PID $PIDFILE_PID, keeps running; stop it too with: $0 --all)"
    fi
  done
fi
exit "$survivors"
