"""Delivering observations to the aggregator: one reused gRPC channel, a bounded in-order buffer.

Every closed candle (the BTC price, and the USDT/USD rate where the venue lists one) becomes an
observation queued here; `flush` sends the queue oldest first and stops at the first one the
aggregator cannot take right now (UNAVAILABLE, deadline, RESOURCE_EXHAUSTED after the retries of
`common.grpc_client`), so order is kept and nothing is lost across a short aggregator restart.
Answers that retrying cannot change (INVALID_ARGUMENT, ALREADY_EXISTS, FAILED_PRECONDITION,
UNAUTHENTICATED, PERMISSION_DENIED) drop that one observation with an error log. With a key, each
observation is signed (BIP340 over docs/signing.md's canonical encoding) when it is sent.
When the buffer is full the oldest observation is dropped
with a warning: a price older than the aggregator's lateness limit would be refused anyway.

Transport (`[oracle] transport`): "unary" sends each observation with SubmitPrice; "stream" keeps
one StreamPrices stream open and reads the update that answers each message (its `code` is what
SubmitPrice would have answered, so both transports decide the same way). Any break of the stream
(an error, an end, no answer within the call timeout) sends that observation with SubmitPrice
instead (a resubmission the stream may already have delivered is a harmless duplicate), and the
stream is tried again only after `STREAM_RETRY_SECONDS`, so an aggregator that refuses streams
costs one attempt every few minutes, not one per observation.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal

import grpc

from common.errors import InvalidObservationError
from common.grpc_client import (
    PLAINTEXT,
    SERVICE_OPTIONS,
    ChannelSecurity,
    RetryPolicy,
    aio_channel,
    call_with_retry,
)
from common.logsetup import get_logger
from common.observation import (
    ObservationPayload,
    e8_to_double,
    price_to_e8,
    quantize_e8,
    sign_observation,
)
from common.proto import oracle_pb2, oracle_pb2_grpc
from common.schnorr import SigningKey
from common.timeutil import format_minute
from oracle_node.candle import Candle
from oracle_node.metrics import NodeMetrics

Sleep = Callable[[float], Awaitable[None]]

_RETRYABLE: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
_START_HINT: Final = "Make sure to run: aggregator (or scripts/run_multi_nodes.sh, which starts it)"
# After a stream broke, observations go unary for this long before a new stream is tried.
STREAM_RETRY_SECONDS: Final = 120.0
_CODES: Final = {code.value[0]: code for code in grpc.StatusCode}
_Stream = grpc.aio.StreamStreamCall[oracle_pb2.PriceRequest, oracle_pb2.AggregatedPriceUpdate]


class _StreamBrokenError(Exception):
    """The stream cannot answer this observation: send it unary."""


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
        security: ChannelSecurity = PLAINTEXT,
        transport: Literal["unary", "stream"] = "unary",
        metrics: NodeMetrics | None = None,
        clock: Callable[[], float] = time.time,
        signing_key: SigningKey | None = None,
    ) -> None:
        self._target = target
        self._signing_key = signing_key
        self._node_id = node_id
        self._simulated = simulated
        self._buffer: deque[Observation] = deque()
        self._buffer_size = buffer_size
        self._call_timeout = call_timeout
        self._retry = RetryPolicy(
            attempts=retries + 1,
            initial_backoff=retry_backoff,
            max_backoff=max(retry_backoff * 2**retries, retry_backoff),
            codes=_RETRYABLE,
        )
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._channel = aio_channel(target, security=security, options=SERVICE_OPTIONS)
        self._stub = oracle_pb2_grpc.OracleServiceStub(self._channel)
        self._connected: bool | None = None
        self._transport = transport
        self._metrics = metrics
        self._clock = clock
        self._stream: _Stream | None = None
        self._stream_retry_at = 0.0  # monotonic
        bound = {"node_id": node_id, "aggregator": target}
        if simulated:
            bound["mode"] = "SIMULATED"
        self._log = get_logger().bind(**bound)

    @property
    def pending(self) -> int:
        """Observations not yet accepted by the aggregator."""
        return len(self._buffer)

    async def check_health(self) -> bool:
        """One HealthCheck at startup so an operator sees at once whether the aggregator is up.

        Not retried and not waiting for the channel: a down aggregator is reported at once, and
        collection starts anyway (submissions are buffered).
        """
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
        self._buffer_changed()

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
                self._buffer_changed()
                done += 1
            return done

    async def close(self) -> None:
        """Close the channel; buffered observations are logged as lost."""
        self._end_stream()
        if self._buffer:
            self._log.warning(
                "unsent_observations_lost",
                pending=len(self._buffer),
                minutes=[format_minute(item.candle.minute) for item in self._buffer],
            )
        await self._channel.close(None)

    @property
    def streaming(self) -> bool:
        """True while observations go over an open StreamPrices stream."""
        return self._stream is not None

    def _buffer_changed(self) -> None:
        if self._metrics is not None:
            self._metrics.set_buffer_depth(len(self._buffer))

    async def _deliver(self, observation: Observation) -> _Outcome:
        started = time.perf_counter()
        outcome, detail = await self._deliver_once(observation)
        if self._metrics is not None:
            self._metrics.record_submission(
                outcome=detail,
                seconds=time.perf_counter() - started,
                minute=observation.candle.minute,
                now=self._clock(),
                error="" if outcome is _Outcome.DELIVERED else f"submission {detail}",
            )
        return outcome

    def build_request(self, candle: Candle) -> oracle_pb2.PriceRequest:
        """The PriceRequest for `candle`: the exact price, and signed when the node has a key.

        The close is rounded to 8 decimals (half-even) once, here: `price_e8` is that exact
        value, `price` its nearest double (what an original aggregator reads), and the signature
        covers the canonical encoding of the same values (docs/signing.md). The hex signature
        also goes in the original text field `signature`, which an original aggregator keeps.
        """
        price_e8 = price_to_e8(quantize_e8(candle.close))
        request = oracle_pb2.PriceRequest(
            price=e8_to_double(price_e8),  # the wire's double; Decimal until here
            timestamp=candle.minute,
            source=candle.exchange,
            node_id=self._node_id,
            quote=candle.quote,
            simulated=self._simulated,
            symbol=candle.symbol,
            base=candle.base,
            price_e8=price_e8,
        )
        if self._signing_key is not None:
            payload = ObservationPayload(
                node_id=self._node_id,
                exchange=candle.exchange,
                base=candle.base,
                quote=candle.quote,
                symbol=candle.symbol,
                minute=candle.minute,
                price_e8=price_e8,
                simulated=self._simulated,
            )
            signature = sign_observation(self._signing_key, payload)
            request.observation_signature = signature
            request.public_key = self._signing_key.public_key
            request.signature = signature.hex()
        return request

    async def _deliver_once(self, observation: Observation) -> tuple[_Outcome, str]:
        """The outcome, and its metrics label (accepted, duplicate, rejected, unreachable)."""
        candle = observation.candle
        try:
            request = self.build_request(candle)
        except (ValueError, InvalidObservationError) as error:
            # A close that cannot be signed (above 10^10, or a symbol outside the alphabet):
            # retrying cannot change it.
            self._log.error(
                "submission_unsignable",
                exchange=candle.exchange,
                base=candle.base,
                minute=format_minute(candle.minute),
                price=str(candle.close),
                error=str(error),
            )
            return _Outcome.REJECTED, "rejected"

        if self._transport == "stream" and time.monotonic() >= self._stream_retry_at:
            try:
                return await self._deliver_by_stream(observation, request)
            except _StreamBrokenError:
                pass  # the same observation, unary, below

        async def submit() -> oracle_pb2.PriceResponse:
            # wait_for_ready: while the aggregator restarts, the call waits (up to its deadline)
            # for the channel to reconnect instead of failing at once.
            return await self._stub.SubmitPrice(
                request, timeout=self._call_timeout, wait_for_ready=True
            )

        try:
            reply = await call_with_retry(submit, self._retry, sleep=self._sleep)
        except grpc.aio.AioRpcError as error:
            if error.code() in _RETRYABLE:
                self._report_unreachable(error)
                return _Outcome.UNREACHABLE, "unreachable"
            return self._rejected(candle, error.code(), error.details())
        return self._labelled(self._record_reply(observation, reply), reply.duplicate)

    @staticmethod
    def _labelled(outcome: _Outcome, duplicate: bool) -> tuple[_Outcome, str]:
        if outcome is _Outcome.DELIVERED:
            return outcome, "duplicate" if duplicate else "accepted"
        return outcome, "rejected"

    async def _deliver_by_stream(
        self, observation: Observation, request: oracle_pb2.PriceRequest
    ) -> tuple[_Outcome, str]:
        """One message and its update; raises _StreamBrokenError when the stream cannot answer."""
        try:
            async with asyncio.timeout(self._call_timeout):
                if self._stream is None:
                    # No request iterator: messages are written one by one (grpc-stubs lacks it).
                    self._stream = self._stub.StreamPrices(wait_for_ready=True)  # type: ignore[call-arg]
                    self._log.info("stream_opened")
                await self._stream.write(request)
                update: object = await self._stream.read()
        except (grpc.aio.AioRpcError, TimeoutError) as error:
            self._stream_broke(error)
            raise _StreamBrokenError from error
        except asyncio.InvalidStateError as error:  # it had already ended: say how
            self._stream_broke(await self._how_it_ended())
            raise _StreamBrokenError from error
        if not isinstance(update, oracle_pb2.AggregatedPriceUpdate):  # grpc.aio.EOF: it ended
            self._stream_broke(await self._how_it_ended())
            raise _StreamBrokenError
        code = _CODES.get(update.code, grpc.StatusCode.UNKNOWN)
        candle = observation.candle
        if code is grpc.StatusCode.OK:
            reply = oracle_pb2.PriceResponse(
                success=True,
                message=update.message,
                timestamp=update.timestamp,
                duplicate=update.duplicate,
            )
            if update.aggregate_minute:
                reply.aggregated_price = update.aggregated_price
                reply.aggregate_minute = update.aggregate_minute
                reply.data_points = update.data_points
            return self._labelled(self._record_reply(observation, reply), update.duplicate)
        if code in _RETRYABLE:
            # The message was refused for now (e.g. a limit): kept buffered, as for SubmitPrice.
            self._log.warning("stream_message_deferred", code=code.name, detail=update.message)
            return _Outcome.UNREACHABLE, "unreachable"
        return self._rejected(candle, code, update.message, transport="stream")

    def _rejected(
        self, candle: Candle, code: grpc.StatusCode, detail: str | None, **extra: str
    ) -> tuple[_Outcome, str]:
        """An answer retrying cannot change: the observation is dropped, loudly."""
        self._log.error(
            "submission_rejected",
            exchange=candle.exchange,
            base=candle.base,
            minute=format_minute(candle.minute),
            price=str(candle.close),
            code=code.name,
            detail=detail,
            **extra,
        )
        return _Outcome.REJECTED, "rejected"

    async def _how_it_ended(self) -> str:
        ended = self._stream
        if ended is not None and ended.done():
            return f"{(await ended.code()).name}: {await ended.details()}"
        return "the aggregator ended the stream"

    def _stream_broke(self, error: BaseException | str) -> None:
        self._end_stream()
        self._stream_retry_at = time.monotonic() + STREAM_RETRY_SECONDS
        detail = error if isinstance(error, str) else repr(error)
        if isinstance(error, grpc.aio.AioRpcError):
            detail = f"{error.code().name}: {error.details()}"
        elif isinstance(error, TimeoutError):
            detail = f"no answer within {self._call_timeout:g} s"
        self._log.warning(
            "stream_broken_falling_back_to_unary",
            detail=detail,
            retry_stream_in=STREAM_RETRY_SECONDS,
        )

    def _end_stream(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    def _record_reply(self, observation: Observation, reply: oracle_pb2.PriceResponse) -> _Outcome:
        candle = observation.candle
        if self._connected is False:
            self._log.info("aggregator_reconnected")
        self._connected = True
        if not reply.success:
            self._log.error(
                "submission_refused",
                exchange=candle.exchange,
                base=candle.base,
                minute=format_minute(candle.minute),
                message=reply.message,
            )
            return _Outcome.REJECTED
        self._log.info(
            "price_submitted" if candle.base == "BTC" else "rate_submitted",
            exchange=candle.exchange,
            base=candle.base,
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
