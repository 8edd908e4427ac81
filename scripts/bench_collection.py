"""Collection timing: how soon after each minute boundary the round closes with all three inputs.

Starts, all on loopback and in simulate mode: the exchange simulator, the aggregator and three
oracle nodes (binance, coinbase, kraken), each with its log in a temporary directory. Then, for
each scenario (normal; one venue answering 2 s late; one venue rate-limited once per minute, via
the simulator's `POST /_sim/faults`) and for `--minutes` minute boundaries each, it polls
GetAggregatedPrice from just before the boundary until every exchange's input is the candle that
just closed: that moment minus the boundary is "boundary -> round closed". Afterwards it reads the
nodes' JSON log lines for each node's fetch start skew (its own `fetch_started skew_ms`) and fetch
latency. The goal: the round closes within 1 s of the boundary (p50) when venues answer within
200 ms.

    .venv/bin/python scripts/bench_collection.py --minutes 3        # ~10 minutes
    .venv/bin/python scripts/bench_collection.py --smoke            # seconds: starts it all once

The simulator's Coinbase publishing lag (a real quirk, 5 s by default) is set to 0 here unless
`--coinbase-lag` says otherwise: the goal is about our collection, not Coinbase's publishing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
from bench.procs import ServiceProcess, free_port, grpc_answers, venv_command
from bench.report import machine, machine_line, markdown_table
from bench.stats import percentile

from common.exchanges import EXCHANGES
from common.proto import oracle_pb2, oracle_pb2_grpc
from common.timeutil import MINUTE, format_minute

GOAL_CLOSE_P50_S = 1.0
POLL_INTERVAL_S = 0.02
# A round not closed this long after the boundary is counted as not closed (nodes give up on a
# minute 45 s after the boundary by default).
CLOSE_TIMEOUT_S = 50.0
# Faults are (re)armed this long before a boundary, so they hit exactly that minute's fetches.
ARM_BEFORE_S = 3.0

# Each scenario: name, description, and the simulator faults armed before every boundary.
SCENARIOS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "normal": ("all venues answer at once", []),
    "slow": (
        "kraken answers 2 s late",
        [{"venue": "kraken", "slow": {"delay_seconds": 2.0, "count": None}}],
    ),
    "rate-limited": (
        "binance answers 429 (Retry-After 1 s) to the first request of each minute",
        [{"venue": "binance", "rate_limit": {"count": 1, "retry_after": 1}}],
    ),
}


@dataclass
class Round:
    """One minute boundary of one scenario."""

    boundary: int
    closed_after_s: float | None = None
    # node exchange -> what its log says about this minute
    skew_ms: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=int, default=3, help="boundaries per scenario")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, from: {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--coinbase-lag", type=float, default=0.0, help="simulator's lag, s")
    parser.add_argument("--log-dir", type=Path, help="keep all logs here (default: temp dir)")
    parser.add_argument("--json", type=Path, help="also write all figures to this file")
    parser.add_argument(
        "--smoke", action="store_true", help="start everything, fetch once per venue, stop"
    )
    args = parser.parse_args()
    args.scenario_names = [name for name in args.scenarios.split(",") if name]
    unknown = set(args.scenario_names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; use {', '.join(SCENARIOS)}")
    if args.minutes < 1:
        parser.error("--minutes must be at least 1")
    return args


def read_log_events(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a log file (other lines, e.g. a traceback, are skipped)."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def log_has_event(log: Path, event: str) -> Callable[[], bool]:
    def ready() -> bool:
        return any(found.get("event") == event for found in read_log_events(log))

    return ready


class Simulator:
    """The exchange simulator's control API (faults) over loopback HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, timeout=5.0)

    def healthy(self) -> bool:
        try:
            return self._http.get("/_sim/health").status_code == 200
        except httpx.HTTPError:
            return False

    def arm(self, faults: Sequence[dict[str, Any]]) -> None:
        self.clear()
        for fault in faults:
            self._http.post("/_sim/faults", json=fault).raise_for_status()

    def clear(self) -> None:
        self._http.delete("/_sim/faults").raise_for_status()

    def close(self) -> None:
        self._http.close()


def round_closed(answer: oracle_pb2.GetPriceResponse, minute: int) -> bool:
    """True when the aggregate holds all three exchanges' closes of `minute`."""
    if not answer.success or answer.data_points != len(EXCHANGES):
        return False
    return {point.source for point in answer.recent_prices if point.timestamp == minute} == set(
        EXCHANGES
    )


def sleep_until(wall_time: float) -> None:
    while (remaining := wall_time - time.time()) > 0:
        time.sleep(min(remaining, 0.5))


def measure_round(
    stub: oracle_pb2_grpc.OracleServiceStub, simulator: Simulator, faults: list[dict[str, Any]]
) -> Round:
    """Arm the faults before the next boundary, then poll until the round closes."""
    boundary = (int(time.time() + ARM_BEFORE_S + 0.5) // MINUTE + 1) * MINUTE
    sleep_until(boundary - ARM_BEFORE_S)
    simulator.arm(faults)
    sleep_until(boundary - 0.2)
    current = Round(boundary)
    request = oracle_pb2.GetPriceRequest()
    while time.time() < boundary + CLOSE_TIMEOUT_S:
        try:
            answer = stub.GetAggregatedPrice(request, timeout=2.0)
        except grpc.RpcError:
            answer = None
        if answer is not None and round_closed(answer, boundary - MINUTE):
            current.closed_after_s = time.time() - boundary
            break
        time.sleep(POLL_INTERVAL_S)
    return current


def fill_from_logs(rounds: list[Round], node_logs: dict[str, Path]) -> None:
    """Each node's own view of each round: fetch start skew, fetch latency, attempts."""
    by_minute = {format_minute(r.boundary - MINUTE): r for r in rounds}
    for exchange, log in node_logs.items():
        for event in read_log_events(log):
            found = by_minute.get(str(event.get("minute")))
            if found is None:
                continue
            if event.get("event") == "fetch_started" and "skew_ms" in event:
                found.skew_ms.setdefault(exchange, float(event["skew_ms"]))
            elif event.get("event") == "fetch_finished":
                found.latency_ms[exchange] = float(event.get("latency_ms", "nan"))
                found.attempts[exchange] = int(event.get("attempts", 0))


def spread(values: Sequence[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{percentile(ordered, 0.5):.0f} / {ordered[-1]:.0f}"


def scenario_row(name: str, rounds: list[Round]) -> tuple[list[str], dict[str, Any]]:
    closed = sorted(r.closed_after_s for r in rounds if r.closed_after_s is not None)
    missed = sum(r.closed_after_s is None for r in rounds)
    p50 = percentile(closed, 0.5) if closed else None
    cells = [name, str(len(rounds))]
    cells += [spread([r.skew_ms[e] for r in rounds if e in r.skew_ms]) for e in EXCHANGES]
    cells += [spread([r.latency_ms[e] for r in rounds if e in r.latency_ms]) for e in EXCHANGES]
    cells.append(f"{p50:.2f} / {closed[-1]:.2f}" if p50 is not None else "never")
    cells.append(str(missed))
    if name == "normal" and p50 is not None:
        cells.append(
            f"p50 < {GOAL_CLOSE_P50_S:g} s " + ("met" if p50 < GOAL_CLOSE_P50_S else "MISSED")
        )
    else:
        cells.append("")
    figures = {
        "scenario": name,
        "description": SCENARIOS[name][0],
        "rounds": [r.__dict__ for r in rounds],
        "close_p50_s": p50,
        "close_max_s": closed[-1] if closed else None,
        "not_closed": missed,
    }
    return cells, figures


def table(rows: list[list[str]]) -> str:
    header = [
        "scenario",
        "rounds",
        *(f"{e} start skew ms p50/max" for e in EXCHANGES),
        *(f"{e} fetch ms p50/max" for e in EXCHANGES),
        "boundary -> closed s p50/max",
        "not closed",
        "goal",
    ]
    return markdown_table(header, rows)


def start_all(
    stack: ExitStack, log_dir: Path, coinbase_lag: float
) -> tuple[str, Simulator, dict[str, Path]]:
    """Simulator, aggregator (--simulate) and three nodes; returns the aggregator address."""
    port_file = log_dir / "exchange-sim.port"
    sim = stack.enter_context(
        ServiceProcess(
            "exchange-sim",
            [
                venv_command("exchange-sim"),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--port-file",
                str(port_file),
                "--coinbase-lag-seconds",
                repr(coinbase_lag),
                "--log-file",
                str(log_dir / "exchange-sim.log"),
            ],
            log_dir,
        )
    )
    sim.wait_until(lambda: port_file.exists() and port_file.read_text().strip().isdigit())
    sim_url = f"http://127.0.0.1:{port_file.read_text().strip()}"
    simulator = Simulator(sim_url)
    stack.callback(simulator.close)
    sim.wait_until(simulator.healthy)

    port = free_port()
    aggregator = stack.enter_context(
        ServiceProcess(
            "aggregator",
            [
                venv_command("aggregator"),
                # The nodes here run unsigned: this measures collection latency, not signing.
                "--allow-unsigned",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--simulate",
                "--log-file",
                str(log_dir / "aggregator.log"),
                # Any free port: a fixed one could be held by a running system or another bench.
                "--metrics-port",
                "0",
            ],
            log_dir,
        )
    )
    target = f"127.0.0.1:{port}"
    aggregator.wait_until(lambda: grpc_answers(target))

    node_logs: dict[str, Path] = {}
    for index, exchange in enumerate(EXCHANGES, start=1):
        log = log_dir / f"node{index}_{exchange}.log"
        node_logs[exchange] = log
        node = stack.enter_context(
            ServiceProcess(
                f"node{index}_{exchange}",
                [
                    venv_command("oracle-node"),
                    "--exchange",
                    exchange,
                    "--node-id",
                    f"bench-node-{index}-{exchange}",
                    "--aggregator-url",
                    f"http://{target}",
                    "--metrics-port",
                    "0",
                    "--interval",
                    "60",
                    "--simulate",
                    "--api-url",
                    sim_url,
                    "--log-file",
                    str(log),
                    "--log-level",
                    "info",
                    "--run-dir",  # the node-id lock beside the logs, not in the repository
                    str(log_dir / "run"),
                ],
                log_dir,
            )
        )
        node.wait_until(log_has_event(log, "node_started"))
    return target, simulator, node_logs


def smoke(simulator: Simulator, target: str, log_dir: Path) -> list[list[str]]:
    """One `oracle-node --once` per venue against the simulator: the fetch path works."""
    rows = []
    for exchange in EXCHANGES:
        started = time.perf_counter()
        once = ServiceProcess(
            f"once_{exchange}",
            [
                venv_command("oracle-node"),
                "--exchange",
                exchange,
                "--simulate",
                "--api-url",
                simulator.base_url,
                "--once",
                "--log-file",
                str(log_dir / f"once_{exchange}.log"),
            ],
            log_dir,
        )
        code = once.proc.wait(timeout=60)
        once.stop()
        wall_ms = (time.perf_counter() - started) * 1000
        output = once.log_path.read_text(encoding="utf-8").strip().splitlines()
        if code != 0 or not output:
            raise RuntimeError(
                f"oracle-node --once for {exchange} failed ({code}):\n{once.log_tail()}"
            )
        candle = json.loads(output[-1])
        rows.append(
            [
                exchange,
                format_minute(int(candle["minute"])),
                str(candle["close"]),
                f"{candle['latency_ms']:.0f}",
                f"{wall_ms:.0f}",
            ]
        )
    simulator.arm([{"venue": "kraken", "slow": {"delay_seconds": 0.1, "count": 1}}])
    simulator.clear()
    with grpc.insecure_channel(target) as channel:
        health = oracle_pb2_grpc.OracleServiceStub(channel).HealthCheck(
            oracle_pb2.HealthRequest(node_id="bench-collection"), timeout=5
        )
    if not health.simulated:
        raise RuntimeError("the aggregator does not say SIMULATED in simulate mode")
    return rows


def start_times(node_logs: dict[str, Path]) -> str:
    """When each node logged node_started (UTC), for the record."""
    return ", ".join(
        f"{exchange} {datetime.fromisoformat(event['timestamp']).time()}"
        for exchange, log in node_logs.items()
        for event in read_log_events(log)
        if event.get("event") == "node_started" and "timestamp" in event
    )


def main() -> int:
    args = parse_args()
    info = machine()
    print(f"Machine: {machine_line(info)}", flush=True)
    document: dict[str, Any] = {"machine": info, "settings": {"minutes": args.minutes}}
    with tempfile.TemporaryDirectory(prefix="bench-collection-") as tmp, ExitStack() as stack:
        log_dir = args.log_dir or Path(tmp)
        log_dir.mkdir(parents=True, exist_ok=True)
        try:
            target, simulator, node_logs = start_all(stack, log_dir, args.coinbase_lag)
            print(f"started simulator, aggregator --simulate, 3 nodes: {start_times(node_logs)}")
            if args.smoke:
                rows = smoke(simulator, target, log_dir)
                print("\nSmoke: one `oracle-node --once` fetch per venue from the simulator:\n")
                print(markdown_table(["venue", "minute", "close", "fetch ms", "process ms"], rows))
                document["smoke"] = rows
            else:
                rows, figures = run_scenarios(args, simulator, target, node_logs)
                print(
                    f"\nCollection timing ({args.minutes} boundaries per scenario; skew = fetch "
                    "start after XX:00 as each node logs it; closed = all three exchanges' "
                    "closes of the minute in GetAggregatedPrice):\n"
                )
                print(table(rows))
                for found in figures:
                    print(f"  {found['scenario']}: {found['description']}")
                document["scenarios"] = figures
        except (RuntimeError, httpx.HTTPError) as error:
            print(f"benchmark failed: {error}", file=sys.stderr)
            return 1
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"\nfigures written to {args.json}")
    return 0


def run_scenarios(
    args: argparse.Namespace, simulator: Simulator, target: str, node_logs: dict[str, Path]
) -> tuple[list[list[str]], list[dict[str, Any]]]:
    rows, figures = [], []
    with grpc.insecure_channel(target) as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        for name in args.scenario_names:
            description, faults = SCENARIOS[name]
            rounds = []
            for index in range(args.minutes):
                print(
                    f"  {name} ({description}): boundary {index + 1}/{args.minutes} ...",
                    file=sys.stderr,
                    flush=True,
                )
                rounds.append(measure_round(stub, simulator, faults))
            simulator.clear()
            # Give the nodes a moment to log the last round's fetch before reading the logs.
            time.sleep(1.0)
            fill_from_logs(rounds, node_logs)
            cells, found = scenario_row(name, rounds)
            rows.append(cells)
            figures.append(found)
    return rows, figures


if __name__ == "__main__":
    sys.exit(main())
