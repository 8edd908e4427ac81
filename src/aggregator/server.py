"""Building the gRPC server (bind, no serving) apart from running it until a signal arrives.

Tests build the real server on port 0 in-process; the CLI calls `serve`, which drains on the first
SIGTERM/SIGINT and stops at once on a second one. The server carries the oracle service, the
standard grpc.health.v1 (from the price status) and reflection (grpcurl), beside a Prometheus
endpoint (`[metrics]`, loopback by default). Draining: health reports draining and turns
NOT_SERVING (so probes and load balancers move away), every SubscribePrices and StreamPrices
stream ends with a clean UNAVAILABLE, while every unary call that reaches the server is still
answered; once no call has been in progress for a short quiet period, or the grace period is
over, the server stops.
gRPC's own `stop(grace)` alone is not enough: it cancels calls already queued in the transport
but not yet handed to a handler, which a client sees as CANCELLED, not as an answer.
"""

from __future__ import annotations

import asyncio
import math
import signal
from dataclasses import dataclass

import grpc

from aggregator.book import Book
from aggregator.config import AggregatorConfig
from aggregator.reflection import enable_reflection
from aggregator.round_clock import RoundClock
from aggregator.service import OracleServicer
from common.errors import ConfigError
from common.logsetup import get_logger
from common.metrics import MetricsServer
from common.proto import oracle_pb2_grpc
from common.timeutil import Clock, system_clock

_log = get_logger(service="aggregator")

# No call in progress for this long while draining: the clients have gone elsewhere.
QUIET_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class BoundServer:
    server: grpc.aio.Server
    port: int
    servicer: OracleServicer
    round_clock: RoundClock
    # The Prometheus endpoint (`[metrics]`), started by `start`; None when disabled.
    metrics: MetricsServer | None = None

    async def start(self) -> None:
        """Serve: the metrics endpoint first (a taken port stops us before any call), then gRPC."""
        if self.metrics is not None:
            self.metrics.start()
        await self.server.start()
        self.servicer.streaming.start()

    async def stop(self, grace: float | None) -> None:
        """End every stream cleanly (within `grace`), then stop the server and the endpoint."""
        loop = asyncio.get_running_loop()
        deadline = None if grace is None else loop.time() + grace
        # No grace (a forced stop): the streams are not waited for, the server's stop ends them.
        await self.servicer.streaming.finish(0.0 if grace is None else grace)
        remaining = None if deadline is None else max(0.0, deadline - loop.time())
        await self.server.stop(remaining)
        if self.metrics is not None:
            self.metrics.stop()


def build_server(config: AggregatorConfig, *, clock: Clock = system_clock) -> BoundServer:
    """Create the server, register the service and bind; the caller starts it."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            # gRPC sets SO_REUSEPORT by default: a second aggregator would then share the port
            # silently and split the nodes' submissions. Off, a taken port is a clear error.
            ("grpc.so_reuseport", 0),
        ]
    )
    servicer = OracleServicer(config, Book(config), clock)
    oracle_pb2_grpc.add_OracleServiceServicer_to_server(servicer, server)
    servicer.streaming.register(server)  # grpc.health.v1
    enable_reflection(server)  # grpcurl list / describe
    host = f"[{config.host}]" if ":" in config.host else config.host
    address = f"{host}:{config.port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:
        raise ConfigError(
            f"cannot listen on {address}: the port is taken or the address is not local "
            f"(is another aggregator running? try --port)"
        ) from error
    metrics = (
        MetricsServer(servicer.streaming.metrics.registry, config.metrics)
        if config.metrics.enabled
        else None
    )
    bound = BoundServer(server, port, servicer, RoundClock(servicer, clock), metrics)
    _start_clock_with(bound)
    return bound


def create_server(
    config: AggregatorConfig, *, clock: Clock = system_clock
) -> tuple[grpc.aio.Server, int]:
    """The bound, unstarted server and its port (useful with port 0)."""
    bound = build_server(config, clock=clock)
    return bound.server, bound.port


def _start_clock_with(bound: BoundServer) -> None:
    """The round clock starts and stops with the server, whoever starts it (serve, tests, the
    explorer's in-process aggregator): rounds close at their deadlines with every caller.
    """
    server = bound.server
    start, stop = server.start, server.stop

    async def start_both() -> None:
        await start()
        bound.round_clock.start()

    async def stop_both(grace: float | None) -> None:
        await bound.round_clock.stop()
        await stop(grace)

    server.start = start_both  # type: ignore[method-assign]
    server.stop = stop_both  # type: ignore[method-assign,assignment]


async def serve(config: AggregatorConfig, *, clock: Clock = system_clock) -> None:
    """Run until SIGTERM/SIGINT, then drain within the grace period."""
    bound = build_server(config, clock=clock)
    await bound.start()
    _log.info(
        "aggregator_started",
        address=f"{config.host}:{bound.port}",
        metrics=bound.metrics.url + "/metrics" if bound.metrics is not None else None,
        simulate=config.simulate,
        node_timeout=config.node_timeout,
        staleness=config.staleness,
        config=config.source,
    )
    if config.simulate:
        _log.warning(
            "SIMULATED_MODE", detail="simulate mode: only simulated prices, never real ones"
        )

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals_seen = 0

    def on_signal(signum: signal.Signals) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            _log.info("shutdown_requested", signal=signum.name, grace_seconds=config.grace_seconds)
            bound.servicer.draining = True
            bound.servicer.streaming.begin_drain()  # health NOT_SERVING, streams told to end
            stopping.set()
        else:
            _log.warning("shutdown_forced", signal=signum.name)
            loop.create_task(bound.server.stop(None))  # noqa: RUF006 (server owns the task)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    deadline = math.inf
    try:
        await stopping.wait()
        deadline = loop.time() + config.grace_seconds
        # Polling a counter a few times per drain is simpler than an event per call.
        while loop.time() < deadline and not bound.servicer.activity.quiet_for(QUIET_SECONDS):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    finally:
        remaining = deadline - loop.time()
        await bound.stop(remaining if 0 < remaining < math.inf else None)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        _log.info("aggregator_stopped")
