"""Delivering observations to the aggregator: one reused gRPC channel, a bounded in-order buffer.

Every closed candle becomes an observation queued here; `flush` sends the queue oldest first and
stops at the first one the aggregator cannot take right now (UNAVAILABLE, deadline), so order is
kept and nothing is lost across a short aggregator restart. Answers that retrying cannot change
(INVALID_ARGUMENT, ALREADY_EXISTS, FAILED_PRECONDITION) drop that one observation with an error
log. When the buffer is full the oldest observation is dropped with a warning: a price older than
the aggregator's lateness limit would be refused anyway.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final

import grpc

from common.logsetup import get_logger
from common.proto import oracle_pb2, oracle_pb2_grpc
from common.timeutil import format_minute
from oracle_node.candle import Candle

Sleep = Callable[[float], Awaitable[None]]

# Reconnect quickly once the aggregator is back (gRPC's default backoff grows to 120 s).
_CHANNEL_OPTIONS: Final = [
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.enable_retries", 0),
]
_RETRYABLE: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
_START_HINT: Final = "Make sure to run: aggregator (or scripts/run_multi_nodes.sh, which starts it)"


@dataclass(frozen=True)
class Observation:
    """A validated candle waiting to be submitted."""

    candle: Candle
    collected_at: float


class _Outcome(Enum):
    DELIVERED = "delivered"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"


class Submitter:
    """Sends observations to `target` (host:port) in order, buffering while it is unreachable."""

    def __init__(
        self,
        target: str,
        node_id: str,
        *,
        simulated: bool = False,
        buffer_size: int = 10,
        call_timeout: float = 5.0,
        retries: int = 2,
        retry_backoff: float = 0.5,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._target = target
        self._node_id = node_id
        self._simulated = simulated
        self._buffer: deque[Observation] = deque()
        self._buffer_size = buffer_size
        self._call_timeout = call_timeout
        self._retries = retries
        self._retry_backoff = retry_backoff
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._channel = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
        self._stub = oracle_pb2_grpc.OracleServiceStub(self._channel)
        self._connected: bool | None = None
        bound = {"node_id": node_id, "aggregator": target}
        if simulated:
            bound["mode"] = "SIMULATED"
        self._log = get_logger().bind(**bound)

    @property
    def pending(self) -> int:
        """Observations not yet accepted by the aggregator."""
        return len(self._buffer)

    async def check_health(self) -> bool:
        """One HealthCheck at startup so an operator sees at once whether the aggregator is up."""
        try:
            reply = await self._stub.HealthCheck(
                oracle_pb2.HealthRequest(node_id=self._node_id), timeout=self._call_timeout
            )
        except grpc.aio.AioRpcError as error:
            self._report_unreachable(error)
            return False
        self._connected = True
        self._log.info(
            "aggregator_reachable",
            healthy=reply.healthy,
            version=reply.version,
            active_nodes=reply.active_nodes,
            aggregator_simulated=reply.simulated,
            message=reply.message,
        )
        if reply.simulated != self._simulated:
            self._log.error(
                "aggregator_mode_mismatch",
                node_simulated=self._simulated,
                aggregator_simulated=reply.simulated,
                hint="run both with --simulate, or neither; submissions will be refused",
            )
        return True

    def enqueue(self, observation: Observation) -> None:
        """Queue `observation`; if the buffer is full, drop the oldest with a warning."""
        if len(self._buffer) >= self._buffer_size:
            dropped = self._buffer.popleft()
            self._log.warning(
                "buffer_full_dropped_oldest",
                dropped_minute=format_minute(dropped.candle.minute),
                buffer_size=self._buffer_size,
            )
        self._buffer.append(observation)

    async def flush(self) -> int:
        """Send buffered observations oldest first; stop at the first unreachable one.

        Returns how many left the buffer (delivered or permanently rejected).
        """
        async with self._lock:
            done = 0
            while self._buffer:
                outcome = await self._deliver(self._buffer[0])
                if outcome is _Outcome.UNREACHABLE:
                    self._log.warning("observations_buffered", pending=len(self._buffer))
                    break
                self._buffer.popleft()
                done += 1
            return done

    async def close(self) -> None:
        """Close the channel; buffered observations are logged as lost."""
        if self._buffer:
            self._log.warning(
                "unsent_observations_lost",
                pending=len(self._buffer),
                minutes=[format_minute(item.candle.minute) for item in self._buffer],
            )
        await self._channel.close(None)

    async def _deliver(self, observation: Observation) -> _Outcome:
        candle = observation.candle
        request = oracle_pb2.PriceRequest(
            price=float(candle.close),  # the wire is a proto double; Decimal until here
            timestamp=candle.minute,
            source=candle.exchange,
            node_id=self._node_id,
            quote=candle.quote,
            simulated=self._simulated,
            symbol=candle.symbol,
        )
        for attempt in range(self._retries + 1):
            try:
                # wait_for_ready: while the aggregator restarts, the call waits (up to its deadline)
                # for the channel to reconnect instead of failing at once.
                reply = await self._stub.SubmitPrice(
                    request, timeout=self._call_timeout, wait_for_ready=True
                )
            except grpc.aio.AioRpcError as error:
                if error.code() not in _RETRYABLE:
                    self._log.error(
                        "submission_rejected",
                        exchange=candle.exchange,
                        minute=format_minute(candle.minute),
                        price=str(candle.close),
                        code=error.code().name,
                        detail=error.details(),
                    )
                    return _Outcome.REJECTED
                if attempt == self._retries:
                    self._report_unreachable(error)
                    return _Outcome.UNREACHABLE
                await self._sleep(self._retry_backoff * 2**attempt)
                continue
            return self._record_reply(observation, reply)
        return _Outcome.UNREACHABLE  # pragma: no cover - the loop always returns

    def _record_reply(self, observation: Observation, reply: oracle_pb2.PriceResponse) -> _Outcome:
        candle = observation.candle
        if self._connected is False:
            self._log.info("aggregator_reconnected")
        self._connected = True
        if not reply.success:
            self._log.error(
                "submission_refused",
                exchange=candle.exchange,
                minute=format_minute(candle.minute),
                message=reply.message,
            )
            return _Outcome.REJECTED
        self._log.info(
            "price_submitted",
            exchange=candle.exchange,
            symbol=candle.symbol,
            quote=candle.quote,
            minute=format_minute(candle.minute),
            price=str(candle.close),
            duplicate=reply.duplicate,
            aggregated_price=reply.aggregated_price if reply.HasField("aggregated_price") else None,
            data_points=reply.data_points,
            message=reply.message,
        )
        return _Outcome.DELIVERED

    def _report_unreachable(self, error: grpc.aio.AioRpcError) -> None:
        # Log the original's message and hint once per outage, not once per minute.
        level = self._log.error if self._connected is not False else self._log.debug
        level(
            "Cannot connect to gRPC Aggregator",
            hint=_START_HINT,
            code=error.code().name,
            detail=error.details(),
        )
        self._connected = False
