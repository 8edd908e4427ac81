"""The real aggregator server in its own process, driven by an accelerated clock (memory run).

A million submissions at a few thousand per second take minutes of wall time, during which the
real clock moves only a few candle minutes: the run could then never show whether old minutes
leave memory. Here the unchanged server from `aggregator.server.create_server` gets a clock that
runs `speed` times faster than real time from `t0` (the load generator computes "now" with the same
formula), so the same run spans many hours of candle minutes. Only the clock differs from the
`aggregator` CLI; logging is configured the same way, to a file. Prints `PORT <n>` when listening.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from aggregator.config import AggregatorConfig, AuthConfig, LimitsConfig
from aggregator.server import create_server
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


async def serve(port: int, clock: ServerClock, simulate: bool) -> None:
    server, bound = create_server(
        AggregatorConfig(
            host="127.0.0.1", port=port, simulate=simulate, auth=BENCH_AUTH, limits=BENCH_LIMITS
        ),
        clock=clock.now,
    )
    await serve_until_signalled(server, bound, grace=2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--t0", type=float, required=True)
    parser.add_argument("--speed", type=float, required=True)
    parser.add_argument("--log-file", type=Path, required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--simulate", action="store_true")
    args = parser.parse_args()
    configure_logging(args.log_level, args.log_file, service="aggregator")
    asyncio.run(serve(args.port, ServerClock(args.t0, args.speed), args.simulate))


if __name__ == "__main__":
    main()
