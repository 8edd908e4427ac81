"""The OracleService servicer: wire messages in and out, domain errors mapped to gRPC status once.

The servicer owns no aggregation logic: it validates through `validation`, mutates through the
`Book`, and renders `Aggregate`s. It reads the injected clock once per call, so every answer is
consistent with one instant.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine
from decimal import Decimal
from functools import wraps
from typing import Any, NoReturn, TypeVar

import grpc

from aggregator import __version__
from aggregator.admission import Admission
from aggregator.aggregation import Aggregate, ExchangePrice
from aggregator.book import Book, Outcome
from aggregator.config import AggregatorConfig
from aggregator.validation import validate_exchange, validate_submission
from common.errors import OracleError
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
        try:
            return await method(self, request, context)
        except OracleError as error:
            # Counted by reason and logged rate-limited: a flood must not become a flood of lines.
            self.admission.refused(error, self._clock(), rpc=method.__name__)
            await context.abort(error.status, str(error))
            raise  # unreachable: abort raises; keeps type checkers and readers honest
        except Exception:
            # A bug must still give the client a clear status and leave a trace in the log.
            _log.exception("request_failed", rpc=method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed; see the log")
            raise
        finally:
            self.activity.finished()

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


def _price_text(price: Decimal) -> str:
    # Formatting, unlike quantize(), cannot overflow the decimal context whatever the value.
    return f"{price:.2f}"


class OracleServicer(oracle_pb2_grpc.OracleServiceServicer):
    """Serves SubmitPrice, HealthCheck and GetAggregatedPrice from one Book."""

    def __init__(self, config: AggregatorConfig, book: Book, clock: Clock) -> None:
        self._config = config
        self._book = book
        self._clock = clock
        self._started = clock()
        self.draining = False
        self.activity = Activity()
        self.admission = Admission(config)
        self._logged_aggregate: tuple[Decimal, int, int] | None = None
        self._cached_answer: tuple[Aggregate, int, int, oracle_pb2.GetPriceResponse] | None = None

    @property
    def book(self) -> Book:
        return self._book

    # -- SubmitPrice -----------------------------------------------------------------------

    @_maps_errors
    async def SubmitPrice(
        self, request: oracle_pb2.PriceRequest, context: _Context
    ) -> oracle_pb2.PriceResponse:
        now = self._clock()
        observation = validate_submission(request, self._config, now)
        admitted = await self.admission.admit(request, observation, now)
        result = self._book.submit(observation, now)
        self.admission.accepted(admitted, now)
        current = self._book.aggregate(now)

        if result.outcome is Outcome.DUPLICATE:
            message = "Duplicate submission ignored: this report was already recorded"
        else:
            message = "Price data received"
            if result.outcome is Outcome.STORED:
                message += f" (stored; {observation.exchange} already has a newer minute)"
            elif result.outcome is Outcome.PENDING:
                message += " (stored; the candle has not closed yet, it counts once it has)"
            if result.first_reporter is not None:
                # Once per exchange and minute, when the second node arrives: enough to alert
                # the operator without a log line per report when many nodes share an exchange.
                self._warn_duplicate_exchange(
                    observation.exchange,
                    observation.minute,
                    (result.first_reporter, observation.node_id),
                )
            if result.outcome is Outcome.COUNTED:
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

    def _log_aggregate(self, current: Aggregate, now: float) -> None:
        if current.price is None or current.minute is None:
            _log.info("aggregate_unavailable", reason=current.reason)
            return
        key = (current.price, current.minute, len(current.inputs))
        if key == self._logged_aggregate:
            return
        self._logged_aggregate = key
        # A fixed event name: a tool reading the log matches "aggregate" in either mode, and the
        # mode is a field (`mode: SIMULATED` as on every simulated node line).
        _log.info(
            "aggregate",
            price=_price_text(current.price),
            exchanges=len(current.inputs),
            nodes=self._book.active_node_count(now),
            minute=format_minute(current.minute),
            simulated=self._config.simulate,
            mode="SIMULATED" if self._config.simulate else "real",
        )

    # -- GetAggregatedPrice ----------------------------------------------------------------

    @_maps_errors
    async def GetAggregatedPrice(
        self, request: oracle_pb2.GetPriceRequest, context: _Context
    ) -> oracle_pb2.GetPriceResponse:
        now = self._clock()
        active = self._book.active_node_count(now)
        source = request.source_filter if request.HasField("source_filter") else ""
        if source:
            return self._exchange_answer(source, active, now)
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
        self, current: Aggregate, active: int, now: float
    ) -> oracle_pb2.GetPriceResponse:
        label = _label(self._config)
        response = oracle_pb2.GetPriceResponse(active_nodes=active, simulated=self._config.simulate)
        if current.price is None or current.minute is None:
            reasons = "; ".join(f"{exchange} {why}" for exchange, why in current.excluded)
            response.message = f"{label}no aggregate: {current.reason}" + (
                f" ({reasons})" if reasons else ""
            )
            return response
        self._fill(response, current.price, current.minute, current.inputs, now)
        names = ", ".join(price.exchange for price in current.inputs)
        response.message = (
            f"{label}BTC/USD {_price_text(current.price)} from {len(current.inputs)} "
            f"exchange(s) ({names}) for {format_minute(current.minute)}"
        )
        return response

    def _exchange_answer(self, source: str, active: int, now: float) -> oracle_pb2.GetPriceResponse:
        validate_exchange(source, field="source_filter")
        label = _label(self._config)
        response = oracle_pb2.GetPriceResponse(active_nodes=active, simulated=self._config.simulate)
        price = self._book.exchange_price(source, now)
        if price is None:
            response.message = f"{label}no fresh price from {source}"
            return response
        self._fill(response, price.price, price.minute, (price,), now)
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
        inputs: tuple[ExchangePrice, ...],
        now: float,
    ) -> None:
        response.success = True
        response.aggregated_price = float(price)
        response.data_points = len(inputs)
        response.aggregate_minute = minute
        response.age_seconds = max(0, int(now - (minute + MINUTE)))
        response.last_update = int(max(item.received_at for item in inputs))
        for item in inputs:
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
        fresh = len(current.inputs) if current.available else 0
        healthy = current.available and not self.draining
        if self.draining:
            state = "draining: shutting down, in-flight calls finish"
        elif current.available:
            names = ", ".join(price.exchange for price in current.inputs)
            state = f"{fresh} exchange(s) fresh ({names})"
        else:
            state = f"no fresh aggregate: {current.reason}"
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
        )

    # -- declared, not implemented -----------------------------------------------------------

    async def StreamPrices(
        self,
        request_iterator: object,
        context: _Context,
    ) -> AsyncIterator[oracle_pb2.AggregatedPriceUpdate]:
        await _unimplemented(context, "StreamPrices", "poll GetAggregatedPrice instead")
        yield oracle_pb2.AggregatedPriceUpdate()  # pragma: no cover (abort raised)

    async def UpdateConfig(
        self, request: oracle_pb2.ConfigRequest, context: _Context
    ) -> oracle_pb2.ConfigResponse:
        await _unimplemented(
            context, "UpdateConfig", "change the node's TOML config and restart the node"
        )

    # -- declared in the contract, built by the rounds and streaming work ----------------------

    async def GetRound(
        self, request: oracle_pb2.GetRoundRequest, context: _Context
    ) -> oracle_pb2.Round:
        await _unimplemented(context, "GetRound", "poll GetAggregatedPrice instead")

    async def GetPriceHistory(
        self, request: oracle_pb2.GetPriceHistoryRequest, context: _Context
    ) -> oracle_pb2.GetPriceHistoryResponse:
        await _unimplemented(context, "GetPriceHistory", "poll GetAggregatedPrice instead")

    async def SubscribePrices(
        self, request: oracle_pb2.SubscribeRequest, context: _Context
    ) -> AsyncIterator[oracle_pb2.PriceUpdate]:
        await _unimplemented(context, "SubscribePrices", "poll GetAggregatedPrice instead")
        yield oracle_pb2.PriceUpdate()  # pragma: no cover (abort raised)

    async def ListNodes(
        self, request: oracle_pb2.ListNodesRequest, context: _Context
    ) -> oracle_pb2.ListNodesResponse:
        await _unimplemented(context, "ListNodes", "see HealthCheck.active_nodes")


async def _unimplemented(context: _Context, rpc: str, hint: str) -> NoReturn:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{rpc} is not implemented yet; {hint}")
    raise AssertionError("unreachable: abort raises")
