"""The subscription hub behind SubscribePrices: a fan-out to read-only consumers that slows no one.

Why it is shaped this way (a price feed is read by consumers the aggregator does not control):

* Publishing is synchronous and never awaits a subscriber, so SubmitPrice and the round closer
  cannot be delayed by any consumer, however slow or hostile. A price change is fanned out (for
  each matching subscriber: replace a slot, wake a future) at once when the previous fan-out is
  at least `min_update_interval_seconds` old (0.1 s), else it is coalesced with later changes and
  fanned out when that interval is over, and the interval grows with the number of subscribers
  (`update_interval_per_subscriber_seconds`): the aggregate changes a few times a minute, so real
  updates go out at once, while a flood of submissions cannot cost a write per subscriber each.
  Subscribers are woken in batches, so SubmitPrice calls interleave with a large fan-out.
* Conflation: each subscriber holds only the newest price update. A consumer that reads slower
  than prices change skips superseded ones; `PriceUpdate.sequence` is assigned when an update is
  offered, so the skipped ones show as a gap.
* Round closes are not conflated: each subscriber keeps them in a small bounded queue
  (`round_queue`, in order, interleaved with prices by sequence). A committer that misses one anyway
  (it was dropped, or restarted) catches up with `GetPriceHistory(from_minute=<the last round it
  received>)`: the stream is a notification channel, the history is the record.
* Behind means not taking an update that has waited `max_lag_seconds`: the subscriber's stream
  is stalled (gRPC flow control blocks our write once the client stops reading). It is then
  detached at once (nothing more is kept for it) and its stream ends with RESOURCE_EXHAUSTED
  saying why and how to resume, as soon as gRPC lets the write finish. A round queue that
  overflows drops the subscriber the same way: losing a round silently would be worse.
* A stream that never lets its write finish (a client that never reads again) cannot be ended
  from the server short of stopping it; grpc.aio has no server-side cancel. It keeps counting
  against `max_subscribers` until its client goes away or the server stops, so stalled clients
  cannot make the aggregator hold an unbounded number of streams; `max_subscribers_per_peer`
  keeps one address from taking every slot.
* On shutdown (`close`) every stream is given what is pending, then ends with UNAVAILABLE
  ("resubscribe"), a clean status a client's retry policy understands, before the server stops.

A subscription with `source_filter` = an exchange gets that exchange's price updates only (its
first update is that exchange's current answer, as GetAggregatedPrice(source_filter) gives it);
round closes go to aggregate subscribers only, as a round is about the aggregate.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import Any, Final, Protocol

import grpc

from aggregator.streaming_settings import StreamingSettings
from common.errors import CapacityError, InvalidObservationError, OracleError, UnavailableError
from common.logsetup import get_logger
from common.proto import oracle_pb2
from common.timeutil import Clock, system_clock

_log = get_logger(service="aggregator")

_Context = grpc.aio.ServicerContext[Any, Any]

# The aggregate: subscriptions without a source filter.
AGGREGATE: Final = ""

# Subscribers woken per loop turn during a fan-out (each then writes its update).
_WAKE_BATCH: Final = 64

DROP_BEHIND: Final = "behind"
DROP_ROUND_QUEUE_FULL: Final = "round_queue_full"

_RESUME_HINT: Final = (
    "resubscribe to get the current state at once, and catch up on round closes with "
    "GetPriceHistory(from_minute=<the last round minute received>)"
)


class Snapshot(Protocol):
    """The current answer for a filter ("" = the aggregate): a new subscriber's first update."""

    def __call__(self, source: str) -> oracle_pb2.GetPriceResponse: ...


class SubscriptionObserver(Protocol):
    """Told about subscriber counts and drops (the metrics implement it)."""

    def subscribers_changed(self, attached: int) -> None: ...

    def subscriber_dropped(self, reason: str) -> None: ...


def peer_address(peer: str) -> str:
    """The client's address without its port ("ipv4:10.0.0.1:5123" -> "ipv4:10.0.0.1")."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rsplit(":", 1)[0]
    return peer


class Subscription:
    """One subscriber's pending updates: the newest price, the queued round closes, a waiter."""

    __slots__ = (
        "_next_sequence",
        "_price",
        "_round_limit",
        "_rounds",
        "_waiter",
        "attached",
        "delivered",
        "end",
        "peer",
        "pending_since",
        "skipped",
        "source",
    )

    def __init__(self, source: str, peer: str, round_limit: int) -> None:
        self.source = source
        self.peer = peer
        self._round_limit = round_limit
        self._next_sequence = 1
        self._price: tuple[int, int, oracle_pb2.GetPriceResponse] | None = None
        self._rounds: deque[tuple[int, int, oracle_pb2.Round]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        # Monotonic time since which an update has been waiting for this subscriber.
        self.pending_since: float | None = None
        # Set when the stream must end once what is pending has been taken.
        self.end: OracleError | None = None
        self.attached = True
        self.delivered = 0
        self.skipped = 0

    @property
    def pending(self) -> bool:
        return self._price is not None or bool(self._rounds)

    def offer_price(
        self,
        payload: oracle_pb2.GetPriceResponse,
        timestamp_ms: int,
        now: float,
        *,
        wake: bool = True,
    ) -> None:
        if self._price is not None:
            self.skipped += 1  # conflated: the superseded update's sequence becomes a gap
        self._price = (self._take_sequence(), timestamp_ms, payload)
        self._pending_from(now)
        if wake:
            self.wake()

    def offer_round(
        self, round_: oracle_pb2.Round, timestamp_ms: int, now: float, *, wake: bool = True
    ) -> bool:
        """Queue a round close; False when the queue is full (the caller drops the subscriber)."""
        if len(self._rounds) >= self._round_limit:
            return False
        self._rounds.append((self._take_sequence(), timestamp_ms, round_))
        self._pending_from(now)
        if wake:
            self.wake()
        return True

    def finish(self, reason: OracleError, *, discard_pending: bool = False) -> None:
        """End the stream once what is pending has been taken (at once with `discard_pending`)."""
        if self.end is None:
            self.end = reason
        if discard_pending:
            self._price = None
            self._rounds.clear()
            self.pending_since = None
        self.wake()

    def take(self, now: float) -> oracle_pb2.PriceUpdate | None:
        """The pending update with the lowest sequence, as a wire message, or None."""
        price, rounds = self._price, self._rounds
        update: oracle_pb2.PriceUpdate
        if rounds and (price is None or rounds[0][0] < price[0]):
            sequence, timestamp_ms, round_ = rounds.popleft()
            update = oracle_pb2.PriceUpdate(
                sequence=sequence, timestamp_ms=timestamp_ms, round=round_
            )
        elif price is not None:
            sequence, timestamp_ms, payload = price
            self._price = None
            update = oracle_pb2.PriceUpdate(
                sequence=sequence, timestamp_ms=timestamp_ms, price=payload
            )
        else:
            return None
        # Progress: what is still pending has waited only since now.
        self.pending_since = now if self.pending else None
        self.delivered += 1
        return update

    async def next_update(self, monotonic: Callable[[], float]) -> oracle_pb2.PriceUpdate:
        """Wait for the next update; raises the end reason once nothing is pending."""
        while True:
            update = self.take(monotonic())
            if update is not None:
                return update
            if self.end is not None:
                raise self.end
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _take_sequence(self) -> int:
        sequence = self._next_sequence
        self._next_sequence = sequence + 1
        return sequence

    def _pending_from(self, now: float) -> None:
        if self.pending_since is None:
            self.pending_since = now

    def wake(self) -> None:
        """Resume the subscriber's stream if it is waiting for an update."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _wake_in_batches(subscriptions: list[Subscription]) -> None:
    """Wake a batch now and the rest in later loop turns, so other calls run in between."""
    batch, rest = subscriptions[:_WAKE_BATCH], subscriptions[_WAKE_BATCH:]
    for subscription in batch:
        subscription.wake()
    if not rest:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop: nobody can be waiting to interleave with
        for subscription in rest:
            subscription.wake()
        return
    loop.call_soon(_wake_in_batches, rest)


class SubscriptionHub:
    """Holds every subscriber, publishes to them without waiting, drops the stalled ones."""

    def __init__(
        self,
        settings: StreamingSettings,
        *,
        snapshot: Snapshot,
        exchanges: Collection[str],
        clock: Clock = system_clock,
        monotonic: Callable[[], float] = time.monotonic,
        observer: SubscriptionObserver | None = None,
    ) -> None:
        self._settings = settings
        self._snapshot = snapshot
        self._exchanges = frozenset(exchanges)
        self._clock = clock
        self._monotonic = monotonic
        self._observer = observer
        self._by_source: dict[str, set[Subscription]] = {AGGREGATE: set()}
        self._by_source.update((exchange, set()) for exchange in self._exchanges)
        # Every stream still open, attached or not (a dropped one whose write is stalled).
        self._open: set[Subscription] = set()
        self._open_by_peer: dict[str, int] = {}
        self._attached = 0
        self._closing = False
        self._all_ended = asyncio.Event()
        self._all_ended.set()
        self._reaper: asyncio.Task[None] | None = None
        # Coalesced price changes waiting for the next fan-out: source -> (payload, time ms).
        self._pending: dict[str, tuple[oracle_pb2.GetPriceResponse, int]] = {}
        self._last_fanout = -math.inf
        self._fanout_timer: asyncio.TimerHandle | None = None
        self.fanouts = 0

    # -- figures ------------------------------------------------------------------------------

    @property
    def attached(self) -> int:
        """Subscribers receiving updates."""
        return self._attached

    @property
    def open_streams(self) -> int:
        """Streams still open, including dropped ones whose client has not let them end yet."""
        return len(self._open)

    @property
    def closing(self) -> bool:
        return self._closing

    # -- publishing (synchronous: never waits for a subscriber) --------------------------------

    def publish_price(
        self,
        aggregate: oracle_pb2.GetPriceResponse | None = None,
        exchanges: Mapping[str, oracle_pb2.GetPriceResponse] | None = None,
    ) -> None:
        """Offer a changed live aggregate and/or changed exchange prices to their subscribers.

        The messages are shared by every subscriber and must not be modified afterwards. After
        `close` nothing more is offered, so every stream can reach its end.
        """
        if self._closing:
            return
        timestamp_ms = int(self._clock() * 1000)
        if aggregate is not None:
            self._pending[AGGREGATE] = (aggregate, timestamp_ms)
        if exchanges:
            for exchange, answer in exchanges.items():
                if exchange in self._by_source:
                    self._pending[exchange] = (answer, timestamp_ms)
        if not self._pending or self._fanout_timer is not None:
            return  # a fan-out is already scheduled: it will send the newest
        now = self._monotonic()
        wait = self._last_fanout + self._interval() - now
        if wait <= 0:
            self._fan_out()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): nothing could wait, send now
            self._fan_out()
            return
        self._fanout_timer = loop.call_later(wait, self._fan_out)

    def _fan_out(self) -> None:
        """Offer every coalesced price change to its subscribers (O(matching subscribers))."""
        if self._fanout_timer is not None:
            self._fanout_timer.cancel()
            self._fanout_timer = None
        pending, self._pending = self._pending, {}
        now = self._monotonic()
        self._last_fanout = now
        self.fanouts += 1
        offered: list[Subscription] = []
        for source, (payload, timestamp_ms) in pending.items():
            for subscription in self._by_source[source]:
                subscription.offer_price(payload, timestamp_ms, now, wake=False)
                offered.append(subscription)
        _wake_in_batches(offered)

    def _interval(self) -> float:
        settings = self._settings
        return max(
            settings.min_update_interval_seconds,
            self._attached * settings.update_interval_per_subscriber_seconds,
        )

    def publish_round(self, round_: oracle_pb2.Round) -> None:
        """Offer a closed round to every aggregate subscriber (not conflated; bounded queue).

        Coalesced price changes go out first, so a round never overtakes a price published
        before it.
        """
        if self._closing:
            return
        if self._pending:
            self._fan_out()
        timestamp_ms = int(self._clock() * 1000)
        now = self._monotonic()
        offered: list[Subscription] = []
        overflowed: list[Subscription] = []
        for subscription in self._by_source[AGGREGATE]:
            if subscription.offer_round(round_, timestamp_ms, now, wake=False):
                offered.append(subscription)
            else:
                overflowed.append(subscription)
        _wake_in_batches(offered)
        for subscription in overflowed:
            self._drop(
                subscription,
                DROP_ROUND_QUEUE_FULL,
                f"dropped: {self._settings.round_queue} round closes were waiting for this "
                f"subscriber (limit [streaming] round_queue); {_RESUME_HINT}",
            )

    # -- dropping the stalled ----------------------------------------------------------------

    def reap(self) -> int:
        """Drop every subscriber that left an update waiting past `max_lag_seconds`."""
        limit = self._settings.max_lag_seconds
        now = self._monotonic()
        behind = [
            subscription
            for subscribers in self._by_source.values()
            for subscription in subscribers
            if subscription.pending_since is not None and now - subscription.pending_since > limit
        ]
        for subscription in behind:
            self._drop(
                subscription,
                DROP_BEHIND,
                f"dropped: this subscriber left an update waiting more than {limit:g} s "
                f"(limit [streaming] max_lag_seconds; it is not reading); {_RESUME_HINT}",
            )
        return len(behind)

    def start(self) -> None:
        """Start reaping stalled subscribers in the background (call with the loop running)."""
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        interval = min(max(self._settings.max_lag_seconds / 4, 0.02), 5.0)
        while True:
            await asyncio.sleep(interval)
            self.reap()

    # -- shutdown ----------------------------------------------------------------------------

    def close(self) -> None:
        """Refuse new subscribers; every stream ends with UNAVAILABLE after what is pending."""
        if self._closing:
            return
        self._closing = True
        if self._pending:
            self._fan_out()
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        reason = UnavailableError(
            "the aggregator is shutting down; resubscribe (to another aggregator or after the "
            "restart) and catch up on round closes with GetPriceHistory"
        )
        for subscription in list(self._open):
            subscription.finish(reason)

    async def wait_closed(self) -> None:
        """After `close`: until every stream has ended (bound it with `asyncio.timeout`)."""
        await self._all_ended.wait()

    # -- the servicer's side ----------------------------------------------------------------------

    async def stream(
        self, request: oracle_pb2.SubscribeRequest, context: _Context
    ) -> AsyncIterator[oracle_pb2.PriceUpdate]:
        """The body of SubscribePrices: the current state at once, then every update.

        The servicer's method is `async for update in hub.stream(request, context): yield update`
        (grpc.aio needs the method itself to be an async generator function).
        """
        try:
            subscription = self.attach(request, context.peer())
        except OracleError as error:
            _log.warning("subscribe_refused", status=error.status.name, reason=str(error))
            await context.abort(error.status, str(error))
            return  # unreachable: abort raises
        try:
            while True:
                try:
                    update = await subscription.next_update(self._monotonic)
                except OracleError as error:
                    await context.abort(error.status, str(error))
                yield update
        finally:
            self.detach(subscription)

    def attach(self, request: oracle_pb2.SubscribeRequest, peer: str) -> Subscription:
        """Register a subscriber and offer it the current state; refusals raise OracleError."""
        if self._closing:
            raise UnavailableError("the aggregator is shutting down; subscribe elsewhere or later")
        source = request.source_filter if request.HasField("source_filter") else AGGREGATE
        if source not in self._by_source:
            allowed = ", ".join(sorted(self._exchanges))
            raise InvalidObservationError(
                "source_filter", f"must be empty (the aggregate) or one of {allowed}"
            )
        if len(self._open) >= self._settings.max_subscribers:
            raise CapacityError(
                f"subscriber limit reached: {len(self._open)} streams open (limit [streaming] "
                "max_subscribers); retry later or poll GetAggregatedPrice"
            )
        address = peer_address(peer)
        from_peer = self._open_by_peer.get(address, 0)
        if from_peer >= self._settings.max_subscribers_per_peer:
            raise CapacityError(
                f"subscriber limit reached for {address}: {from_peer} streams open from it "
                "(limit [streaming] max_subscribers_per_peer); share one subscription"
            )
        subscription = Subscription(source, address, self._settings.round_queue)
        # The snapshot first: a failing snapshot must leave nothing registered.
        first = self._snapshot(source)
        subscription.offer_price(first, int(self._clock() * 1000), self._monotonic())
        self._by_source[source].add(subscription)
        self._open.add(subscription)
        self._open_by_peer[address] = from_peer + 1
        self._all_ended.clear()
        self._attached += 1
        self._notify_count()
        return subscription

    def detach(self, subscription: Subscription) -> None:
        """The stream ended (any way): forget the subscriber and free its slot."""
        if subscription not in self._open:
            return
        self._unlink(subscription)
        self._open.discard(subscription)
        remaining = self._open_by_peer[subscription.peer] - 1
        if remaining:
            self._open_by_peer[subscription.peer] = remaining
        else:
            del self._open_by_peer[subscription.peer]
        if not self._open:
            self._all_ended.set()

    def _drop(self, subscription: Subscription, reason: str, message: str) -> None:
        if not subscription.attached:
            return
        self._unlink(subscription)
        subscription.finish(CapacityError(message), discard_pending=True)
        _log.warning(
            "subscriber_dropped",
            reason=reason,
            peer=subscription.peer,
            source=subscription.source or "aggregate",
            delivered=subscription.delivered,
        )
        if self._observer is not None:
            self._observer.subscriber_dropped(reason)

    def _unlink(self, subscription: Subscription) -> None:
        # Detached from publishing: nothing more is kept for it.
        if subscription.attached:
            subscription.attached = False
            self._by_source[subscription.source].discard(subscription)
            self._attached -= 1
            self._notify_count()

    def _notify_count(self) -> None:
        if self._observer is not None:
            self._observer.subscribers_changed(self._attached)
