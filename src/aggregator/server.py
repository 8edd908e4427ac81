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

History: `serve` opens the configured store (SQLite by default) before anything binds, replays it
into the book, and closes it only after the server stopped, so every call that was answered had
its commit. `build_server` never opens files: given no store it keeps history in memory, which is
what in-process tests want (fast, nothing left on disk, no lock on the repository's database).
"""

from __future__ import annotations

import asyncio
import math
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from aggregator.book import Book
from aggregator.config import AggregatorConfig
from aggregator.history import HistoryRecorder, open_history
from aggregator.reflection import enable_reflection
from aggregator.round_clock import RoundClock
from aggregator.service import OracleServicer
from aggregator.store import HistoryStore, InMemoryHistoryStore
from common.errors import ConfigError
from common.logsetup import get_logger
from common.metrics import MetricsServer
from common.proto import oracle_pb2_grpc
from common.timeutil import Clock, system_clock
from common.tls import server_credentials

_log = get_logger(service="aggregator")

# No call in progress for this long while draining: the clients have gone elsewhere.
QUIET_SECONDS = 0.25
_Context = grpc.aio.ServicerContext[Any, Any]


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

    @property
    def history(self) -> HistoryRecorder:
        return self.servicer.history


def build_server(
    config: AggregatorConfig, *, clock: Clock = system_clock, store: HistoryStore | None = None
) -> BoundServer:
    """Create the server, recover the history into the book, register the service and bind.

    The caller starts the server and owns `store` (closes it after stopping the server); without
    one the history is in memory. Rounds the replay closed anew still need
    `await bound.history.persist_recovered()` before serving (`serve` does it).
    """
    if store is None:
        store = InMemoryHistoryStore(
            simulate=config.simulate, clock=clock, retention_days=config.database.retention_days
        )
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            # gRPC sets SO_REUSEPORT by default: a second aggregator would then share the port
            # silently and split the nodes' submissions. Off, a taken port is a clear error.
            ("grpc.so_reuseport", 0),
            ("grpc.max_concurrent_streams", config.limits.max_concurrent_streams),
        ],
        maximum_concurrent_rpcs=config.limits.max_concurrent_rpcs,
    )
    book = Book(config)
    history = HistoryRecorder(store, config)
    history.recover(book, clock())
    servicer = OracleServicer(config, book, clock, history=history)
    # First: a closed round is durable before any subscriber hears of it.
    servicer.round_listeners.insert(0, history.on_round_closed)
    # Malformed request bodies answer INVALID_ARGUMENT (grpc.aio would say UNKNOWN).
    oracle_pb2_grpc.add_OracleServiceServicer_to_server(servicer, tolerant_registration(server))
    servicer.streaming.register(server)  # grpc.health.v1
    enable_reflection(server)  # grpcurl list / describe
    host = f"[{config.host}]" if ":" in config.host else config.host
    address = f"{host}:{config.port}"
    try:
        if config.tls.cert is not None and config.tls.key is not None:
            credentials = server_credentials(
                config.tls.cert, config.tls.key, client_ca=config.tls.client_ca
            )
            port = server.add_secure_port(address, credentials)
        else:
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
    """Open the history, run until SIGTERM/SIGINT, drain within the grace period, close it.

    A database that cannot be used raises HistoryOpenError (a ConfigError naming the path)
    before any port is bound.
    """
    store = open_history(config, clock)
    try:
        bound = build_server(config, clock=clock, store=store)
        await bound.history.persist_recovered()
        await _run(config, bound)
    finally:
        # After the server stopped: no handler can still be waiting for a commit.
        await store.close()


async def _run(config: AggregatorConfig, bound: BoundServer) -> None:
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
    _log_security(config, bound.servicer)

    loop = asyncio.get_running_loop()
    holder = bound.servicer.admission.allowlist
    if holder is not None:
        # SIGHUP: the allowlist file again, validated first; a bad file keeps the old list.
        loop.add_signal_handler(signal.SIGHUP, holder.reload)
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
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        _log.info("aggregator_stopped")


def _log_security(config: AggregatorConfig, servicer: OracleServicer) -> None:
    """Say at start what protects the port; every dev shortcut is a warning, never silent."""
    holder = servicer.admission.allowlist
    transport = "plaintext"
    if config.tls.enabled:
        transport = "mutual TLS" if config.tls.client_ca is not None else "TLS"
    _log.info(
        "aggregator_security",
        submissions=servicer.admission.mode,
        allowlist=str(holder.path) if holder is not None else None,
        nodes=len(holder.current) if holder is not None else None,
        transport=transport,
    )
    if config.auth.allow_unsigned:
        _log.warning(
            "UNSIGNED_ACCEPTED",
            detail="--allow-unsigned: observations without a signature are accepted; any "
            "client that reaches the port can submit "
            + ("as an allowlisted node id" if holder is not None else "as any node id"),
            host=config.host,
        )


class _Malformed:
    """Stands for a request body that is not a valid protobuf message of the method's type."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def _tolerant(deserialize: Callable[[bytes], object]) -> Callable[[bytes], object]:
    def parse(data: bytes) -> object:
        try:
            return deserialize(data)
        except DecodeError as error:
            return _Malformed(str(error)[:200])

    return parse


def _refusing_malformed(
    behaviour: Callable[[Any, _Context], Awaitable[Any]], name: str
) -> Callable[[Any, _Context], Awaitable[Any]]:
    async def handle(request: Any, context: _Context) -> Any:  # noqa: ANN401 (any message)
        if isinstance(request, _Malformed):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{name}: the request body is not a valid protobuf message ({request.error})",
            )
        return await behaviour(request, context)

    return handle


class _TolerantRegistration:
    """Passed to the generated `add_..._to_server` in place of the server: it rewraps each
    unary handler so a body that does not parse answers INVALID_ARGUMENT, not UNKNOWN."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(
        self, handlers: Sequence[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        # The generated code passes the same handlers twice, as generic handlers and then as
        # registered ones: the second call registers both, rewrapped; this one keeps nothing.
        del handlers

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        rewrapped = {name: _rewrap(name, handler) for name, handler in handlers.items()}
        # Not in grpc-stubs yet; grpcio has had it since 1.63 (pyproject asks for >= 1.85).
        self._server.add_registered_method_handlers(service, rewrapped)  # type: ignore[attr-defined]
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, rewrapped),)
        )


def _rewrap(name: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    if handler.unary_unary is None or handler.request_deserializer is None:
        return handler
    behaviour: Callable[[Any, _Context], Awaitable[Any]] = handler.unary_unary  # type: ignore[assignment]  # an aio servicer's coroutine
    return grpc.unary_unary_rpc_method_handler(
        _refusing_malformed(behaviour, name),
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


def tolerant_registration(server: grpc.aio.Server) -> Any:  # noqa: ANN401 (duck-typed server)
    """`server` as the generated registration function sees it (see `_TolerantRegistration`)."""
    return _TolerantRegistration(server)
