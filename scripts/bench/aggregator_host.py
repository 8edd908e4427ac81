"""The real aggregator server in its own process, driven by an accelerated clock (memory run).

A million submissions at a few thousand per second take minutes of wall time, during which the
real clock moves only a few candle minutes: the run could then never show whether old minutes
leave memory. Here the unchanged server from `aggregator.server.create_server` gets a clock that
runs `speed` times faster than real time from `t0` (the load generator computes "now" with the same
formula), so the same run spans many hours of candle minutes. Only the clock differs from the
`aggregator` CLI; logging is configured the same way, to a file. Prints `PORT <n>` when listening.

History: in memory by default (what `[database] enabled = false` gives); `--db-path` opens the
SQLite history there with the same clock, as `serve` does, so "history on" and "history off" are
the same server on the same clock. `--clock-offset` shifts the clock (real speed) so that a
prepared database's last minute is "now" and a start recovers what a real restart would.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from aggregator.config import AggregatorConfig, AuthConfig, LimitsConfig
from aggregator.server import build_server
from aggregator.store import HistoryStore, InMemoryHistoryStore, SqliteHistoryStore
from aggregator.store.opening import Synchronous
from bench.procs import serve_until_signalled
from bench.traffic import ServerClock
from common.logsetup import configure_logging

# The benchmark's load is unsigned and far above the abuse limits meant for three nodes.
BENCH_AUTH = AuthConfig(allow_unsigned=True)
BENCH_LIMITS = LimitsConfig(
    rate=1e6,
    burst=1e6,
    global_rate=1e7,
    global_burst=1e7,
    max_concurrent_rpcs=100_000,
    max_concurrent_streams=10_000,
)


async def serve(
    port: int,
    clock: ServerClock,
    simulate: bool,
    *,
    db_path: Path | None,
    offset: float,
    synchronous: Synchronous = "FULL",
) -> None:
    def now() -> float:
        return clock.now() + offset

    store: HistoryStore
    if db_path is None:
        store = InMemoryHistoryStore(simulate=simulate, clock=now)
    else:
        store = SqliteHistoryStore(db_path, simulate=simulate, clock=now, synchronous=synchronous)
    try:
        bound = build_server(
            AggregatorConfig(
                host="127.0.0.1", port=port, simulate=simulate, auth=BENCH_AUTH, limits=BENCH_LIMITS
            ),
            clock=now,
            store=store,
        )
        await bound.history.persist_recovered()
        await serve_until_signalled(bound.server, bound.port, grace=2.0)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--t0", type=float, required=True)
    parser.add_argument("--speed", type=float, required=True)
    parser.add_argument("--log-file", type=Path, required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--simulate", action="store_true")
    parser.add_argument("--db-path", type=Path, help="SQLite history here (default: in memory)")
    parser.add_argument("--clock-offset", type=float, default=0.0, help="seconds added to now")
    parser.add_argument(
        "--synchronous",
        choices=("FULL", "NORMAL"),
        default="FULL",
        help="SQLite synchronous (NORMAL: no fsync per commit; shows what the fsync costs)",
    )
    args = parser.parse_args()
    configure_logging(args.log_level, args.log_file, service="aggregator")
    clock = ServerClock(args.t0, args.speed)
    asyncio.run(
        serve(
            args.port,
            clock,
            args.simulate,
            db_path=args.db_path,
            offset=args.clock_offset,
            synchronous=args.synchronous,
        )
    )


if __name__ == "__main__":
    main()
