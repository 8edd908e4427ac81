"""Durable history (SQLite) figures: group commit, database size, restart time, reads, pruning.

Runs the real `SqliteHistoryStore` in process, on a real file system (not tmpfs: fsync must cost
what it costs on the aggregator's disk), and prints Markdown tables:

- group commit: acknowledged observations/s and latency with 1, 16 and 64 concurrent writers,
  under `synchronous = FULL` (the default: fsync per commit) and `NORMAL`, and how many writes
  shared each commit;
- size: a day of three nodes (3 signed BTC observations, 2 USDT/USD rate observations, 1 round
  and 3 node rows per minute) and the file after 1,000,000 signed observations;
- restart: open (lock, integrity check, migrations) + `recover(now, 600)` on a 30-day database
  (goal under 2 s), and on the 1,000,000-observation one;
- reads: `get_round` and `rounds(limit=100)` calls/s (the store's share of GetRound and
  GetPriceHistory);
- pruning: write latency while retention prunes a day of backlog, against without.

    .venv/bin/python scripts/bench_history.py                  # full run (~5 minutes)
    .venv/bin/python scripts/bench_history.py --smoke          # seconds: CI keeps it working
    .venv/bin/python scripts/bench_history.py --json bench-results/history.json

`run(options)` returns the same document as `--json`, for `bench_aggregator.py` to include.
Exit status 0 when the benchmark ran (goals missed are reported, not failed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.report import machine, machine_line, markdown_table

from aggregator.store import NodeRecordRow, ObservationRecord, RoundRecord, SqliteHistoryStore
from aggregator.store.writer import WriterStats
from common.logsetup import configure_logging
from common.proto import oracle_pb2

GOAL_RESTART_SECONDS = 2.0
MINUTE = 60
DAY_MINUTES = 1440
# A fixed start minute keeps runs comparable.
START = 1_795_000_000 // MINUTE * MINUTE
EXCHANGES = ("binance", "coinbase", "kraken")
SYMBOLS = {"binance": "BTCUSDT", "coinbase": "BTC-USD", "kraken": "XBTUSD"}
RATE_SYMBOLS = {"coinbase": "USDT-USD", "kraken": "USDTUSD"}


@dataclass(frozen=True)
class Options:
    concurrency: tuple[int, ...] = (1, 16, 64)
    duration: float = 5.0
    days: int = 30
    observations: int = 1_000_000
    restarts: int = 3
    smoke: bool = False
    directory: Path | None = None


class Clock:
    """The store's clock, set by the benchmark (retention must see the simulated days)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def signed_observation(
    exchange: str, node_id: str, minute: int, price: Decimal
) -> ObservationRecord:
    return ObservationRecord(
        exchange=exchange,
        node_id=node_id,
        minute=minute,
        base="BTC",
        quote="USDT" if exchange == "binance" else "USD",
        symbol=SYMBOLS[exchange],
        price=price,
        received_at=minute + 60.4,
        simulated=False,
        signature=os.urandom(64),
        public_key=bytes(32),
    )


def rate_observation(exchange: str, minute: int) -> ObservationRecord:
    return ObservationRecord(
        exchange=exchange,
        node_id=f"{exchange}-node",
        minute=minute,
        base="USDT",
        quote="USD",
        symbol=RATE_SYMBOLS[exchange],
        price=Decimal("0.99987"),
        received_at=minute + 60.5,
        simulated=False,
        signature=os.urandom(64),
        public_key=bytes(32),
    )


def realistic_round(minute: int, price_e8: int) -> RoundRecord:
    """A round as the aggregator serves it: three inputs, each with its signed node report."""
    inputs = [
        oracle_pb2.RoundInput(
            source=exchange,
            price=price_e8 / 1e8,
            price_e8=price_e8,
            quote="USDT" if exchange == "binance" else "USD",
            usd_price=price_e8 / 1e8,
            usd_price_e8=price_e8,
            minute=minute,
            deviation=0.0001,
            observations=[
                oracle_pb2.NodeObservation(
                    node_id=f"{exchange}-node",
                    price=price_e8 / 1e8,
                    price_e8=price_e8,
                    quote="USD",
                    symbol=SYMBOLS[exchange],
                    received_at_ms=(minute + 60) * 1000 + 412,
                    signature=os.urandom(64),
                    public_key=os.urandom(32),
                )
            ],
        )
        for exchange in EXCHANGES
    ]
    served = oracle_pb2.Round(
        minute=minute,
        status=oracle_pb2.PRICE_STATUS_OK,
        price=price_e8 / 1e8,
        price_e8=price_e8,
        confidence=12.5,
        confidence_e8=1_250_000_000,
        method=oracle_pb2.AGGREGATION_METHOD_MEAN,
        inputs=inputs,
        closed=True,
        closed_at_ms=(minute + 60) * 1000 + 450,
        close_reason=oracle_pb2.ROUND_CLOSE_REASON_ALL_REPORTED,
        usdt_converted=True,
        usdt_usd_rate=0.99987,
        expected_sources=list(EXCHANGES),
        message="OK: 3 of 3 exchanges, mean",
    )
    return RoundRecord(
        minute, oracle_pb2.PRICE_STATUS_OK, minute + 60.45, False, served.SerializeToString()
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(fraction * len(ordered) + 0.5) - 1))]


def file_bytes(path: Path) -> int:
    """The database and its WAL (after a clean close the WAL is truncated to nothing)."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


# -- group commit ------------------------------------------------------------------------------


async def _writers(
    store: SqliteHistoryStore, concurrency: int, duration: float, run: int, first: int = START
) -> tuple[int, list[float]]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration

    async def writer(index: int) -> None:
        sequence = 0
        while time.perf_counter() < stop_at:
            record = signed_observation(
                EXCHANGES[index % 3],
                f"r{run}-w{index}",
                first + MINUTE * sequence,
                Decimal("100000.25") + sequence,
            )
            began = time.perf_counter()
            await store.add_observation(record)
            latencies.append(time.perf_counter() - began)
            sequence += 1

    await asyncio.gather(*(writer(i) for i in range(concurrency)))
    return len(latencies), latencies


def bench_group_commit(directory: Path, options: Options) -> list[dict[str, Any]]:
    rows = []
    for synchronous in ("FULL", "NORMAL"):
        for concurrency in options.concurrency:
            path = directory / f"commit-{synchronous}-{concurrency}.sqlite3"
            store = SqliteHistoryStore(
                path, simulate=False, clock=Clock(START), synchronous=synchronous
            )

            async def measure(
                store: SqliteHistoryStore = store, n: int = concurrency
            ) -> tuple[int, list[float], float, float, WriterStats, WriterStats]:
                await _writers(store, n, min(0.5, options.duration / 4), 0)  # warm-up
                before = store.stats()
                began, cpu_began = time.perf_counter(), time.process_time()
                count, latencies = await _writers(store, n, options.duration, 1)
                elapsed = time.perf_counter() - began
                cpu = time.process_time() - cpu_began
                after = store.stats()
                await store.close()
                return count, latencies, elapsed, cpu, before, after

            count, latencies, elapsed, cpu, before, after = asyncio.run(measure())
            commits = max(1, after.batches - before.batches)
            rows.append(
                {
                    "synchronous": synchronous,
                    "concurrency": concurrency,
                    "writes": count,
                    "writes_per_s": count / elapsed,
                    "p50_ms": percentile(latencies, 0.5) * 1000,
                    "p99_ms": percentile(latencies, 0.99) * 1000,
                    "commits": commits,
                    "writes_per_commit": (after.writes - before.writes) / commits,
                    # Both threads (event loop and writer) and the kernel's share of the fsync:
                    # what history adds to the aggregator's CPU per acknowledged observation.
                    "cpu_us_per_write": cpu / max(1, count) * 1e6,
                }
            )
            _remove(path)
    return rows


# -- size, restart and reads ------------------------------------------------------------------


async def _write_minutes(store: SqliteHistoryStore, first: int, minutes: int) -> None:
    """Three nodes' traffic, an hour of minutes per gather (the size, not the speed, matters)."""
    for hour_start in range(0, minutes, 60):
        writes: list[Awaitable[None]] = []
        for offset in range(hour_start, min(minutes, hour_start + 60)):
            minute = first + offset * MINUTE
            price = Decimal(100_000) + Decimal(offset % 5000) / 7
            price = price.quantize(Decimal("0.01"))
            writes.extend(
                store.add_observation(signed_observation(e, f"{e}-node", minute, price))
                for e in EXCHANGES
            )
            writes.extend(store.add_observation(rate_observation(e, minute)) for e in RATE_SYMBOLS)
            writes.append(store.add_round(realistic_round(minute, int(price * 100_000_000))))
            writes.extend(
                store.touch_node(NodeRecordRow(f"{e}-node", e, minute + 60.4, offset + 1))
                for e in EXCHANGES
            )
        await asyncio.gather(*writes)


def build_days(path: Path, days: int, minutes_per_day: int = DAY_MINUTES) -> float:
    """A database holding `days` days of three nodes; returns the store clock at the end."""
    end = START + days * minutes_per_day * MINUTE
    clock = Clock(end)
    store = SqliteHistoryStore(path, simulate=False, clock=clock, retention_days=max(30, days + 1))

    async def fill() -> None:
        await _write_minutes(store, START, days * minutes_per_day)
        await store.close()

    asyncio.run(fill())
    return end


def build_observations(path: Path, count: int) -> float:
    """`count` signed observations from 90 nodes over three exchanges; the clock at the end."""
    nodes = 90
    minutes = count // nodes + 1
    end = START + minutes * MINUTE
    store = SqliteHistoryStore(
        path, simulate=False, clock=Clock(end), retention_days=max(30, minutes // DAY_MINUTES + 2)
    )

    async def fill() -> None:
        written = 0
        chunk: list[Awaitable[None]] = []
        for minute_index in range(minutes):
            for node in range(nodes):
                if written == count:
                    break
                exchange = EXCHANGES[node % 3]
                chunk.append(
                    store.add_observation(
                        signed_observation(
                            exchange,
                            f"{exchange}-node-{node}",
                            START + minute_index * MINUTE,
                            Decimal("100000.5") + minute_index,
                        )
                    )
                )
                written += 1
            if len(chunk) >= 2000:
                await asyncio.gather(*chunk)
                chunk = []
        await asyncio.gather(*chunk)
        await store.close()

    asyncio.run(fill())
    return end


def time_restart(path: Path, now: float, restarts: int, retention_days: int) -> dict[str, float]:
    """Open (lock, checks, migrations) + recover(now, 600) + close, several times."""
    opens, recovers = [], []
    recovered = 0
    for _ in range(restarts):
        began = time.perf_counter()
        store = SqliteHistoryStore(
            path, simulate=False, clock=Clock(now), retention_days=retention_days
        )
        opened = time.perf_counter()
        state = store.recover(now, 600)
        recovered = len(state.observations) + len(state.rounds) + len(state.nodes)
        recovers.append(time.perf_counter() - opened)
        opens.append(opened - began)
        asyncio.run(store.close())
    return {
        "open_s": statistics.median(opens),
        "recover_s": statistics.median(recovers),
        "total_s": statistics.median([o + r for o, r in zip(opens, recovers, strict=True)]),
        "worst_total_s": max(o + r for o, r in zip(opens, recovers, strict=True)),
        "recovered_records": recovered,
    }


def time_reads(path: Path, now: float, days: int, seconds: float) -> dict[str, float]:
    store = SqliteHistoryStore(path, simulate=False, clock=Clock(now), retention_days=days + 1)
    total_minutes = days * DAY_MINUTES
    figures: dict[str, float] = {}

    def rate(call: Callable[[int], object]) -> float:
        calls = 0
        began = time.perf_counter()
        while (elapsed := time.perf_counter() - began) < seconds:
            call(calls)
            calls += 1
        return calls / elapsed

    figures["get_round_per_s"] = rate(
        lambda i: store.get_round(START + (i * 7919 % total_minutes) * MINUTE)
    )
    figures["rounds_100_per_s"] = rate(
        lambda i: store.rounds(
            None, None, 100, START + (100 + i * 7919 % (total_minutes - 100)) * MINUTE
        )
    )
    sample = store.rounds(None, None, 100, None)
    figures["rounds_100_returned"] = len(sample)
    asyncio.run(store.close())
    return figures


def bench_pruning(path: Path, end: float, days: int, duration: float) -> dict[str, float]:
    """16 writers for `duration` s with nothing to prune, then with the clock one day later,
    while retention prunes the oldest day of the file in small steps."""
    figures: dict[str, float] = {}
    for label, now in (("idle", end), ("pruning", START + (days + 1) * 86_400)):
        store = SqliteHistoryStore(
            path, simulate=False, clock=Clock(now), retention_days=days, prune_interval=3600
        )

        async def measure(
            store: SqliteHistoryStore = store, label: str = label, now: float = now
        ) -> tuple[int, list[float], int, WriterStats]:
            first = int(now) // MINUTE * MINUTE
            pruning = None
            if label == "pruning":
                # New data has arrived, so the oldest day is past retention (pruning follows
                # the newest data, never the clock alone).
                await store.add_observation(signed_observation("kraken", "new", first, Decimal(1)))
                pruning = asyncio.create_task(store.prune())
            count, latencies = await _writers(store, 16, duration, 7 if pruning else 6, first)
            pruned = await pruning if pruning else 0
            steps = store.stats()
            await store.close()
            return count, latencies, pruned, steps

        count, latencies, pruned, steps = asyncio.run(measure())
        figures[f"{label}_writes_per_s"] = count / duration
        figures[f"{label}_p99_ms"] = percentile(latencies, 0.99) * 1000
        figures[f"{label}_max_ms"] = max(latencies) * 1000
        if label == "pruning":
            # All of the run's steps: the writer may start pruning at open, before prune() asks.
            figures["pruned_rows"] = max(pruned, steps.maintenance_rows)
            figures["prune_steps"] = steps.maintenance_steps
            figures["largest_prune_step_rows"] = steps.largest_maintenance_step
    return figures


# -- the run ----------------------------------------------------------------------------------


def run(options: Options) -> dict[str, Any]:
    base = options.directory or Path.cwd() / "data"
    base.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="bench-history-", dir=base))
    try:
        document: dict[str, Any] = {"machine": machine(), "smoke": options.smoke}
        document["directory"] = str(directory)
        document["group_commit"] = bench_group_commit(directory, options)

        minutes_per_day = 24 if options.smoke else DAY_MINUTES  # smoke: a "day" of 24 minutes
        one_day = directory / "one-day.sqlite3"
        build_days(one_day, 1, minutes_per_day)
        month = directory / "month.sqlite3"
        month_end = build_days(month, options.days, minutes_per_day)
        document["size"] = {
            "one_day_bytes": file_bytes(one_day),
            "days": options.days,
            "month_bytes": file_bytes(month),
            "per_day_bytes": file_bytes(month) / options.days,
            "minutes_per_day": minutes_per_day,
        }
        document["restart_month"] = time_restart(
            month, month_end, options.restarts, options.days + 1
        )
        read_days = max(1, options.days * minutes_per_day // DAY_MINUTES)
        document["reads"] = time_reads(month, month_end, read_days, 0.2 if options.smoke else 2.0)
        document["pruning"] = bench_pruning(
            month, month_end, options.days, 0.3 if options.smoke else 3.0
        )

        million = directory / "observations.sqlite3"
        million_end = build_observations(million, options.observations)
        document["observations"] = {
            "count": options.observations,
            "bytes": file_bytes(million),
            "bytes_per_observation": file_bytes(million) / options.observations,
        }
        document["restart_observations"] = time_restart(
            million, million_end, options.restarts, options.observations // 90 // DAY_MINUTES + 2
        )
        return document
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def megabytes(value: float) -> str:
    return f"{value / 1_000_000:,.2f} MB"


def restart_text(figures: dict[str, float]) -> str:
    return (
        f"{figures['total_s'] * 1000:,.0f} ms (open {figures['open_s'] * 1000:,.0f}, recover "
        f"{figures['recover_s'] * 1000:,.1f}; worst {figures['worst_total_s'] * 1000:,.0f})"
    )


def report(document: dict[str, Any]) -> str:
    lines = [f"Machine: {machine_line(document['machine'])}"]
    if document["smoke"]:
        lines.append("SMOKE RUN: tiny sizes, figures mean nothing")
    lines += [
        "",
        markdown_table(
            [
                "History: add_observation",
                "synchronous",
                "writers",
                "writes/s",
                "p50 ms",
                "p99 ms",
                "writes per commit",
                "CPU us/write",
            ],
            [
                [
                    "group commit, signed observations",
                    row["synchronous"],
                    str(row["concurrency"]),
                    f"{row['writes_per_s']:,.0f}",
                    f"{row['p50_ms']:.2f}",
                    f"{row['p99_ms']:.2f}",
                    f"{row['writes_per_commit']:.1f}",
                    f"{row['cpu_us_per_write']:.0f}",
                ]
                for row in document["group_commit"]
            ],
        ),
    ]
    size = document["size"]
    observations = document["observations"]
    month = document["restart_month"]
    million = document["restart_observations"]
    reads = document["reads"]
    pruning = document["pruning"]
    met = "met" if month["worst_total_s"] < GOAL_RESTART_SECONDS else "MISSED"
    met_million = "met" if million["worst_total_s"] < GOAL_RESTART_SECONDS else "MISSED"
    lines += [
        "",
        markdown_table(
            ["History: size, restart, reads", "figure", "goal"],
            [
                [
                    "database per day, 3 nodes (5 observations + 1 round per minute)",
                    megabytes(size["per_day_bytes"])
                    + f" ({size['days']}-day file / {size['days']})",
                    "",
                ],
                ["database after 1 day", megabytes(size["one_day_bytes"]), ""],
                [f"database after {size['days']} days", megabytes(size["month_bytes"]), ""],
                [
                    f"database after {observations['count']:,} signed observations",
                    megabytes(observations["bytes"])
                    + f" ({observations['bytes_per_observation']:.0f} B each)",
                    "",
                ],
                [
                    f"restart ({size['days']}-day file): open + recover",
                    restart_text(month),
                    f"< {GOAL_RESTART_SECONDS:.0f} s {met}",
                ],
                [
                    f"restart ({observations['count']:,}-observation file)",
                    restart_text(million),
                    f"< {GOAL_RESTART_SECONDS:.0f} s {met_million}",
                ],
                ["get_round (in process)", f"{reads['get_round_per_s']:,.0f} calls/s", ""],
                ["rounds(limit=100) (in process)", f"{reads['rounds_100_per_s']:,.0f} calls/s", ""],
                [
                    "16 writers, no pruning: p99 / max",
                    f"{pruning['idle_p99_ms']:.2f} / {pruning['idle_max_ms']:.2f} ms "
                    f"({pruning['idle_writes_per_s']:,.0f} writes/s)",
                    "",
                ],
                [
                    f"16 writers while pruning {pruning['pruned_rows']:,.0f} rows: p99 / max",
                    f"{pruning['pruning_p99_ms']:.2f} / {pruning['pruning_max_ms']:.2f} ms "
                    f"({pruning['pruning_writes_per_s']:,.0f} writes/s; "
                    f"{pruning['prune_steps']:,.0f} steps of <= "
                    f"{pruning['largest_prune_step_rows']:,.0f} rows)",
                    "",
                ],
            ],
        ),
    ]
    return "\n".join(lines)


def parse_options(argv: list[str] | None = None) -> tuple[Options, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,16,64", help="writers per group-commit row")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per row")
    parser.add_argument("--days", type=int, default=30, help="days in the restart database")
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="where the databases go (default: data/)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: seconds, for CI")
    args = parser.parse_args(argv)
    try:
        concurrency = tuple(int(part) for part in args.concurrency.split(","))
    except ValueError:
        parser.error(f"--concurrency: expected integers like 1,16,64, got {args.concurrency!r}")
    if any(n < 1 for n in concurrency) or args.days < 1 or args.observations < 1:
        parser.error("--concurrency, --days and --observations must be positive")
    if args.smoke:
        options = Options(concurrency, 0.2, 2, 2_000, 1, True, args.dir)
    else:
        options = Options(
            concurrency,
            args.duration,
            args.days,
            args.observations,
            args.restarts,
            False,
            args.dir,
        )
    return options, args.json


def main(argv: list[str] | None = None) -> int:
    options, json_path = parse_options(argv)
    configure_logging("warning")
    document = run(options)
    print(report(document))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"\nfigures written to {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
