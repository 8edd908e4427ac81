"""StreamPrices: a node submits over one long-lived stream, one update per message, in order.

Every message goes through exactly the unary SubmitPrice path, injected as `submit(request) ->
PriceResponse` (the servicer's own handler body, raising `common.errors.OracleError` subclasses for
refusals), so a stream can never accept what SubmitPrice refuses or answer differently. A refused
message gets its own update (`code` = the gRPC status number SubmitPrice would have answered,
`message` = the reason) and the stream goes on: the refusal changed nothing, as for SubmitPrice,
and the stream's other messages count. An unexpected error in one message is answered INTERNAL
for that message (and logged) rather than ending the node's stream.

Messages are handled one at a time in arrival order (the node sends one or two a minute, and the
`sequence` of an update is the 1-based index of the request it answers). The aggregate fields of
an update (price, minute, status, confidence, nodes, simulated) come from the injected `live`
view, read when the update is built; without one, from the PriceResponse.

Drain: `close()` ends every stream with UNAVAILABLE once the message in hand is answered (a
stream idle between minutes ends at once), telling the node to send what it still has with unary
SubmitPrice, which is what its fallback does. The number of streams is bounded (`max_streams`).
Submissions are counted (metrics, logs) inside the shared submit path, once for both transports.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, Protocol, cast

import grpc

from aggregator.streaming_settings import StreamingSettings
from common.errors import CapacityError, OracleError, UnavailableError
from common.logsetup import get_logger
from common.proto import oracle_pb2
from common.timeutil import Clock, system_clock

_log = get_logger(service="aggregator")

_Context = grpc.aio.ServicerContext[Any, Any]

Submit = Callable[[oracle_pb2.PriceRequest], Awaitable[oracle_pb2.PriceResponse]]

_END: Final = object()


class LiveView(Protocol):
    """The live aggregate as update fields; called once per update, must return a new message."""

    def __call__(self) -> oracle_pb2.AggregatedPriceUpdate: ...


def status_number(code: grpc.StatusCode) -> int:
    """The wire number of a status code (grpc keeps it as the first item of the enum's value)."""
    number: int = code.value[0]
    return number


class SubmissionStreams:
    """The StreamPrices streams: their bound, their per-message loop, their drain."""

    def __init__(
        self,
        settings: StreamingSettings,
        submit: Submit,
        *,
        live: LiveView | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self._settings = settings
        self._submit = submit
        self._live = live
        self._clock = clock
        self._open = 0
        self._stopping = asyncio.Event()
        self._all_ended = asyncio.Event()
        self._all_ended.set()

    @property
    def open_streams(self) -> int:
        return self._open

    def close(self) -> None:
        """Drain: refuse new streams; open ones end after the message in hand is answered."""
        self._stopping.set()

    async def wait_closed(self) -> None:
        """After `close`: until every stream has ended (bound it with `asyncio.timeout`)."""
        await self._all_ended.wait()

    async def stream(
        self, requests: AsyncIterator[oracle_pb2.PriceRequest], context: _Context
    ) -> AsyncIterator[oracle_pb2.AggregatedPriceUpdate]:
        """The body of StreamPrices (`async for update in streams.stream(...): yield update`)."""
        try:
            self._enter()
        except OracleError as error:
            _log.warning("stream_refused", status=error.status.name, reason=str(error))
            await context.abort(error.status, str(error))
            return  # unreachable: abort raises
        try:
            async for update in self.answer(requests):
                yield update
            if self._stopping.is_set():
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    "the aggregator is draining: send further observations with SubmitPrice "
                    "(unary) or reconnect after the restart",
                )
        finally:
            self._leave()

    async def answer(
        self, requests: AsyncIterator[oracle_pb2.PriceRequest]
    ) -> AsyncIterator[oracle_pb2.AggregatedPriceUpdate]:
        """One update per request, in order, until the client half-closes or a drain starts."""
        sequence = 0
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                request = await self._next_request(requests, stop)
                if request is None:
                    return
                sequence += 1
                yield await self._handle(sequence, request)
        finally:
            stop.cancel()

    async def _next_request(
        self, requests: AsyncIterator[oracle_pb2.PriceRequest], stop: asyncio.Future[Any]
    ) -> oracle_pb2.PriceRequest | None:
        if stop.done():
            return None
        read: asyncio.Future[object] = asyncio.ensure_future(anext(requests, _END))
        # A stream idle between minutes must notice a drain without waiting for the next minute.
        await asyncio.wait((read, stop), return_when=asyncio.FIRST_COMPLETED)
        if not read.done():
            read.cancel()
            return None
        message = read.result()
        if message is _END:
            return None
        return cast(oracle_pb2.PriceRequest, message)

    async def _handle(
        self, sequence: int, request: oracle_pb2.PriceRequest
    ) -> oracle_pb2.AggregatedPriceUpdate:
        try:
            response = await self._submit(request)
        except OracleError as error:
            _log.warning(
                "stream_message_refused",
                sequence=sequence,
                status=error.status.name,
                reason=str(error),
            )
            return self._refusal(sequence, error.status, str(error))
        except Exception:  # noqa: BLE001 - logged with its traceback and answered INTERNAL
            # A bug in one message must not end the node's stream, nor pass silently.
            _log.exception("stream_message_failed", sequence=sequence)
            return self._refusal(
                sequence, grpc.StatusCode.INTERNAL, "StreamPrices failed; see the log"
            )
        update = self._base(response)
        update.sequence = sequence
        update.code = status_number(grpc.StatusCode.OK)
        update.message = response.message
        update.duplicate = response.duplicate
        update.timestamp = response.timestamp
        return update

    def _refusal(
        self, sequence: int, code: grpc.StatusCode, message: str
    ) -> oracle_pb2.AggregatedPriceUpdate:
        update = self._base(None)
        update.sequence = sequence
        update.code = status_number(code)
        update.message = message
        update.duplicate = False
        update.timestamp = int(self._clock())
        return update

    def _base(self, response: oracle_pb2.PriceResponse | None) -> oracle_pb2.AggregatedPriceUpdate:
        if self._live is not None:
            return self._live()
        update = oracle_pb2.AggregatedPriceUpdate()
        if response is not None and response.HasField("aggregated_price"):
            update.aggregated_price = response.aggregated_price
            update.aggregate_minute = response.aggregate_minute
            update.data_points = response.data_points
        return update

    def _enter(self) -> None:
        if self._stopping.is_set():
            raise UnavailableError("the aggregator is draining: use SubmitPrice or another one")
        if self._open >= self._settings.max_streams:
            raise CapacityError(
                f"stream limit reached: {self._open} StreamPrices streams open (limit "
                "[streaming] max_streams); use SubmitPrice"
            )
        self._open += 1
        self._all_ended.clear()

    def _leave(self) -> None:
        self._open -= 1
        if self._open == 0:
            self._all_ended.set()
