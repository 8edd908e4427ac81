"""The OracleService servicer: wire messages in and out, domain errors mapped to gRPC status once.

The servicer owns no aggregation logic: it validates through `validation`, mutates through the
`Book`, and renders the live value (`rounds.LiveAggregate`) and rounds. The streaming RPCs,
grpc.health.v1 and the metrics live in `streaming_service`, one line per RPC here. It reads the
injected clock once per call, so every answer is consistent with one instant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from decimal import Decimal
from functools import wraps
from typing import Any, NoReturn, TypeVar

import grpc

from aggregator import __version__
from aggregator.admission import Admission
from aggregator.book import Book, Outcome
from aggregator.config import AggregatorConfig
from aggregator.history import HistoryRecorder, RoundNotFoundError
from aggregator.round_message import METHOD_TO_WIRE, STATUS_TO_WIRE, fill_input
from aggregator.rounds import Judged, LiveAggregate, Status, to_e8
from aggregator.streaming_service import StreamingService
from aggregator.validation import validate_exchange, validate_submission
from common.errors import InvalidObservationError, OracleError
from common.logsetup import get_logger
from common.proto import oracle_pb2, oracle_pb2_grpc
from common.timeutil import MINUTE, Clock, format_minute

_log = get_logger(service="aggregator")

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_Servicer = TypeVar("_Servicer", bound="OracleServicer")
_MAX_LISTED_NODES = 8
_Context = grpc.aio.ServicerContext[Any, Any]
_Handler = Callable[[_Servicer, _Req, _Context], Coroutine[Any, Any, _Resp]]


def _maps_errors(method: _Handler[_Servicer, _Req, _Resp]) -> _Handler[_Servicer, _Req, _Resp]:
    """The one place where domain errors become gRPC status codes."""

    @wraps(method)
    async def wrapper(self: _Servicer, request: _Req, context: _Context) -> _Resp:
        self.activity.started()
        started, code = time.perf_counter(), grpc.StatusCode.INTERNAL
        try:
            answer = await method(self, request, context)
        except OracleError as error:
            code = error.status
            # Counted by reason and logged rate-limited: a flood must not become a flood of lines.
            self.admission.refused(error, self._clock(), rpc=method.__name__)
            await context.abort(error.status, str(error))
            raise  # unreachable: abort raises; keeps type checkers and readers honest
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED  # the client went away
            raise
        except Exception:
            # A bug must still give the client a clear status and leave a trace in the log.
            _log.exception("request_failed", rpc=method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed; see the log")
            raise
        else:
            code = grpc.StatusCode.OK
            return answer
        finally:
            self.activity.finished()
            self.streaming.observe_rpc(method.__name__, code, time.perf_counter() - started)

    return wrapper


class Activity:
    """Calls in progress and when the last one started or ended: what a graceful drain waits on."""

    __slots__ = ("in_flight", "last_change")

    def __init__(self) -> None:
        self.in_flight = 0
        self.last_change = time.monotonic()

    def started(self) -> None:
        self.in_flight += 1
        self.last_change = time.monotonic()

    def finished(self) -> None:
        self.in_flight -= 1
        self.last_change = time.monotonic()

    def quiet_for(self, seconds: float) -> bool:
        return self.in_flight == 0 and time.monotonic() - self.last_change >= seconds


def _label(config: AggregatorConfig) -> str:
    return "SIMULATED " if config.simulate else ""


def _mode(config: AggregatorConfig) -> str:
    return "SIMULATED" if config.simulate else "real"


def _live_key(current: LiveAggregate) -> tuple[object, ...]:
    """What a consumer of the live value sees change."""
    result = current.result
    if result is None:
        return (None, current.reason)
    return (
        result.minute,
        result.status,
        result.price,
        result.confidence,
        current.final,
        tuple(item.exchange for item in result.kept),
        tuple((item.exchange, item.reason) for item in result.excluded),
        result.usdt_at_par,
    )


def _excluded_codes(excluded: Sequence[Judged]) -> str:
    """`kraken (deviation), binance (frozen)`: the details are in `excluded` itself."""
    return ", ".join(f"{item.exchange} ({item.reason})" for item in excluded)


def _price_text(price: Decimal) -> str:
    # Formatting, unlike quantize(), cannot overflow the decimal context whatever the value.
    return f"{price:.2f}"


RoundListener = Callable[[oracle_pb2.Round], Awaitable[None]]
AggregateListener = Callable[[float], None]


class OracleServicer(oracle_pb2_grpc.OracleServiceServicer):
    """Serves SubmitPrice, HealthCheck and GetAggregatedPrice from one Book; the streaming RPCs
    (SubscribePrices, StreamPrices) through `self.streaming`, which shares SubmitPrice's core.

    Other parts of the aggregator follow its changes through two lists: every round listener
    is awaited for each closed round (the history records it before anyone is told), and every
    aggregate listener is called with `now` after each change of the live value (streaming).
    """

    def __init__(
        self,
        config: AggregatorConfig,
        book: Book,
        clock: Clock,
        *,
        history: HistoryRecorder | None = None,
    ) -> None:
        self._config = config
        self._book = book
        self._clock = clock
        # Without a recorder (tests, benchmarks of the bare logic) history lives in memory.
        self.history = history if history is not None else HistoryRecorder.in_memory(config, clock)
        self._started = clock()
        self.draining = False
        self.activity = Activity()
        self.admission = Admission(config, store=self.history.store)
        self.round_listeners: list[RoundListener] = []
        self.aggregate_listeners: list[AggregateListener] = []
        # Set on every accepted submission: the round clock looks again at the next deadline.
        self.book_changed = asyncio.Event()
        self._logged_aggregate: tuple[object, ...] | None = None
        self._live_key: tuple[object, ...] | None = None
        self._cached_answer: tuple[LiveAggregate, int, int, oracle_pb2.GetPriceResponse] | None = (
            None
        )
        # SubscribePrices, StreamPrices, grpc.health.v1 and the metrics (streaming_service.py).
        self.streaming = StreamingService(config, self, clock)

    @property
    def book(self) -> Book:
        return self._book

    @property
    def config(self) -> AggregatorConfig:
        return self._config

    # -- changes: rounds closing and the live value ----------------------------------------

    async def close_due(self) -> list[oracle_pb2.Round]:
        """Close the rounds whose deadline passed (the round clock calls this at each one)."""
        now = self._clock()
        closed = self._book.close_due(now)
        await self._after_change(closed, now)
        return closed

    async def _after_change(self, closed: Sequence[oracle_pb2.Round], now: float) -> None:
        for round_ in closed:
            _log.info(
                "round_closed",
                minute=format_minute(round_.minute),
                status=oracle_pb2.PriceStatus.Name(round_.status).removeprefix("PRICE_STATUS_"),
                price=f"{round_.price:.2f}" if round_.price_e8 else None,
                confidence=f"{round_.confidence:.2f}" if round_.price_e8 else None,
                inputs=",".join(item.source for item in round_.inputs),
                excluded=",".join(
                    f"{item.source}:{item.excluded_reason}" for item in round_.excluded
                ),
                close_reason=oracle_pb2.RoundCloseReason.Name(round_.close_reason).removeprefix(
                    "ROUND_CLOSE_REASON_"
                ),
                simulated=self._config.simulate,
                mode=_mode(self._config),
            )
            for listener in list(self.round_listeners):
                await listener(round_)
        current = self._book.aggregate(now)
        key = _live_key(current)
        if key != self._live_key:
            self._live_key = key
            for aggregate_listener in list(self.aggregate_listeners):
                aggregate_listener(now)

    # -- SubmitPrice -----------------------------------------------------------------------

    @_maps_errors
    async def SubmitPrice(
        self, request: oracle_pb2.PriceRequest, context: _Context
    ) -> oracle_pb2.PriceResponse:
        return await self.streaming.submit(request, transport="unary")

    async def submit_price(self, request: oracle_pb2.PriceRequest) -> oracle_pb2.PriceResponse:
        """SubmitPrice's core, the one path of both transports (unary and StreamPrices).

        Raises the `OracleError` of a refusal, having changed nothing; every check added here
        (signatures, durable history) applies to both transports at once.
        """
        now = self._clock()
        try:
            observation = validate_submission(request, self._config, now)
            # Who may submit first (signature, allowlist, rate, equivocation), then durable
            # before the answer: checked (nothing changes), committed, then applied. A failed
            # commit is UNAVAILABLE and the book never saw the observation.
            admitted = await self.admission.admit(request, observation, now)
            self._book.check(observation, now)
            await self.history.commit(observation, now)
            result = self._book.submit(observation, now)
        except OracleError as error:
            self.history.refused(error, request, now)
            raise
        self.admission.accepted(admitted, now)
        await self.history.accepted(observation, result, now, verified=admitted.signed is not None)
        if result.outcome is not Outcome.DUPLICATE:
            self.book_changed.set()
        await self._after_change(result.closed_rounds, now)
        current = self._book.aggregate(now)

        if result.outcome is Outcome.DUPLICATE:
            message = "Duplicate submission ignored: this report was already recorded"
        else:
            message = "Price data received"
            if result.outcome is Outcome.LATE:
                message += (
                    f" (stored as late: the round of {format_minute(observation.minute)} "
                    "has closed and does not change)"
                )
            elif result.outcome is Outcome.PENDING:
                message += " (stored; the candle has not closed yet, it counts once it has)"
            elif observation.is_rate:
                message += " (USDT/USD rate)"
            if result.first_reporter is not None:
                # Once per exchange and minute, when the second node arrives: enough to alert
                # the operator without a log line per report when many nodes share an exchange.
                self._warn_duplicate_exchange(
                    observation.exchange,
                    observation.minute,
                    (result.first_reporter, observation.node_id),
                )
            if result.outcome is Outcome.COUNTED or result.closed_rounds:
                self._log_aggregate(current, now)

        response = oracle_pb2.PriceResponse(
            success=True,
            message=_label(self._config) + message,
            timestamp=int(now),
            duplicate=result.outcome is Outcome.DUPLICATE,
        )
        if current.price is not None and current.minute is not None:
            response.aggregated_price = float(current.price)
            response.aggregate_minute = current.minute
            response.data_points = len(current.inputs)
        return response

    @staticmethod
    def _warn_duplicate_exchange(exchange: str, minute: int, nodes: tuple[str, ...]) -> None:
        # The original's troubleshooting case 3: several nodes on one exchange. Here they no
        # longer weigh more than one, but the operator should still hear about it.
        _log.warning(
            "duplicate_exchange",
            exchange=exchange,
            minute=format_minute(minute),
            nodes=",".join(sorted(nodes)),
            hint="several nodes report this exchange; it still counts once (median). "
            "Stop duplicates with scripts/stop_nodes.sh",
        )

    def _log_aggregate(self, current: LiveAggregate, now: float) -> None:
        result = current.result
        if result is None or result.price is None or result.confidence is None:
            _log.info("aggregate_unavailable", reason=current.reason, status="UNKNOWN")
            return
        key = _live_key(current)
        if key == self._logged_aggregate:
            return
        self._logged_aggregate = key
        # A fixed event name: a tool reading the log matches "aggregate" in either mode, and the
        # mode is a field (`mode: SIMULATED` as on every simulated node line).
        _log.info(
            "aggregate",
            price=_price_text(result.price),
            confidence=_price_text(result.confidence),
            status=result.status.value,
            method=result.method,
            final=current.final,
            exchanges=len(result.kept),
            excluded=",".join(f"{item.exchange}:{item.reason}" for item in result.excluded),
            usdt_at_par=result.usdt_at_par,
            nodes=self._book.active_node_count(now),
            minute=format_minute(result.minute),
            simulated=self._config.simulate,
            mode=_mode(self._config),
        )

    # -- GetAggregatedPrice ----------------------------------------------------------------

    @_maps_errors
    async def GetAggregatedPrice(
        self, request: oracle_pb2.GetPriceRequest, context: _Context
    ) -> oracle_pb2.GetPriceResponse:
        return self.price_answer(request.source_filter if request.HasField("source_filter") else "")

    def price_answer(self, source: str) -> oracle_pb2.GetPriceResponse:
        """GetAggregatedPrice's answer for `source` ("" = the aggregate): also each update's."""
        now = self._clock()
        active = self._book.active_node_count(now)
        if source:
            return self._exchange_answer(source, active, now)
        return self.aggregate_answer(now, active)

    def aggregate_answer(
        self, now: float, active: int | None = None
    ) -> oracle_pb2.GetPriceResponse:
        """The live answer at `now` (also what a price subscriber is sent)."""
        if active is None:
            active = self._book.active_node_count(now)
        current = self._book.aggregate(now)
        # Readers poll far more often than the aggregate changes: the answer is rebuilt only
        # when the aggregate, the active node count or the second (age_seconds) changes.
        second = int(now)
        cached = self._cached_answer
        if cached is not None and cached[0] is current and cached[1:3] == (active, second):
            return cached[3]
        response = self._aggregate_answer(current, active, now)
        self._cached_answer = (current, active, second, response)
        return response

    def _aggregate_answer(
        self, current: LiveAggregate, active: int, now: float
    ) -> oracle_pb2.GetPriceResponse:
        label = _label(self._config)
        response = oracle_pb2.GetPriceResponse(
            active_nodes=active,
            simulated=self._config.simulate,
            status=STATUS_TO_WIRE[current.status],
            method=METHOD_TO_WIRE[self._config.method],
        )
        result = current.result
        if result is not None:
            response.method = METHOD_TO_WIRE[result.method]
            response.final = current.final
            response.usdt_at_par = result.usdt_at_par
            response.usdt_converted = result.usdt_converted
            if result.usdt_converted and result.usdt_rate is not None:
                response.usdt_usd_rate = float(result.usdt_rate)
            for item in result.excluded:
                fill_input(response.excluded.add(), item)
        if result is None or result.price is None or result.confidence is None:
            excluded = result.excluded if result is not None else ()
            when = f" for {format_minute(result.minute)}" if result is not None else ""
            response.message = f"{label}no aggregate{when}: {current.reason}"
            if excluded:
                response.message += " (excluded " + _excluded_codes(excluded) + ")"
            return response
        self._fill(response, result.price, result.minute, result.kept, now)
        response.confidence = float(result.confidence)
        response.confidence_e8 = to_e8(result.confidence)
        names = ", ".join(item.exchange for item in result.kept)
        state = "final" if current.final else "round open"
        response.message = (
            f"{label}BTC/USD {_price_text(result.price)} from {len(result.kept)} "
            f"exchange(s) ({names}) for {format_minute(result.minute)}: "
            f"{result.status.value} ± {_price_text(result.confidence)}, {result.method}, {state}"
        )
        if result.usdt_at_par:
            response.message += "; USDT taken at par (no USDT/USD rate)"
        if result.excluded:
            response.message += "; excluded " + _excluded_codes(result.excluded)
        if result.status is Status.DEGRADED:
            response.message += f"; DEGRADED: {result.summary}"
        return response

    def _exchange_answer(self, source: str, active: int, now: float) -> oracle_pb2.GetPriceResponse:
        validate_exchange(source, field="source_filter")
        label = _label(self._config)
        response = oracle_pb2.GetPriceResponse(active_nodes=active, simulated=self._config.simulate)
        price = self._book.exchange_price(source, now)
        if price is None:
            response.message = f"{label}no fresh price from {source}"
            response.status = oracle_pb2.PRICE_STATUS_UNKNOWN
            return response
        # One exchange's own price, in its own quote: no rules applied, so no status beyond
        # "one source" (DEGRADED) and no confidence.
        judged = Judged(price, price.price, Decimal(0))
        self._fill(response, price.price, price.minute, (judged,), now)
        response.status = oracle_pb2.PRICE_STATUS_DEGRADED
        response.final = self._book.closed_round(price.minute) is not None
        response.message = (
            f"{label}{source} BTC/{price.quote} {_price_text(price.price)} "
            f"for {format_minute(price.minute)}"
        )
        return response

    @staticmethod
    def _fill(
        response: oracle_pb2.GetPriceResponse,
        price: Decimal,
        minute: int,
        inputs: Sequence[Judged],
        now: float,
    ) -> None:
        response.success = True
        response.aggregated_price = float(price)
        response.aggregated_price_e8 = to_e8(price)
        response.data_points = len(inputs)
        response.aggregate_minute = minute
        response.age_seconds = max(0, int(now - (minute + MINUTE)))
        response.last_update = int(max(item.price.received_at for item in inputs))
        for judged in inputs:
            item = judged.price
            listed = ",".join(item.node_ids[:_MAX_LISTED_NODES])
            if len(item.node_ids) > _MAX_LISTED_NODES:
                listed += f",+{len(item.node_ids) - _MAX_LISTED_NODES} more"
            response.recent_prices.add(
                price=float(item.price),
                timestamp=item.minute,
                source=item.exchange,
                node_id=listed,
                quote=item.quote,
                node_count=len(item.node_ids),
                received_at=int(item.received_at),
                price_e8=to_e8(item.price),
                usd_price=float(judged.usd_price),
                deviation=float(judged.deviation),
            )

    # -- HealthCheck -----------------------------------------------------------------------

    @_maps_errors
    async def HealthCheck(
        self, request: oracle_pb2.HealthRequest, context: _Context
    ) -> oracle_pb2.HealthResponse:
        now = self._clock()
        # A probe is not a node: the original marked "test-client" active on every call.
        _log.debug("health_probe", caller=request.node_id[:64])
        current = self._book.aggregate(now)
        active = self._book.active_node_count(now)
        fresh = len(current.inputs)
        healthy = current.status is Status.OK and not self.draining
        result = current.result
        if self.draining:
            state = "draining: shutting down, in-flight calls finish"
        elif result is not None and result.price is not None:
            names = ", ".join(price.exchange for price in current.inputs)
            state = f"{current.status.value}: {fresh} exchange(s) fresh ({names})"
            if result.status is Status.DEGRADED:
                state += f"; {result.summary}"
        else:
            state = f"UNKNOWN: no fresh aggregate: {current.reason}"
        return oracle_pb2.HealthResponse(
            healthy=healthy,
            timestamp=int(now),
            active_nodes=active,
            version=__version__,
            uptime_seconds=int(max(0.0, now - self._started)),
            message=f"{_label(self._config)}{state}; {active} node(s) active"
            + (f"; {self.admission.mode}" if self.admission.allow_unsigned else ""),
            fresh_exchanges=fresh,
            simulated=self._config.simulate,
            draining=self.draining,
            status=STATUS_TO_WIRE[current.status],
        )

    # -- streaming (aggregator/streaming_service.py) -----------------------------------------

    async def StreamPrices(
        self,
        request_iterator: AsyncIterator[oracle_pb2.PriceRequest],
        context: _Context,
    ) -> AsyncIterator[oracle_pb2.AggregatedPriceUpdate]:
        async for update in self.streaming.stream_prices(request_iterator, context):
            yield update

    async def SubscribePrices(
        self, request: oracle_pb2.SubscribeRequest, context: _Context
    ) -> AsyncIterator[oracle_pb2.PriceUpdate]:
        async for update in self.streaming.subscribe_prices(request, context):
            yield update

    # -- declared, not implemented -----------------------------------------------------------

    async def UpdateConfig(
        self, request: oracle_pb2.ConfigRequest, context: _Context
    ) -> oracle_pb2.ConfigResponse:
        await _unimplemented(
            context, "UpdateConfig", "change the node's TOML config and restart the node"
        )

    # -- rounds and history ------------------------------------------------------------------

    @_maps_errors
    async def GetRound(
        self, request: oracle_pb2.GetRoundRequest, context: _Context
    ) -> oracle_pb2.Round:
        minute = request.minute
        if minute == 0 or minute % MINUTE:
            raise InvalidObservationError(
                "minute", f"{minute} is not a candle minute (unix seconds, a multiple of 60)"
            )
        # Closed first: a closed round is final, wherever it is kept (recent ones in memory).
        found = self._book.closed_round(minute)
        if found is None:
            found = self.history.stored_round(minute)
        if found is None:
            found = self._book.open_round(minute, self._clock())
        if found is None:
            raise RoundNotFoundError(f"minute: no round is known for minute {minute}")
        return found

    @_maps_errors
    async def GetPriceHistory(
        self, request: oracle_pb2.GetPriceHistoryRequest, context: _Context
    ) -> oracle_pb2.GetPriceHistoryResponse:
        return self.history.history_page(request)

    @_maps_errors
    async def ListNodes(
        self, request: oracle_pb2.ListNodesRequest, context: _Context
    ) -> oracle_pb2.ListNodesResponse:
        return self.history.list_nodes(request, self._clock())


async def _unimplemented(context: _Context, rpc: str, hint: str) -> NoReturn:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{rpc} is not implemented yet; {hint}")
    raise AssertionError("unreachable: abort raises")
