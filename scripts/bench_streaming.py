"""Streaming benchmark: 1,000 subscribers on one server, submissions with and without them, streams.

Three processes on loopback, so the figures are not one event loop measuring itself:

* the server: by default a bench host (`--serve`) that serves the real `SubscriptionHub`,
  `SubmissionStreams` and a small fake submit path (newest price per exchange, idempotent per
  (node, minute), a GetPriceResponse built like the aggregator's), publishing every accepted
  submission to the hub as the wired aggregator will; or, with `--target HOST:PORT`, a running
  aggregator once SubscribePrices and StreamPrices are wired into it;
* the subscribers (`--subscribe`): N SubscribePrices streams over several connections, recording
  when each update arrives;
* this driver: submits, measures, prints a Markdown table (and `--json FILE`).

Rows: the delay from an accepted submission to its delivery at every subscriber (goal: p99 under
100 ms with 1,000 subscribers on 2 cores), measured from just before the SubmitPrice call to the
arrival at the subscriber, at a rate the aggregate really changes at (a few per second at most);
unary SubmitPrice throughput at 16 in flight without and with the subscribers attached (goal:
at least 0.8x, same run), with the server's CPU per call; StreamPrices messages/s against unary
SubmitPrice through the same submit path at the same concurrency. `--smoke`: a tiny run that only
shows everything still works (CI runs it once).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
from bench.procs import ServiceProcess, cpu_seconds, free_port, serve_until_signalled
from bench.report import machine, machine_line, markdown_table
from bench.stats import percentile
from bench.traffic import ServerClock, SubmitStream

from aggregator.stream_submissions import SubmissionStreams
from aggregator.streaming_settings import StreamingSettings
from aggregator.subscriptions import SubscriptionHub
from common.errors import InvalidObservationError, OracleError
from common.exchanges import EXCHANGES
from common.proto import oracle_pb2, oracle_pb2_grpc

DELAY_BASE = 100_000.0  # delay-phase prices are DELAY_BASE + k: each one names its submission
DELAY_NODE = "bench-delay"
LOAD_BASE = 200_000.0
SUBSCRIBERS_PER_CONNECTION = 100
_Context = grpc.aio.ServicerContext[Any, Any]


# -- the bench host: the real hub and stream loop over a fake submit path ---------------------


@dataclass
class BenchOracle:
    """The submit path's shape without the aggregator's rules: what the streaming parts see."""

    hub: SubscriptionHub | None = None
    reports: dict[tuple[str, int], float] = field(default_factory=dict)
    latest: dict[str, tuple[int, float, str]] = field(default_factory=dict)

    async def submit(self, request: oracle_pb2.PriceRequest) -> oracle_pb2.PriceResponse:
        if not math.isfinite(request.price) or request.price <= 0:
            raise InvalidObservationError("price", "must be finite and > 0")
        if request.source not in EXCHANGES:
            raise InvalidObservationError("source", f"unknown exchange {request.source!r}")
        key = (request.node_id, request.timestamp)
        duplicate = key in self.reports
        if not duplicate:
            if len(self.reports) > 200_000:
                self.reports.clear()  # bounded, like the real idempotency horizon
            self.reports[key] = request.price
            self.latest[request.source] = (request.timestamp, request.price, request.node_id)
            if self.hub is not None:
                self.hub.publish_price(
                    aggregate=self.answer(""),
                    exchanges={request.source: self.answer(request.source)},
                )
        response = oracle_pb2.PriceResponse(
            success=True,
            message="Duplicate submission ignored" if duplicate else "Price data received",
            timestamp=int(time.time()),
            duplicate=duplicate,
        )
        aggregate = self.answer("")
        if aggregate.success:
            response.aggregated_price = aggregate.aggregated_price
            response.aggregate_minute = aggregate.aggregate_minute
            response.data_points = aggregate.data_points
        return response

    def answer(self, source: str) -> oracle_pb2.GetPriceResponse:
        inputs = (
            ({source: self.latest[source]} if source in self.latest else {})
            if source
            else self.latest
        )
        if not inputs:
            return oracle_pb2.GetPriceResponse(message="no aggregate yet")
        mean = sum(Decimal(repr(price)) for _, price, _ in inputs.values()) / len(inputs)
        minute = max(minute for minute, _, _ in inputs.values())
        response = oracle_pb2.GetPriceResponse(
            success=True,
            aggregated_price=float(mean),
            data_points=len(inputs),
            aggregate_minute=minute,
            status=oracle_pb2.PRICE_STATUS_OK
            if len(inputs) >= 2
            else oracle_pb2.PRICE_STATUS_DEGRADED,
            message=f"SIMULATED BTC/USD {mean:.2f} from {len(inputs)} exchange(s)",
            simulated=True,
        )
        for exchange, (input_minute, price, node_id) in inputs.items():
            response.recent_prices.add(
                price=price, timestamp=input_minute, source=exchange, node_id=node_id, quote="USD"
            )
        return response


class BenchServicer(oracle_pb2_grpc.OracleServiceServicer):
    def __init__(
        self, oracle: BenchOracle, hub: SubscriptionHub, streams: SubmissionStreams
    ) -> None:
        self._oracle = oracle
        self._hub = hub
        self._streams = streams

    async def SubmitPrice(
        self, request: oracle_pb2.PriceRequest, context: _Context
    ) -> oracle_pb2.PriceResponse:
        try:
            return await self._oracle.submit(request)
        except OracleError as error:
            await context.abort(error.status, str(error))
            raise

    async def HealthCheck(
        self, request: oracle_pb2.HealthRequest, context: _Context
    ) -> oracle_pb2.HealthResponse:
        return oracle_pb2.HealthResponse(healthy=True, message="bench host", simulated=True)

    async def StreamPrices(
        self, request_iterator: AsyncIterator[oracle_pb2.PriceRequest], context: _Context
    ) -> AsyncIterator[oracle_pb2.AggregatedPriceUpdate]:
        async for update in self._streams.stream(request_iterator, context):
            yield update

    async def SubscribePrices(
        self, request: oracle_pb2.SubscribeRequest, context: _Context
    ) -> AsyncIterator[oracle_pb2.PriceUpdate]:
        async for update in self._hub.stream(request, context):
            yield update


async def serve_host(port: int, subscribers: int, interval: float, per_subscriber: float) -> None:
    settings = StreamingSettings(
        max_subscribers=subscribers + 100,
        max_subscribers_per_peer=subscribers + 100,
        min_update_interval_seconds=interval,
        update_interval_per_subscriber_seconds=per_subscriber,
    )
    oracle = BenchOracle()
    hub = SubscriptionHub(settings, snapshot=oracle.answer, exchanges=EXCHANGES)
    oracle.hub = hub
    streams = SubmissionStreams(settings, oracle.submit)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    # The generated .pyi marks every OracleService method abstract; the runtime base class answers
    # UNIMPLEMENTED for the ones this benchmark leaves out.
    servicer = BenchServicer(oracle, hub, streams)  # type: ignore[abstract]
    oracle_pb2_grpc.add_OracleServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    hub.start()
    try:
        await serve_until_signalled(server, bound, grace=1.0)
    finally:
        hub.close()
        streams.close()


# -- the subscribers' process -----------------------------------------------------------------


async def run_subscribers(target: str, count: int, output: Path) -> None:
    """Attach `count` subscribers, print READY once each has its first update, record until TERM."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(target, options=options)
        for _ in range(max(1, math.ceil(count / SUBSCRIBERS_PER_CONNECTION)))
    ]
    deliveries: list[tuple[float, float, int]] = []  # (price, arrival, server timestamp ms)
    counts = {"updates": 0, "rounds": 0, "skipped": 0}
    errors: dict[str, int] = {}
    started = 0
    first_seen = asyncio.Event()

    async def subscriber(index: int) -> None:
        nonlocal started
        stub = oracle_pb2_grpc.OracleServiceStub(channels[index % len(channels)])
        call = stub.SubscribePrices(oracle_pb2.SubscribeRequest())
        previous = 0
        seen: set[float] = set()
        try:
            async for update in call:
                arrival = time.time()
                if previous == 0:
                    started += 1
                    if started == count:
                        first_seen.set()
                elif update.sequence > previous + 1:
                    counts["skipped"] += update.sequence - previous - 1
                previous = update.sequence
                counts["updates"] += 1
                if update.HasField("round"):
                    counts["rounds"] += 1
                    continue
                # The delay phase's submissions are named by their node id and price: the update
                # carries them among its inputs (the aggregate itself mixes in other exchanges).
                # Later updates repeat that input until it is superseded: first arrival only.
                named = math.nan
                for item in update.price.recent_prices:
                    if DELAY_NODE in item.node_id.split(",") and item.price not in seen:
                        seen.add(item.price)
                        named = item.price
                deliveries.append((named, arrival, update.timestamp_ms))
        except grpc.aio.AioRpcError as error:
            errors[error.code().name] = errors.get(error.code().name, 0) + 1

    began = time.monotonic()
    tasks = [asyncio.ensure_future(subscriber(index)) for index in range(count)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ready_wait = asyncio.ensure_future(first_seen.wait())
    await asyncio.wait(
        [ready_wait, asyncio.ensure_future(stop.wait())],
        timeout=120,
        return_when=asyncio.FIRST_COMPLETED,
    )
    print(f"READY {started} {time.monotonic() - began:.3f}", flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close(grace=None)
    await asyncio.to_thread(
        output.write_text,
        json.dumps(
            {"attached": started, "counts": counts, "errors": errors, "deliveries": deliveries}
        ),
        "utf-8",
    )


# -- the driver's measurements ----------------------------------------------------------------


@dataclass
class Load:
    calls: int
    seconds: float
    errors: int
    duplicates: int
    p50_ms: float
    p99_ms: float
    server_cpu_us_per_call: float | None

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


_MINUTES = itertools.count(1)


class Requests:
    """Unique submissions: per worker on the bench host, valid current ones against a target."""

    def __init__(self, worker: int, *, target_mode: bool, simulated: bool) -> None:
        self._worker = worker
        self._stream = (
            SubmitStream(f"bench-w{worker}", 24, ServerClock(time.time()), simulated=simulated)
            if target_mode
            else None
        )

    def next(self) -> oracle_pb2.PriceRequest:
        if self._stream is not None:
            return self._stream.next_request()
        minute = next(_MINUTES)
        return oracle_pb2.PriceRequest(
            price=LOAD_BASE + (minute % 1000) * 0.01,
            timestamp=minute * 60,
            source=EXCHANGES[self._worker % len(EXCHANGES)],
            node_id=f"bench-w{self._worker}",
            simulated=True,
        )


async def unary_load(
    target: str,
    in_flight: int,
    seconds: float,
    server_pid: int | None,
    *,
    target_mode: bool,
    simulated: bool,
) -> Load:
    latencies: list[int] = []
    errors = duplicates = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        await stub.HealthCheck(oracle_pb2.HealthRequest(node_id="bench"))
        deadline = time.monotonic() + seconds
        cpu_before = cpu_seconds(server_pid) if server_pid else None
        began = time.monotonic()

        async def worker(index: int) -> None:
            nonlocal errors, duplicates
            requests = Requests(index, target_mode=target_mode, simulated=simulated)
            while time.monotonic() < deadline:
                start = time.perf_counter_ns()
                try:
                    response = await stub.SubmitPrice(requests.next(), timeout=10)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter_ns() - start)
                duplicates += response.duplicate

        await asyncio.gather(*(worker(index) for index in range(in_flight)))
        elapsed = time.monotonic() - began
        cpu = (
            cpu_seconds(server_pid) - cpu_before if server_pid and cpu_before is not None else None
        )
    return _load(latencies, elapsed, errors, duplicates, cpu)


async def stream_load(
    target: str,
    streams: int,
    seconds: float,
    server_pid: int | None,
    *,
    target_mode: bool,
    simulated: bool,
) -> Load:
    latencies: list[int] = []
    errors = duplicates = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        deadline = time.monotonic() + seconds
        cpu_before = cpu_seconds(server_pid) if server_pid else None
        began = time.monotonic()

        async def worker(index: int) -> None:
            nonlocal errors, duplicates
            requests = Requests(100 + index, target_mode=target_mode, simulated=simulated)
            # Written to with call.write(): grpc-stubs wrongly requires a request iterator.
            call = stub.StreamPrices()  # type: ignore[call-arg]
            try:
                while time.monotonic() < deadline:
                    start = time.perf_counter_ns()
                    await call.write(requests.next())
                    update = await call.read()
                    if not isinstance(update, oracle_pb2.AggregatedPriceUpdate):
                        errors += 1
                        return
                    latencies.append(time.perf_counter_ns() - start)
                    errors += update.code != 0
                    duplicates += update.duplicate
                await call.done_writing()
                await call.code()
            except grpc.aio.AioRpcError:
                errors += 1

        await asyncio.gather(*(worker(index) for index in range(streams)))
        elapsed = time.monotonic() - began
        cpu = (
            cpu_seconds(server_pid) - cpu_before if server_pid and cpu_before is not None else None
        )
    return _load(latencies, elapsed, errors, duplicates, cpu)


def _load(
    latencies: list[int], elapsed: float, errors: int, duplicates: int, cpu: float | None
) -> Load:
    ordered = sorted(latencies)
    calls = len(ordered)
    return Load(
        calls=calls,
        seconds=elapsed,
        errors=errors,
        duplicates=duplicates,
        p50_ms=percentile(ordered, 0.5) / 1e6 if ordered else math.nan,
        p99_ms=percentile(ordered, 0.99) / 1e6 if ordered else math.nan,
        server_cpu_us_per_call=cpu / calls * 1e6 if cpu is not None and calls else None,
    )


async def submit_for_delay(
    target: str, count: int, rate: float, *, target_mode: bool, simulated: bool
) -> dict[float, float]:
    """Submit `count` observations `1/rate` s apart; each named price's send time (unix s).

    On the bench host each price names its submission; against a real aggregator the requests
    are valid current reports and only publish -> delivery (server timestamps) is measured.
    """
    sent: dict[float, float] = {}
    requests = Requests(999, target_mode=target_mode, simulated=simulated)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        for index in range(count):
            if target_mode:
                request = requests.next()
            else:
                request = oracle_pb2.PriceRequest(
                    price=DELAY_BASE + index,
                    timestamp=10_000_000 + 60 * index,
                    source="kraken",
                    node_id=DELAY_NODE,
                    simulated=True,
                )
                sent[request.price] = time.time()
            await stub.SubmitPrice(request, timeout=10)
            await asyncio.sleep(1 / rate)
    return sent


# -- the run ----------------------------------------------------------------------------------


def delay_figures(
    sent: dict[float, float],
    deliveries: list[list[float]],
    subscribers: int,
    window_ms: tuple[float, float],
) -> dict[str, Any]:
    """Submission -> delivery (bench host) and publish -> delivery (both), in ms."""
    low, high = window_ms
    publish = sorted(
        max(0.0, arrival * 1000 - stamp)
        for _price, arrival, stamp in deliveries
        if low <= stamp <= high
    )
    by_submission: dict[float, list[float]] = {}
    for price, arrival, _stamp in deliveries:
        if price in sent:
            by_submission.setdefault(price, []).append((arrival - sent[price]) * 1000)
    delays = sorted(delay for values in by_submission.values() for delay in values)
    figures: dict[str, Any] = {
        "expected": len(sent) * subscribers,
        "deliveries": len(delays),
        "publish_deliveries": len(publish),
    }
    if publish:
        figures["publish_p50_ms"] = percentile(publish, 0.5)
        figures["publish_p99_ms"] = percentile(publish, 0.99)
    if delays:
        figures.update(
            p50_ms=percentile(delays, 0.5),
            p99_ms=percentile(delays, 0.99),
            max_ms=delays[-1],
            per_submission_min_p50_max_ms=[
                [min(values), percentile(sorted(values), 0.5), max(values)]
                for _price, values in sorted(by_submission.items())
            ],
        )
    return figures


def best(loads: list[Load]) -> Load:
    return max(loads, key=lambda figures: figures.per_second)


def median_cpu(loads: list[Load]) -> float:
    values = sorted(
        load.server_cpu_us_per_call for load in loads if load.server_cpu_us_per_call is not None
    )
    return values[len(values) // 2] if values else math.nan


def parse_args() -> argparse.Namespace:
    defaults = StreamingSettings()
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny run: does everything work?")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--publishes", type=int, default=30, help="delay-phase submissions")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.5,
        help="delay-phase submissions per second (the real aggregate changes a few times a "
        "minute; faster than the fan-out interval, changes are coalesced)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="each throughput phase")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, best of")
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument(
        "--interval",
        type=float,
        default=defaults.min_update_interval_seconds,
        help="bench host's min_update_interval_seconds",
    )
    parser.add_argument(
        "--per-subscriber",
        type=float,
        default=defaults.update_interval_per_subscriber_seconds,
        help="bench host's update_interval_per_subscriber_seconds",
    )
    parser.add_argument(
        "--target",
        help="HOST:PORT of a running aggregator (once SubscribePrices and StreamPrices are "
        "wired, with [streaming] limits above --subscribers) instead of the bench host",
    )
    parser.add_argument(
        "--simulated", action="store_true", help="with --target: a simulate-mode aggregator"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--subscribe", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.subscribers, args.publishes, args.rate = 20, 5, 20.0
        args.seconds, args.rounds, args.interval, args.per_subscriber = 0.5, 1, 0.0, 0.0
    return args


def main() -> None:
    args = parse_args()
    if args.serve:
        asyncio.run(serve_host(args.port, args.subscribers, args.interval, args.per_subscriber))
        return
    if args.subscribe:
        asyncio.run(run_subscribers(args.subscribe, args.subscribers, args.output))
        return
    run(args)


def run(args: argparse.Namespace) -> None:  # noqa: PLR0915 - one linear run, read it whole
    script = str(Path(__file__).resolve())
    info = machine()
    print(f"Machine: {machine_line(info)}")
    options = {"target_mode": bool(args.target), "simulated": args.simulated or not args.target}
    loads: dict[str, list[Load]] = {"none": [], "with": [], "stream": []}
    subscriber_cpu: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as scratch:
        work = Path(scratch)
        host: ServiceProcess | None = None
        if args.target:
            target, server_pid = args.target, None
            print(f"Server: the aggregator at {target}")
        else:
            port = free_port()
            host = ServiceProcess(
                "host",
                [
                    sys.executable,
                    script,
                    "--serve",
                    "--port",
                    str(port),
                    "--subscribers",
                    str(args.subscribers),
                    "--interval",
                    str(args.interval),
                    "--per-subscriber",
                    str(args.per_subscriber),
                ],
                work,
            )
            started = host
            started.wait_until(lambda: "PORT" in started.log_tail())
            target, server_pid = f"127.0.0.1:{port}", host.pid
            print(
                "Server: bench host (the real SubscriptionHub and SubmissionStreams over a fake "
                f"submit path); min_update_interval_seconds={args.interval:g}, "
                f"update_interval_per_subscriber_seconds={args.per_subscriber:g}"
            )

        def load(kind: str) -> Load:
            measure = unary_load if kind == "unary" else stream_load
            return asyncio.run(measure(target, args.in_flight, args.seconds, server_pid, **options))

        sent: dict[float, float] = {}
        window = (0.0, 0.0)
        reports: list[dict[str, Any]] = []
        try:
            load("unary")  # warm-up: connections, caches, the host's first allocations
            for round_index in range(args.rounds):
                loads["none"].append(load("unary"))
                loads["stream"].append(load("stream"))
                output = work / f"subscribers-{round_index}.json"
                with ServiceProcess(
                    f"subscribers-{round_index}",
                    [
                        sys.executable,
                        script,
                        "--subscribe",
                        target,
                        "--subscribers",
                        str(args.subscribers),
                        "--output",
                        str(output),
                    ],
                    work,
                ) as subscribers:
                    subscribers.wait_until(lambda: "READY" in subscribers.log_tail(), 150)
                    ready = subscribers.log_tail().split("READY", 1)[1].split()
                    attached, attach_seconds = int(ready[0]), float(ready[1])
                    if round_index == 0:
                        began = time.time() * 1000
                        sent = asyncio.run(
                            submit_for_delay(target, args.publishes, args.rate, **options)
                        )
                        window = (began, time.time() * 1000)
                        time.sleep(1.0)
                    cpu_before = cpu_seconds(subscribers.pid)
                    loads["with"].append(load("unary"))
                    subscriber_cpu.append(cpu_seconds(subscribers.pid) - cpu_before)
                reports.append(json.loads(output.read_text(encoding="utf-8")))
        finally:
            if host is not None:
                host.stop()

    delay = delay_figures(sent, reports[0]["deliveries"], args.subscribers, window)
    none, with_subscribers, streamed = (
        best(loads["none"]),
        best(loads["with"]),
        best(loads["stream"]),
    )
    ratio = with_subscribers.per_second / none.per_second if none.per_second else math.nan
    cpu_ratio = median_cpu(loads["none"]) / median_cpu(loads["with"])
    stream_ratio = streamed.per_second / none.per_second if none.per_second else math.nan

    def goal(met: bool, text: str) -> str:
        return f"{text} {'met' if met else '**missed**'}"

    def cpu(figures: Load) -> str:
        us = figures.server_cpu_us_per_call
        return "-" if us is None else f"{us:.0f}"

    def row(name: str, how: str, figure: str, figures: Load, goal_text: str = "") -> list[str]:
        return [
            name,
            how,
            figure,
            f"{figures.p50_ms:.2f}",
            f"{figures.p99_ms:.2f}",
            cpu(figures),
            goal_text,
        ]

    flight = f"{args.in_flight} in flight"
    if sent:
        p99 = delay.get("p99_ms", math.nan)
        delay_row = [
            f"submission -> delivery, {attached} subscribers",
            f"{len(sent)} submissions, 1 per {1 / args.rate:g} s",
            f"{delay['deliveries']:,} of {delay['expected']:,} delivered",
            f"{delay.get('p50_ms', math.nan):.1f}",
            f"{p99:.1f}",
            "-",
            goal(p99 < 100, "p99 < 100 ms"),
        ]
    else:
        p99 = delay.get("publish_p99_ms", math.nan)
        delay_row = [
            f"publish -> delivery, {attached} subscribers",
            f"{args.publishes} submissions, 1 per {1 / args.rate:g} s",
            f"{delay['publish_deliveries']:,} delivered (server timestamps, 1 ms)",
            f"{delay.get('publish_p50_ms', math.nan):.1f}",
            f"{p99:.1f}",
            "-",
            goal(p99 < 100, "p99 < 100 ms"),
        ]
    rows = [
        delay_row,
        row("SubmitPrice, no subscribers", flight, f"{none.per_second:,.0f} calls/s", none),
        row(
            f"SubmitPrice, {attached} subscribers attached",
            flight,
            f"{with_subscribers.per_second:,.0f} calls/s ({ratio:.2f}x)",
            with_subscribers,
            goal(ratio >= 0.8, ">= 0.8x"),
        ),
        row(
            "StreamPrices, no subscribers",
            f"{args.in_flight} streams",
            f"{streamed.per_second:,.0f} msgs/s ({stream_ratio:.2f}x unary)",
            streamed,
        ),
    ]
    print()
    print(f"Best of {args.rounds} interleaved round(s) of {args.seconds:g} s per row.")
    print(
        markdown_table(
            ["row", "load", "figure", "p50 ms", "p99 ms", "server CPU us/call", "goal"], rows
        )
    )
    print()
    counts = {
        key: sum(report["counts"][key] for report in reports)
        for key in ("updates", "rounds", "skipped")
    }
    errors_seen = [report["errors"] for report in reports if report["errors"]]
    print(
        f"Subscribers: {attached} attached in {attach_seconds:.2f} s; {counts['updates']:,} "
        f"updates received, {counts['skipped']:,} skipped (conflated or coalesced); stream "
        f"errors: {errors_seen or 'none'}; publish -> delivery p50 "
        f"{delay.get('publish_p50_ms', math.nan):.0f} ms, p99 "
        f"{delay.get('publish_p99_ms', math.nan):.0f} ms (server timestamps, 1 ms resolution)"
    )
    if not math.isnan(cpu_ratio):
        print(
            f"Server CPU per SubmitPrice (median): {median_cpu(loads['none']):.0f} us without, "
            f"{median_cpu(loads['with']):.0f} us with the subscribers (capacity {cpu_ratio:.2f}x); "
            f"the subscribers' process used {max(subscriber_cpu):.2f} CPU-s per "
            f"{args.seconds:g} s phase on the same cores"
        )
    every = [figures for kind in loads.values() for figures in kind]
    errors = sum(figures.errors for figures in every)
    duplicates = sum(figures.duplicates for figures in every)
    print(f"Call errors: {errors}; duplicate submissions: {duplicates}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "target": args.target or "bench host",
                    "settings": {
                        "min_update_interval_seconds": args.interval,
                        "update_interval_per_subscriber_seconds": args.per_subscriber,
                    },
                    "subscribers": {
                        "requested": args.subscribers,
                        "attached": attached,
                        "attach_seconds": attach_seconds,
                        **counts,
                        "errors": errors_seen,
                    },
                    "delay": delay,
                    "loads": {
                        kind: [
                            {**vars(figures), "per_second": figures.per_second}
                            for figures in measured
                        ]
                        for kind, measured in loads.items()
                    },
                    "ratios": {
                        "with_subscribers": ratio,
                        "server_cpu_capacity": cpu_ratio,
                        "stream_vs_unary": stream_ratio,
                    },
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    if errors or errors_seen or attached < args.subscribers:
        sys.exit(1)


if __name__ == "__main__":
    main()
