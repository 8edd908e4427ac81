"""The aggregator's own cost per call, in process and without gRPC, optionally under cProfile.

Over loopback gRPC, the aggregator's Python handlers are a small part of each call and the
figures move with whatever else the machine runs. Calling the real servicer's handlers directly
(the server built by `aggregator.server.build_server`, logging configured as the CLI does, to a
file) measures just the code the aggregator adds on top of a bare gRPC server, steadily enough to
compare before and after a change. With `--cprofile`, the functions that cost the most are listed.

    .venv/bin/python -m bench.profile_aggregator --nodes 90 --calls 20000 --cprofile
    (with PYTHONPATH=scripts, or from scripts/bench_aggregator.py, which runs it too)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import grpc

from aggregator.config import AggregatorConfig
from aggregator.server import build_server
from aggregator.service import OracleServicer
from bench.aggregator_host import BENCH_AUTH, BENCH_LIMITS
from bench.traffic import ServerClock, SubmitStream, fresh_seed_requests
from common.logsetup import configure_logging
from common.proto import oracle_pb2


@dataclass
class SteppedClock:
    """Candle time that advances a fixed step per call, as it does between calls over gRPC.

    With the real clock, calls made back to back in process would see a new candle minute
    only every few thousand calls, far fewer than the gRPC run at the same clock speed, and
    the per-minute work (a new aggregate, its log line) would be undercounted.
    """

    current: float
    step: float

    def now(self) -> float:
        return self.current

    def advance(self) -> None:
        self.current += self.step


class _Context:
    """The one ServicerContext method the handlers use on their error path."""

    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise RuntimeError(f"{code.name}: {details}")


async def _measure(
    nodes: int,
    calls: int,
    step: float,
    profiles: dict[str, cProfile.Profile] | None,
) -> dict[str, float]:
    clock = SteppedClock(time.time(), step)
    bound = build_server(
        AggregatorConfig(host="127.0.0.1", port=0, auth=BENCH_AUTH, limits=BENCH_LIMITS),
        clock=clock.now,
    )
    servicer = bound.servicer
    context: Any = _Context()
    slots = 16  # as many streams as the 16-in-flight level of the gRPC benchmark
    streams = [
        SubmitStream(f"p{slot}", max(1, nodes // slots), clock, simulated=False)
        for slot in range(slots)
    ]

    async def submit(count: int) -> float:
        started = time.perf_counter()
        for index in range(count):
            await servicer.SubmitPrice(streams[index % slots].next_request(), context)
            clock.advance()
        return (time.perf_counter() - started) / count * 1e6

    async def read(reader: OracleServicer, count: int) -> float:
        request = oracle_pb2.GetPriceRequest()
        started = time.perf_counter()
        for _ in range(count):
            await reader.GetAggregatedPrice(request, context)
        return (time.perf_counter() - started) / count * 1e6

    await submit(max(1, calls // 10))  # warm up: fill the window and the node table
    if profiles is not None:
        profiles["SubmitPrice"].enable()
    submit_us = await submit(calls)
    if profiles is not None:
        profiles["SubmitPrice"].disable()
    # Reads on the real clock with a fresh three-exchange aggregate, as in the gRPC benchmark.
    reading = build_server(
        AggregatorConfig(host="127.0.0.1", port=0, auth=BENCH_AUTH, limits=BENCH_LIMITS)
    )
    for seed in fresh_seed_requests(ServerClock(time.time()), simulated=False):
        await reading.servicer.SubmitPrice(seed, context)
    if profiles is not None:
        profiles["GetAggregatedPrice"].enable()
    get_us = await read(reading.servicer, calls)
    if profiles is not None:
        profiles["GetAggregatedPrice"].disable()
    for built in (bound, reading):
        await built.server.stop(None)
    return {"submit_us_per_call": submit_us, "get_us_per_call": get_us}


def measure(
    nodes: int = 90,
    calls: int = 20_000,
    speed: float = 6000.0,
    calls_per_second: float = 4000.0,
    *,
    cprofile: bool = False,
) -> tuple[dict[str, float], str]:
    """Handler cost per call (µs) and, with `cprofile`, the top of each handler's profile."""
    profiles = (
        {rpc: cProfile.Profile() for rpc in ("SubmitPrice", "GetAggregatedPrice")}
        if cprofile
        else None
    )
    figures = asyncio.run(_measure(nodes, calls, speed / calls_per_second, profiles))
    out = io.StringIO()
    for rpc, profile in (profiles or {}).items():
        out.write(f"--- {rpc} (cProfile, by own time)\n")
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(15)
    return figures, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=90)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--clock-speed", type=float, default=6000.0)
    parser.add_argument(
        "--calls-per-second",
        type=float,
        default=4000.0,
        help="the gRPC call rate whose candle-minute pace to reproduce",
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        configure_logging(args.log_level, Path(tmp) / "aggregator.log", service="aggregator")
        settings = (args.nodes, args.calls, args.clock_speed, args.calls_per_second)
        # Timed without the profiler (it would inflate every call), then profiled separately.
        figures, _ = measure(*settings)
        profile_text = measure(*settings, cprofile=True)[1] if args.cprofile else ""
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"aggregator handlers in process, no gRPC ({args.nodes} nodes, candle clock "
        f"{args.clock_speed:g}x paced as {args.calls_per_second:g} calls/s, log level "
        f"{args.log_level}): SubmitPrice {figures['submit_us_per_call']:.1f} us/call, "
        f"GetAggregatedPrice {figures['get_us_per_call']:.1f} us/call"
    )
    if profile_text:
        print(profile_text)


if __name__ == "__main__":
    main()
