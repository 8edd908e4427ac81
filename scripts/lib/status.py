#!/usr/bin/env python3
"""Each part of the oracle on this machine: its PID, uptime, endpoint, log file, and whether it
answers. `scripts/status.sh` runs it with the parts it knows (and the run scripts use `--probe`
to wait for a part to answer).

    status.py --run-dir DIR [--json] --part NAME KIND ENDPOINT LOG ...
    status.py --probe KIND ENDPOINT        exit 0 when it answers; its answer as JSON on stdout
                                           (for a node, ENDPOINT is its log file)

KIND is what the part is and how it is asked:
- `aggregator`: `OracleService.HealthCheck` (answering = alive; healthy is its own data verdict),
- `committer`: `grpc.health.v1.Health/Check`, or `CommitterService.GetOracleInfo` where the
  standard health service is not served,
- `simulator`: HTTP `GET /_sim/health`; `explorer`: HTTP `GET /healthz`,
- `node`: a node has no port, so its liveness is its process and its log: it logs at every
  collection (each minute by default), so a log silent for longer than its interval plus 90 s
  means a node that runs but no longer collects.

A part is `running` when its PID file names a live process with the recorded start time (the
same rule as scripts/lib/procs.sh: a reused PID is never taken for ours), `stopped` without a PID
file, `dead` when the PID file outlived its process (it crashed or was killed), `unknown` when the
PID is alive but its start time cannot be read. A part that answers on its endpoint without a PID
file is reported as `running (not started by these scripts)`.

Exit status: 0 every part that was started (has a PID file) runs and answers; 1 otherwise;
3 nothing was started (no PID file at all); 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from common.grpc_client import PROBE_OPTIONS, blocking_channel
from common.proto import committer_pb2, committer_pb2_grpc, oracle_pb2, oracle_pb2_grpc

EXIT_OK = 0
EXIT_DOWN = 1
EXIT_USAGE = 2
EXIT_NOTHING = 3
TIMEOUT = 2.0
NODE_SILENCE_MARGIN = 90  # seconds past its interval a node may stay silent


@dataclass
class Answer:
    """Whether a part answered, with a short human detail and, when known, its mode."""

    ok: bool
    detail: str
    simulated: bool | None = None


@dataclass
class PartStatus:
    name: str
    kind: str
    state: str
    pid: int | None = None
    uptime_seconds: int | None = None
    endpoint: str = ""
    log: str = ""
    answers: bool | None = None
    detail: str = ""
    simulated: bool | None = None
    mode: str = ""
    extra: dict[str, str] = field(default_factory=dict)


# --- processes ----------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return stat[stat.rindex(")") + 1 :].split()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    return not fields or fields[0] not in {"Z", "X"}


def _uptime(start_ticks: int) -> int | None:
    try:
        since_boot = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0, int(since_boot - start_ticks / os.sysconf("SC_CLK_TCK")))


def read_pidfile(path: Path) -> tuple[str, int | None, int | None, dict[str, str]]:
    """(state, pid, uptime, recorded key=value lines) by the rules of scripts/lib/procs.sh."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return "stopped", None, None, {}
    except OSError:
        return "unknown", None, None, {}
    recorded = dict(line.split("=", 1) for line in lines[2:] if "=" in line)
    pid = int(lines[0]) if lines and lines[0].isdigit() else None
    state, uptime = _process_state(pid, lines[1] if len(lines) > 1 else "")
    return state, pid, uptime, recorded


def _process_state(pid: int | None, recorded_start: str) -> tuple[str, int | None]:
    if pid is None or not _alive(pid):
        return "dead", None
    fields = _stat_fields(pid)
    start = fields[19] if len(fields) > 19 else ""
    if not start or not recorded_start.isdigit():
        return "unknown", None
    if start != recorded_start:
        return "dead", None  # the PID now belongs to another process
    return "running", _uptime(int(start))


# --- asking each kind of part -------------------------------------------------------------------


def _rpc_failure(error: grpc.RpcError) -> str:
    if isinstance(error, grpc.Call):
        return f"{error.code().name.lower()}: {error.details()}"
    return str(error)


def ask_aggregator(endpoint: str) -> Answer:
    with blocking_channel(endpoint, options=PROBE_OPTIONS) as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        try:
            health = stub.HealthCheck(
                oracle_pb2.HealthRequest(node_id="probe:status"), timeout=TIMEOUT
            )
        except grpc.RpcError as error:
            return Answer(False, _rpc_failure(error))
    simulated = bool(getattr(health, "simulated", False))
    verdict = "healthy" if health.healthy else "UNHEALTHY"
    message = getattr(health, "message", "")
    detail = f"{verdict}, {health.active_nodes} active node(s)"
    if message:
        detail += f": {message}"
    return Answer(True, detail, simulated)


def _standard_health(channel: grpc.Channel) -> str | None:
    """grpc.health.v1 Check for the whole server: the status name, or None if not served.

    Called by method path with hand-encoded bytes (an empty request; the answer's field 1 is the
    status enum), so no grpcio-health-checking dependency is needed for a probe.
    """
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=lambda data: data,
        response_deserializer=lambda data: data,
    )
    try:
        raw: bytes = check(b"", timeout=TIMEOUT)
    except grpc.RpcError as error:
        if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.UNIMPLEMENTED:
            return None
        raise
    status = raw[1] if len(raw) >= 2 and raw[0] == 0x08 else 0
    return {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}.get(status, "?")


def ask_committer(endpoint: str) -> Answer:
    with blocking_channel(endpoint, options=PROBE_OPTIONS) as channel:
        try:
            standard = _standard_health(channel)
            info = committer_pb2_grpc.CommitterServiceStub(channel).GetOracleInfo(
                committer_pb2.GetOracleInfoRequest(), timeout=TIMEOUT
            )
        except grpc.RpcError as error:
            return Answer(False, _rpc_failure(error))
    key = info.oracle_public_key.hex()
    detail = f"oracle key {key[:16]}..." if key else "answering"
    if standard is not None:
        detail = f"health {standard}, {detail}"
    return Answer(standard in (None, "SERVING"), detail, bool(info.simulated))


def _http_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - our own URL
            body = response.read(65536)
            status = int(response.status)
    except urllib.error.HTTPError as error:
        return error.code, None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def ask_http(url: str, *, simulated_key: str | None = None) -> Answer:
    try:
        status, body = _http_json(url)
    except (OSError, ValueError) as error:
        return Answer(False, f"no answer from {url} ({getattr(error, 'reason', error)})")
    if status != 200:
        return Answer(False, f"{url} answered HTTP {status}")
    detail = "answering"
    if isinstance(body, dict) and "aggregator_reachable" in body:
        reachable = body["aggregator_reachable"]
        detail = f"answering; aggregator {'reachable' if reachable else 'UNREACHABLE'}"
    simulated = bool(body.get(simulated_key)) if simulated_key and isinstance(body, dict) else None
    return Answer(True, detail, simulated)


def _node_interval(recorded: dict[str, str]) -> int:
    if recorded.get("interval", "").isdigit():
        return int(recorded["interval"])
    try:
        with Path(recorded.get("config", "")).open("rb") as handle:
            value = tomllib.load(handle).get("oracle", {}).get("fetch_interval", 60)
    except (OSError, tomllib.TOMLDecodeError):
        return 60
    return value if isinstance(value, int) and not isinstance(value, bool) else 60


def _last_event(log: Path) -> str:
    """The event name of the log's last line ("" when unreadable)."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - 4096))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
        event = json.loads(lines[-1]).get("event", "") if lines else ""
    except (OSError, ValueError, AttributeError):
        return ""
    return str(event)


def ask_node(log: Path, recorded: dict[str, str], now: float) -> Answer:
    try:
        age = now - log.stat().st_mtime
    except OSError:
        return Answer(False, f"no log at {log}")
    limit = _node_interval(recorded) + NODE_SILENCE_MARGIN
    event = _last_event(log)
    said = f" ({event})" if event else ""
    if age > limit:
        return Answer(False, f"log silent for {int(age)} s{said}: the node no longer collects")
    return Answer(True, f"logged {int(age)} s ago{said}")


def ask(kind: str, endpoint: str, log: Path, recorded: dict[str, str]) -> Answer:
    if kind == "aggregator":
        return ask_aggregator(endpoint)
    if kind == "committer":
        return ask_committer(endpoint)
    if kind == "simulator":
        return ask_http(f"{endpoint.rstrip('/')}/_sim/health", simulated_key="simulated")
    if kind == "explorer":
        return ask_http(f"{endpoint.rstrip('/')}/healthz")
    if kind == "node":
        answer = ask_node(log, recorded, time.time())
        if recorded.get("metrics"):
            # "Running but failing" (503) told apart from "down" (no answer) by its own rule.
            health = ask_http(f"{recorded['metrics'].rstrip('/')}/healthz")
            ok = answer.ok and health.ok
            return Answer(ok, f"{answer.detail}; /healthz {health.detail}", answer.simulated)
        return answer
    raise ValueError(f"unknown kind {kind!r}")


# --- the table ----------------------------------------------------------------------------------


def part_status(name: str, kind: str, endpoint: str, log: str, run_dir: Path) -> PartStatus:
    state, pid, uptime, recorded = read_pidfile(run_dir / f"{name}.pid")
    endpoint = recorded.get("endpoint", endpoint)
    log = recorded.get("log", log)
    part = PartStatus(name, kind, state, pid, uptime, endpoint, log, mode=recorded.get("mode", ""))
    for key in ("http", "url", "metrics"):
        if recorded.get(key):
            part.extra[key] = recorded[key]
    if state == "dead":
        part.answers = False
        part.detail = "its PID file outlived the process (crashed or killed)"
        return part
    if kind == "node" and state != "running":
        return part
    answer = ask(kind, endpoint, Path(log), recorded)
    if state == "stopped" and answer.ok:
        part.state = "running (not started by these scripts)"
    if state != "stopped" or answer.ok:
        part.answers, part.detail, part.simulated = answer.ok, answer.detail, answer.simulated
    return part


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


def render(parts: list[PartStatus]) -> str:
    """One row per part, every column aligned but the last (the answer, the longest)."""
    rows = [("part", "state", "PID", "uptime", "endpoint", "log", "answers")]
    for part in parts:
        answers = {True: "yes", False: "NO", None: "-"}[part.answers]
        if part.detail:
            answers += f": {part.detail}"
        if part.simulated or part.mode == "simulated":
            answers += "  [SIMULATED]"
        endpoint = part.endpoint or "(no port)"
        if "http" in part.extra:
            endpoint += f" + {part.extra['http']}"
        if "metrics" in part.extra:
            metrics = f"{part.extra['metrics']}/metrics"
            endpoint = f"{endpoint} + {metrics}" if part.endpoint else metrics
        pid = str(part.pid) if part.pid else "-"
        uptime = _duration(part.uptime_seconds)
        rows.append((part.name, part.state, pid, uptime, endpoint, part.log, answers))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:6])) + "  " + row[6]
        for row in rows
    )


def exit_code(parts: list[PartStatus]) -> int:
    recorded = [part for part in parts if part.state in {"running", "dead", "unknown"}]
    if not recorded:
        return EXIT_NOTHING
    if any(part.state != "running" or part.answers is False for part in recorded):
        return EXIT_DOWN
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument(
        "--part", nargs=4, action="append", default=[], metavar=("NAME", "KIND", "ENDPOINT", "LOG")
    )
    parser.add_argument("--probe", nargs=2, metavar=("KIND", "ENDPOINT"))
    args = parser.parse_args(argv)
    if args.probe:
        kind, endpoint = args.probe
        if kind == "node":
            answer = ask(kind, "", Path(endpoint), {})
        else:
            answer = ask(kind, endpoint, Path(os.devnull), {})
        print(json.dumps(asdict(answer)))
        return EXIT_OK if answer.ok else EXIT_DOWN
    if args.run_dir is None or not args.part:
        parser.error("--run-dir and at least one --part are needed (or --probe)")
    # argparse's nargs=4 guarantees four strings per --part; unpack them by name.
    parts = [
        part_status(name, kind, endpoint, log, args.run_dir)
        for name, kind, endpoint, log in args.part
    ]
    code = exit_code(parts)
    if args.json:
        print(json.dumps({"parts": [asdict(part) for part in parts], "exit": code}, indent=1))
    else:
        print(render(parts))
        if code == EXIT_NOTHING:
            print(f"Nothing was started by these scripts (no PID file in {args.run_dir}).")
    return code


if __name__ == "__main__":
    sys.exit(main())
