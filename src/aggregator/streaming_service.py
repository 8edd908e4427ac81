"""The servicer's streaming side: SubscribePrices, StreamPrices, grpc.health.v1 and the metrics.

`OracleServicer` owns one `StreamingService` and delegates to it in one line per RPC, so the
parts built on their own (`subscriptions.SubscriptionHub`, `stream_submissions.SubmissionStreams`,
`health.OracleHealth`, `metrics.AggregatorMetrics`) meet the book in this one module and nowhere
else. What it does, and why here:

* Both submission transports go through `submit`, which calls the servicer's one core
  (`submit_price`) and counts the outcome once (metrics by exchange, outcome and transport; a
  refusal by its rule), so a stream can never accept, refuse or count differently from
  SubmitPrice, and every check added to the core applies to both.
* The live aggregate is published on each change: the servicer calls its `aggregate_listeners`
  after a counted submission (here: `aggregate_changed`), and a one-second ticker catches the
  changes that come with time alone (an input going stale, a minute that closes, the status
  that follows). Only a real change is published (the answer's price, minute, inputs and status;
  not its age or node count, which move every second), to the aggregate's subscribers and to
  those filtering on an exchange whose price changed. Health and the price gauges follow the
  same calls, so probes, dashboards and subscribers never disagree for long.
* Round closes come through the servicer's `round_listeners` (`round_closed`): one `PriceUpdate`
  with the round to the aggregate's subscribers, and the round-close metrics.
* Drain (`begin_drain`, from the server's first signal): health NOT_SERVING, every subscription
  and submission stream told to end cleanly (UNAVAILABLE, saying what to do), new ones refused;
  `finish` waits for them (bounded by what is left of the grace) and ends the health watchers,
  before the server stops.

The status is the answer's own (`GetPriceResponse.status`, the rounds' rule); an answer without
one (an exchange's price under `source_filter`) is OK while it has a price, else UNKNOWN.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Hashable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal

import grpc

from aggregator import __version__
from aggregator.health import OracleHealth
from aggregator.metrics import AggregatorMetrics
from aggregator.stream_submissions import SubmissionStreams
from aggregator.subscriptions import SubscriptionHub
from common.errors import InvalidObservationError, OracleError
from common.logsetup import get_logger
from common.proto import oracle_pb2
from common.timeutil import Clock

if TYPE_CHECKING:
    from aggregator.config import AggregatorConfig
    from aggregator.service import OracleServicer

_log = get_logger(service="aggregator")

_Context = grpc.aio.ServicerContext[Any, Any]
Transport = Literal["unary", "stream"]

# How often status, health and the gauges are brought up to date when nothing is submitted.
TICK_SECONDS: Final = 1.0


def price_status(answer: oracle_pb2.GetPriceResponse) -> oracle_pb2.PriceStatus:
    """The answer's status; for an answer without one: OK exactly while there is a price."""
    if answer.status != oracle_pb2.PRICE_STATUS_UNSPECIFIED:
        return answer.status
    return oracle_pb2.PRICE_STATUS_OK if answer.success else oracle_pb2.PRICE_STATUS_UNKNOWN


def _change_key(answer: oracle_pb2.GetPriceResponse) -> Hashable:
    # What makes an update worth sending: not age_seconds or active_nodes (they tick by).
    return (
        answer.success,
        answer.aggregated_price,
        answer.aggregate_minute,
        price_status(answer),
        answer.confidence,
        tuple(
            (item.source, item.price, item.timestamp, item.node_id) for item in answer.recent_prices
        ),
    )


def refusal_reason(error: OracleError) -> str:
    """A refusal's stable rule name for the metrics, never its free text.

    The field an invalid observation broke ("price", "timestamp"), the keyword reason of an
    authentication refusal, else the error's kind ("conflictingobservation", "capacity").
    """
    if isinstance(error, InvalidObservationError):
        return error.field
    named = getattr(error, "reason", None)
    if isinstance(named, str) and named:
        return named
    return type(error).__name__.removesuffix("Error").lower()


class StreamingService:
    """The streaming RPCs, health and metrics of one servicer (see the module docstring)."""

    def __init__(self, config: AggregatorConfig, servicer: OracleServicer, clock: Clock) -> None:
        self._config = config
        self._servicer = servicer
        self._clock = clock
        settings = config.streaming
        self.metrics = AggregatorMetrics(
            exchanges=config.exchanges, simulated=config.simulate, version=__version__, clock=clock
        )
        self.hub = SubscriptionHub(
            settings,
            snapshot=servicer.price_answer,
            exchanges=config.exchanges,
            clock=clock,
            observer=self.metrics,
        )
        self.streams = SubmissionStreams(
            settings, self._stream_submit, live=self._live_update, clock=clock
        )
        self.health = OracleHealth(settings)
        self.draining = False
        self._published: dict[str, Hashable] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._publish_timer: asyncio.TimerHandle | None = None
        self._last_publish = -math.inf
        servicer.aggregate_listeners.append(self.aggregate_changed)
        servicer.round_listeners.append(self.round_closed)

    # -- lifetime ---------------------------------------------------------------------------

    def register(self, server: grpc.aio.Server) -> None:
        """Add grpc.health.v1 to `server` (before it starts)."""
        self.health.register(server)

    def start(self) -> None:
        """With the loop running: the first status, the stalled subscribers' reaper, the ticker."""
        self.aggregate_changed(self._clock())
        self.hub.start()
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    def begin_drain(self) -> None:
        """First signal: NOT_SERVING, every stream told to end, new ones refused."""
        if self.draining:
            return
        self.draining = True
        self.metrics.set_draining(True)
        self.aggregate_changed(self._clock())  # health follows `draining`
        self.hub.close()
        self.streams.close()

    async def finish(self, grace: float) -> None:
        """Wait (at most `grace` s) for the streams to end, then end the health watchers."""
        self.begin_drain()
        try:
            async with asyncio.timeout(grace):
                await asyncio.gather(self.hub.wait_closed(), self.streams.wait_closed())
        except TimeoutError:
            # A client that never reads again holds its write; the server's stop ends it.
            _log.warning(
                "streams_still_open",
                subscribers=self.hub.open_streams,
                submission_streams=self.streams.open_streams,
            )
        self.health.close()
        if self._publish_timer is not None:
            self._publish_timer.cancel()
            self._publish_timer = None
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.aggregate_changed(self._clock())
            except Exception:  # noqa: BLE001 - logged; the ticker must outlive one bad turn
                _log.exception("streaming_tick_failed")

    # -- the servicer's hooks -------------------------------------------------------------------

    def aggregate_changed(self, now: float) -> None:
        """After a change of the live aggregate (and each tick): publish, health, gauges."""
        servicer = self._servicer
        answer = servicer.price_answer("")
        status = price_status(answer)
        self.health.update(status, self.draining)
        book = servicer.book
        current = book.aggregate(now)
        self.metrics.set_aggregate(
            price=current.price,
            # The wire's double (set by the rounds work), as the gauge is a float anyway.
            confidence=Decimal(repr(answer.confidence)) if answer.confidence else None,
            status=status,
            minute=current.minute,
            inputs={item.exchange: item.price for item in current.inputs},
        )
        self.metrics.set_active_nodes(book.active_node_count(now))
        if self.hub.attached == 0 or self.hub.closing:
            return  # nobody to tell; a new subscriber starts from the current state anyway
        self._schedule_publish(answer)

    def _schedule_publish(self, answer: oracle_pb2.GetPriceResponse) -> None:
        # The hub fans out at most once per interval; building the exchanges' answers more often
        # than that would be work thrown away under a flood of submissions, so it waits as well.
        if self._publish_timer is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_publish + self._publish_interval() - loop.time()
        if wait <= 0:
            self._publish(answer)
        else:
            self._publish_timer = loop.call_later(wait, self._publish, None)

    def _publish_interval(self) -> float:
        settings = self._config.streaming
        return max(
            settings.min_update_interval_seconds,
            self.hub.attached * settings.update_interval_per_subscriber_seconds,
        )

    def _publish(self, answer: oracle_pb2.GetPriceResponse | None) -> None:
        self._publish_timer = None
        self._last_publish = asyncio.get_running_loop().time()
        if self.hub.closing:
            return
        servicer = self._servicer
        if answer is None:
            answer = servicer.price_answer("")
        aggregate = answer if self._changed("", answer) else None
        exchanges: dict[str, oracle_pb2.GetPriceResponse] = {}
        for exchange in self._config.exchanges:
            exchange_answer = servicer.price_answer(exchange)
            if self._changed(exchange, exchange_answer):
                exchanges[exchange] = exchange_answer
        if aggregate is not None or exchanges:
            self.hub.publish_price(aggregate=aggregate, exchanges=exchanges)

    def _changed(self, source: str, answer: oracle_pb2.GetPriceResponse) -> bool:
        key = _change_key(answer)
        if self._published.get(source) == key:
            return False
        self._published[source] = key
        return True

    async def round_closed(self, round_: oracle_pb2.Round) -> None:
        """A round closed: its update to the aggregate's subscribers, its metrics."""
        if self._publish_timer is not None:
            # A price change waiting for its fan-out goes first: a round never overtakes it.
            self._publish_timer.cancel()
            self._publish(None)
        self.hub.publish_round(round_)
        closed_at = round_.closed_at_ms / 1000 if round_.closed_at_ms else self._clock()
        self.metrics.record_round_closed(
            minute=round_.minute,
            closed_at=closed_at,
            status=round_.status,
            close_reason=round_.close_reason,
        )

    def observe_rpc(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.metrics.observe_rpc(method, code, seconds)

    # -- submissions (both transports) ----------------------------------------------------------

    async def submit(
        self, request: oracle_pb2.PriceRequest, *, transport: Transport
    ) -> oracle_pb2.PriceResponse:
        """The servicer's one submit path, counted once whatever the transport."""
        try:
            response = await self._servicer.submit_price(request)
        except OracleError as error:
            self.metrics.record_refusal(refusal_reason(error))
            raise
        outcome = "duplicate" if response.duplicate else "accepted"
        self.metrics.record_submission(request.source, outcome, transport=transport)
        return response

    async def _stream_submit(self, request: oracle_pb2.PriceRequest) -> oracle_pb2.PriceResponse:
        return await self.submit(request, transport="stream")

    def _live_update(self) -> oracle_pb2.AggregatedPriceUpdate:
        now = self._clock()
        answer = self._servicer.price_answer("")
        update = oracle_pb2.AggregatedPriceUpdate(
            timestamp=int(now),
            active_nodes=self._servicer.book.active_nodes(now),
            status=price_status(answer),
            simulated=self._config.simulate,
        )
        if answer.success:
            update.aggregated_price = answer.aggregated_price
            update.data_points = answer.data_points
            update.aggregate_minute = answer.aggregate_minute
            update.confidence = answer.confidence
        return update

    # -- the RPCs -------------------------------------------------------------------------------

    def subscribe_prices(
        self, request: oracle_pb2.SubscribeRequest, context: _Context
    ) -> AsyncIterator[oracle_pb2.PriceUpdate]:
        return self.hub.stream(request, context)

    def stream_prices(
        self, requests: AsyncIterator[oracle_pb2.PriceRequest], context: _Context
    ) -> AsyncIterator[oracle_pb2.AggregatedPriceUpdate]:
        return self.streams.stream(requests, context)
