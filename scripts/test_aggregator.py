#!/usr/bin/env python3
"""Health probe of the aggregator: HealthCheck, then GetAggregatedPrice, for people and monitors.

The original `scripts/test_aggregator.py`, kept as the operator's one-look view (healthy, active
nodes, the aggregate with its minute and age, each exchange's input) and made fit for monitoring:
the exit status is 0 only when the aggregator answers and says it is healthy (status OK),
`--json` prints one object for machines, and a simulated aggregate is always labelled
SIMULATED. It reads only fields of proto/oracle.proto and treats every field the original
contract lacks as optional, so it also runs against an original aggregator or with bindings
generated from the original .proto.

Exit status: 0 healthy; 1 answering but unhealthy (or GetAggregatedPrice failed); 2 usage error
(including an exchange the aggregator does not know, `--source bitstamp`); 3 unreachable. With
`--alive`, 0 whenever the aggregator answers HealthCheck at all.

Beside the price it prints its quality, when the aggregator sends it: status (OK, DEGRADED,
UNKNOWN), confidence, method, whether the minute's round is final or still open, how USDT quotes
were handled (converted at a rate, or taken at par) and every excluded input with its reason.
`--json` carries the same in `health.status` and `aggregate.{status, confidence, method, final,
usdt, excluded}`, a superset of the earlier document.

Prices in `--json` are exact decimals written as JSON numbers (`99782.26333333`, never the
binary double's `99782.26333333334`): from the contract's `*_e8` integers when the aggregator
sends them (`"exact": true`), else the double rounded to the contract's 8 decimals
(`"exact": false`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

_REPO_ROOT = Path(__file__).resolve().parent.parent
_VENV_DIR = _REPO_ROOT / ".venv"

try:
    import grpc

    from common.grpc_client import PROBE_OPTIONS, blocking_channel
    from common.proto import oracle_pb2, oracle_pb2_grpc
except ModuleNotFoundError:  # pragma: no cover - exercised by a subprocess test
    # The README's `python3 scripts/test_aggregator.py` must work with a system python that has
    # none of the dependencies: run again under the project's venv (created when missing).
    if __name__ != "__main__" or Path(sys.prefix).resolve() == _VENV_DIR.resolve():
        print(
            "test_aggregator.py: grpc or the oracle bindings are missing from this python; "
            "run: source scripts/venv.sh",
            file=sys.stderr,
        )
        raise
    _venv_python = _VENV_DIR / "bin" / "python"
    if not _venv_python.exists():
        subprocess.run(
            ["bash", "-c", 'source "$1/scripts/venv.sh" ""', "venv", str(_REPO_ROOT)],
            check=True,
            stdout=sys.stderr,
        )
    os.execv(_venv_python, [str(_venv_python), str(Path(__file__).resolve()), *sys.argv[1:]])  # noqa: S606

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

PROBE_ID = "probe:test_aggregator"
# PriceStatus and AggregationMethod by number: bindings from the original contract lack the enums.
STATUS_NAMES = {1: "OK", 2: "DEGRADED", 3: "UNKNOWN"}
METHOD_NAMES = {1: "mean", 2: "median"}
E8 = Decimal(10) ** -8
# An exchange name as the aggregator's config takes it; anything else is a usage error here.
EXCHANGE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# The variables that decide which system the run scripts act on (scripts/lib/procs.sh's list):
# a hint for the operator to copy carries those that are set.
_SCRIPT_VARIABLES = (
    "ORACLE_RUN_DIR",
    "ORACLE_LOG_DIR",
    "ORACLE_STATE_DIR",
    "ORACLE_CONFIG_DIR",
    "ORACLE_AGGREGATOR_HOST",
    "ORACLE_AGGREGATOR_PORT",
    "ORACLE_SIM_PORT",
    "ORACLE_COMMITTER_PORT",
    "ORACLE_COMMITTER_HTTP_PORT",
    "ORACLE_EXPLORER_PORT",
)


def _field(message: Any, name: str, default: Any) -> Any:  # noqa: ANN401 - proto messages
    """A field the original contract may lack: its value, or `default` with original bindings."""
    return getattr(message, name, default)


def _minute_utc(minute: int) -> str | None:
    if minute <= 0:
        return None
    return datetime.fromtimestamp(minute, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


def exact_price(message: Any, name: str) -> tuple[Decimal, bool]:  # noqa: ANN401 - proto
    """The price field `name` as an exact Decimal, and whether it is exact.

    `name_e8` (the integer x 10^8 the contract carries beside the double) when the aggregator
    sends it; else the double rounded to 8 decimals, the contract's precision.
    """
    e8 = int(_field(message, f"{name}_e8", 0) or 0)
    if e8 > 0:
        return _plain(Decimal(e8).scaleb(-8)), True
    value = float(_field(message, name, 0.0))
    return _plain(Decimal(repr(value)).quantize(E8, rounding=ROUND_HALF_EVEN)), False


def _plain(value: Decimal) -> Decimal:
    """Without trailing zeros, and never in exponent form: 100010.25, 100000 (not 1E+5)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


class _ExactJson:
    """json.dumps that writes Decimals as JSON numbers with their exact digits.

    The standard encoder writes a float's binary repr and refuses a Decimal; a Decimal goes out
    first as a marker string (a random token no answer from the network can forge) and the
    marker is replaced by the bare number.
    """

    def __init__(self) -> None:
        self._token = uuid.uuid4().hex
        self._marker = re.compile(rf'"{self._token}:(-?[0-9]+(?:\.[0-9]+)?)"')

    def _default(self, value: object) -> object:
        if isinstance(value, Decimal):
            return f"{self._token}:{value:f}"
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    def dumps(self, document: object) -> str:
        text = json.dumps(document, sort_keys=True, default=self._default)
        return self._marker.sub(r"\1", text)


def script_hint(script: str, *args: str, target: str = "") -> str:
    """`VAR=... /path/scripts/SCRIPT ARGS`: the command in the environment this probe runs in.

    The port of `target` is added as ORACLE_AGGREGATOR_PORT when it is not the default and the
    variable is not set, so the copied command acts on the aggregator this probe asked.
    """
    words = [
        f"{name}={shlex.quote(os.environ[name])}"
        for name in _SCRIPT_VARIABLES
        if os.environ.get(name)
    ]
    port = target.rpartition(":")[2]
    if port.isdigit() and port != "50051" and not os.environ.get("ORACLE_AGGREGATOR_PORT"):
        words.append(f"ORACLE_AGGREGATOR_PORT={port}")
    words.append(str(_REPO_ROOT / "scripts" / script))
    words.extend(shlex.quote(arg) for arg in args)
    return " ".join(words)


@dataclass
class ProbeResult:
    """What one probe learnt; `exit_code` and `reason` are what a monitor acts on."""

    target: str
    reachable: bool = False
    healthy: bool = False
    simulated: bool = False
    reason: str = ""
    health: dict[str, Any] = field(default_factory=dict)
    aggregate: dict[str, Any] | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int = EXIT_UNREACHABLE

    usage_error: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "reachable": self.reachable,
            "healthy": self.healthy,
            "simulated": self.simulated,
            "reason": self.reason,
            "health": self.health,
            "aggregate": self.aggregate,
            "inputs": self.inputs,
        }


def normalise_target(target: str) -> str:
    """Accept `host:port` and the nodes' `http://host:port` form alike."""
    for scheme in ("http://", "https://", "grpc://"):
        if target.startswith(scheme):
            target = target[len(scheme) :]
    return target.rstrip("/")


def _health_dict(response: Any) -> dict[str, Any]:  # noqa: ANN401 - proto message
    return {
        "healthy": response.healthy,
        "timestamp": response.timestamp,
        "active_nodes": response.active_nodes,
        "version": response.version,
        "uptime_seconds": _field(response, "uptime_seconds", 0),
        "message": _field(response, "message", ""),
        "fresh_exchanges": _field(response, "fresh_exchanges", 0),
        "simulated": _field(response, "simulated", False),
        "draining": _field(response, "draining", False),
        "status": STATUS_NAMES.get(int(_field(response, "status", 0))),
    }


def _aggregate_dict(response: Any) -> dict[str, Any]:  # noqa: ANN401 - proto message
    minute = int(_field(response, "aggregate_minute", 0))
    price, exact = exact_price(response, "aggregated_price")
    return {
        "success": response.success,
        "price": price,
        "exact": exact,
        "data_points": response.data_points,
        "last_update": response.last_update,
        "aggregate_minute": minute,
        "aggregate_minute_utc": _minute_utc(minute),
        "age_seconds": _field(response, "age_seconds", None),
        "active_nodes": _field(response, "active_nodes", None),
        "message": _field(response, "message", ""),
        "simulated": _field(response, "simulated", False),
        # Quality fields (None from an aggregator older than them).
        "status": STATUS_NAMES.get(int(_field(response, "status", 0))),
        "confidence": exact_price(response, "confidence")[0]
        if _field(response, "status", 0)
        else None,
        "method": METHOD_NAMES.get(int(_field(response, "method", 0))),
        "final": _field(response, "final", None),
        "usdt": {
            "converted": bool(_field(response, "usdt_converted", False)),
            "rate": _plain(Decimal(repr(response.usdt_usd_rate)))
            if _field(response, "usdt_converted", False)
            else None,
            "at_par": bool(_field(response, "usdt_at_par", False)),
        },
        "excluded": [_excluded_dict(item) for item in _field(response, "excluded", ())],
    }


def _excluded_dict(item: Any) -> dict[str, Any]:  # noqa: ANN401 - proto message
    minute = int(item.minute)
    price, exact = exact_price(item, "price")
    return {
        "source": item.source,
        "price": price,
        "exact": exact,
        "quote": item.quote,
        "minute": minute,
        "minute_utc": _minute_utc(minute),
        "reason": item.excluded_reason,
        "detail": item.excluded_detail,
        "deviation": item.deviation,
    }


def _input_dict(point: Any) -> dict[str, Any]:  # noqa: ANN401 - proto message
    minute = int(point.timestamp)
    price, exact = exact_price(point, "price")
    return {
        "source": point.source,
        "price": price,
        "exact": exact,
        "quote": _field(point, "quote", ""),
        "minute": minute,
        "minute_utc": _minute_utc(minute),
        "node_id": point.node_id,
        "node_count": _field(point, "node_count", None),
        "received_at": _field(point, "received_at", None),
        "usd_price": _plain(Decimal(repr(point.usd_price)))
        if _field(point, "usd_price", 0)
        else None,
        "deviation": _field(point, "deviation", None),
    }


def _rpc_reason(error: grpc.RpcError, target: str) -> str:
    code = error.code() if isinstance(error, grpc.Call) else None
    details = error.details() if isinstance(error, grpc.Call) else str(error)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return (
            f"cannot reach the aggregator at {target} ({code.name.lower()}: {details}); "
            f"see what runs: {script_hint('status.sh', target=target)}; start the aggregator "
            f"alone: {script_hint('run_multi_nodes.sh', '--only', 'aggregator', target=target)} "
            "(add --simulate for a simulated system)"
        )
    name = code.name if code is not None else "error"
    return f"aggregator at {target} answered {name}: {details}"


def probe(
    target: str, timeout: float, source: str | None = None, *, alive: bool = False
) -> ProbeResult:
    """HealthCheck, then (unless `alive`) GetAggregatedPrice; never raises for an RPC failure.

    The channel is `common.grpc_client`'s probe channel: with nothing listening the answer is
    "unreachable" at once, and a port that accepts connections but never speaks gRPC is given
    up on after a short connect timeout, not after the whole `timeout`.
    """
    result = ProbeResult(target=target)
    options = replace(PROBE_OPTIONS, connect_timeout=min(timeout, PROBE_OPTIONS.connect_timeout))
    with blocking_channel(target, options=options) as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        try:
            health = stub.HealthCheck(oracle_pb2.HealthRequest(node_id=PROBE_ID), timeout=timeout)
        except grpc.RpcError as error:
            result.reason = _rpc_reason(error, target)
            return result
        result.reachable = True
        result.health = _health_dict(health)
        result.healthy = bool(health.healthy)
        result.simulated = bool(result.health["simulated"])
        if alive:
            result.exit_code = EXIT_HEALTHY
            result.reason = "answering"
            return result
        request = oracle_pb2.GetPriceRequest()
        if source:
            request.source_filter = source
        try:
            price = stub.GetAggregatedPrice(request, timeout=timeout)
        except grpc.RpcError as error:
            result.reason = _rpc_reason(error, target)
            result.exit_code = EXIT_UNHEALTHY
            invalid = isinstance(error, grpc.Call) and (
                error.code() == grpc.StatusCode.INVALID_ARGUMENT
            )
            if source and invalid:
                # `--source bitstamp`: the aggregator knows no such exchange, a usage error.
                result.usage_error = True
                result.exit_code = EXIT_USAGE
            return result
    result.aggregate = _aggregate_dict(price)
    result.inputs = [_input_dict(point) for point in price.recent_prices]
    result.simulated = result.simulated or bool(result.aggregate["simulated"])
    if not result.healthy:
        result.reason = result.health["message"] or "the aggregator reports itself unhealthy"
        result.exit_code = EXIT_UNHEALTHY
    elif not price.success:
        result.reason = result.aggregate["message"] or "no aggregated price available"
        result.exit_code = EXIT_UNHEALTHY
    else:
        result.reason = "healthy"
        result.exit_code = EXIT_HEALTHY
    return result


def _fmt_price(price: Decimal | float) -> str:
    return f"{price:,.2f}"


def render_text(result: ProbeResult) -> str:
    """The operator's view; SIMULATED leads every line that shows a price from the simulator."""
    label = "SIMULATED " if result.simulated else ""
    lines = [
        f"Aggregator {result.target}" + ("  ** SIMULATED PRICES **" if result.simulated else "")
    ]
    if not result.reachable:
        return "\n".join(lines)
    health = result.health
    state = "healthy" if health["healthy"] else "UNHEALTHY"
    if health["draining"]:
        state += " (draining)"
    lines.append(
        f"  health: {state}, active nodes {health['active_nodes']}, "
        f"fresh exchanges {health['fresh_exchanges']}, version {health['version'] or '?'}, "
        f"uptime {health['uptime_seconds']} s"
    )
    if health["message"]:
        lines.append(f"  {health['message']}")
    aggregate = result.aggregate
    if aggregate is None:
        lines.append(f"  price: not available ({result.reason})")
        return "\n".join(lines)
    if aggregate["success"]:
        when = aggregate["aggregate_minute_utc"] or "minute unknown"
        age = aggregate["age_seconds"]
        age_text = f", age {age} s" if age is not None and aggregate["aggregate_minute"] else ""
        count = aggregate["data_points"]
        lines.append(
            f"  {label}aggregate: {_fmt_price(aggregate['price'])} from "
            f"{count} exchange{'' if count == 1 else 's'} for {when}{age_text}"
        )
    else:
        lines.append(f"  aggregate: none ({aggregate['message'] or 'no fresh prices'})")
    lines.extend(_quality_lines(aggregate, label))
    if aggregate["message"] and aggregate["success"]:
        lines.append(f"  {aggregate['message']}")
    for point in result.inputs:
        nodes = point["node_id"]
        if point["node_count"] and point["node_count"] > 1:
            nodes += f" ({point['node_count']} nodes, median)"
        lines.append(
            f"    {label}{point['source']:<9} {_fmt_price(point['price']):>14} "
            f"{point['quote'] or '':<4} minute {point['minute_utc'] or '?'}  node {nodes}"
        )
    return "\n".join(lines)


def _quality_lines(aggregate: dict[str, Any], label: str) -> list[str]:
    """Status, confidence, method, round state, USDT handling and each excluded input."""
    if aggregate["status"] is None:  # an aggregator older than these fields
        return []
    quality = f"  status: {aggregate['status']}"
    if aggregate["success"] and aggregate["confidence"] is not None:
        state = "final" if aggregate["final"] else "round open"
        quality += (
            f", confidence ± {_fmt_price(aggregate['confidence'])}, "
            f"{aggregate['method'] or '?'} of the kept inputs, {state}"
        )
    lines = [quality]
    usdt = aggregate["usdt"]
    if usdt["converted"]:
        lines.append(f"  USDT converted to USD at {usdt['rate']} (USDT/USD)")
    elif usdt["at_par"]:
        lines.append("  USDT taken at par with USD: no fresh USDT/USD rate")
    lines.extend(
        f"    {label}excluded {item['source']:<9} {_fmt_price(item['price']):>14} "
        f"{item['quote']:<4} {item['reason']}: {item['detail']}"
        for item in aggregate["excluded"]
    )
    return lines


def _default_target() -> str:
    explicit = os.environ.get("ORACLE_AGGREGATOR_TARGET")
    if explicit:
        return explicit
    return f"localhost:{os.environ.get('ORACLE_AGGREGATOR_PORT', '50051')}"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Probe the oracle aggregator: HealthCheck then GetAggregatedPrice. "
            "Exit 0 healthy, 1 unhealthy, 3 unreachable."
        ),
    )
    parser.add_argument(
        "--target",
        default=_default_target(),
        help="aggregator host:port (default localhost:$ORACLE_AGGREGATOR_PORT or 50051)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per probe")
    parser.add_argument(
        "--watch", type=float, metavar="SECONDS", help="probe again every SECONDS until Ctrl-C"
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, metavar="SECONDS", help="deadline per call (5)"
    )
    parser.add_argument(
        "--source",
        help="one exchange's price only (GetAggregatedPrice source_filter), e.g. kraken",
    )
    parser.add_argument(
        "--alive",
        action="store_true",
        help="exit 0 when the aggregator answers HealthCheck at all (a readiness check)",
    )
    args = parser.parse_args(argv)
    if args.watch is not None and args.watch <= 0:
        parser.error("--watch needs a positive number of seconds")
    if args.timeout <= 0:
        parser.error("--timeout needs a positive number of seconds")
    if args.source is not None and not EXCHANGE_NAME.fullmatch(args.source):
        parser.error(f"--source needs an exchange name such as kraken, not {args.source!r}")
    args.target = normalise_target(args.target)
    return args


def _report(result: ProbeResult, as_json: bool) -> None:
    """stdout carries the view (or the JSON); a failure adds its one-line reason on stderr."""
    print(_ExactJson().dumps(result.to_json()) if as_json else render_text(result), flush=True)
    if result.exit_code != EXIT_HEALTHY:
        print(f"{_status_word(result)}: {result.reason}", file=sys.stderr, flush=True)


def _status_word(result: ProbeResult) -> str:
    if result.usage_error:
        return "USAGE"
    return "UNREACHABLE" if not result.reachable else "UNHEALTHY"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    while True:
        result = probe(args.target, args.timeout, args.source, alive=args.alive)
        _report(result, args.json)
        if args.watch is None or result.usage_error:
            return result.exit_code
        try:
            time.sleep(args.watch)
        except KeyboardInterrupt:
            return result.exit_code
        if not args.json:
            print(f"--- {datetime.now(tz=UTC).strftime('%H:%M:%SZ')}", flush=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(EXIT_UNHEALTHY)
