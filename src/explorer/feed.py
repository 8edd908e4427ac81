"""The live feed: one connection to the aggregator shared by every page and event stream.

`SubscribePrices` pushes the live aggregate and each round close; while the aggregator answers it
UNIMPLEMENTED (an aggregator without streaming), `GetAggregatedPrice` is polled instead and the
subscription is tried again now and then. A HealthCheck every few seconds notices an aggregator
that went away even when no update is due. When it is unreachable the feed says so and holds no
price (a stale price is never served as the current one); it reconnects with capped backoff.

Listeners (the event streams) never slow the feed: each holds only a "changed" flag and a short
queue of round closes (conflation), and the feed never waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Literal

from common.logsetup import get_logger
from common.proto import oracle_pb2
from common.timeutil import Clock
from explorer.config import ExplorerConfig
from explorer.errors import ExplorerError, UnsupportedError, UpstreamUnavailableError
from explorer.upstream import AggregatorClient

_log = get_logger(service="explorer")

Mode = Literal["connecting", "subscribe", "poll"]
# Round closes kept per listener between two reads; a listener further behind refreshes anyway.
_ROUND_BACKLOG = 16


@dataclass(frozen=True, slots=True)
class FeedState:
    """What the feed knows now. `price` is None whenever the aggregator is unreachable."""

    reachable: bool = False
    mode: Mode = "connecting"
    error: str | None = "not connected yet"
    changed_at: float = 0.0
    price: oracle_pb2.GetPriceResponse | None = None
    price_at: float = 0.0
    health: oracle_pb2.HealthResponse | None = None


def _visible(state: FeedState) -> tuple[object, ...]:
    """What a page shows of the state: a health check that changes none of it wakes no one."""
    health = state.health
    shown = (
        (health.healthy, health.simulated, health.draining, health.version, health.message)
        if health is not None
        else None
    )
    return (state.reachable, state.mode, state.error, state.price, shown)


@dataclass(eq=False)
class Listener:
    """One event stream's mailbox: the newest state is read on wake-up, rounds are queued."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    price_changed: bool = True
    # Set on shutdown: the stream ends at once instead of holding the server's grace period.
    closed: bool = False
    rounds: deque[oracle_pb2.Round] = field(default_factory=lambda: deque(maxlen=_ROUND_BACKLOG))


class LiveFeed:
    """Runs in the background of the web server; `state` is always safe to read."""

    def __init__(self, client: AggregatorClient, config: ExplorerConfig, clock: Clock) -> None:
        self._client = client
        self._config = config
        self._clock = clock
        self.state = FeedState(changed_at=clock())
        self._listeners: set[Listener] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribe_retry_at = 0.0

    # -- listeners --------------------------------------------------------------------------

    def listen(self) -> Listener:
        """A new mailbox, already awake: a stream sends the current state at once."""
        listener = Listener()
        listener.wake.set()
        self._listeners.add(listener)
        return listener

    def unlisten(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    def close_listeners(self) -> None:
        """Shutting down: every stream is told to end now."""
        for listener in self._listeners:
            listener.closed = True
            listener.wake.set()

    @property
    def listener_count(self) -> int:
        return len(self._listeners)

    def _notify(self, round_: oracle_pb2.Round | None = None) -> None:
        for listener in self._listeners:
            if round_ is None:
                listener.price_changed = True
            else:
                listener.rounds.append(round_)
            listener.wake.set()

    # -- state changes ----------------------------------------------------------------------

    def _set(self, **changes: object) -> None:
        before = self.state
        after = replace(before, **changes)  # type: ignore[arg-type]
        if (after.reachable, after.mode, after.error) != (
            before.reachable,
            before.mode,
            before.error,
        ):
            after = replace(after, changed_at=self._clock())
            if after.reachable and not before.reachable:
                _log.info("aggregator_reachable", target=self._client.target, mode=after.mode)
            elif not after.reachable and before.reachable:
                _log.warning(
                    "aggregator_unreachable", target=self._client.target, error=after.error
                )
        self.state = after
        if _visible(after) != _visible(before):
            self._notify()

    def _publish_price(self, price: oracle_pb2.GetPriceResponse, mode: Mode) -> None:
        state = self.state
        if state.reachable and state.mode == mode and state.price == price:
            return  # a poll that found nothing new: listeners are not woken (pages count age)
        self._set(reachable=True, mode=mode, error=None, price=price, price_at=self._clock())

    def _mark_down(self, error: ExplorerError) -> None:
        self._set(reachable=False, error=error.message, price=None)

    # -- running ----------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._price_loop(), name="explorer-price-feed"),
            asyncio.create_task(self._health_loop(), name="explorer-health"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _price_loop(self) -> None:
        backoff = 0.25
        while True:
            try:
                if self._clock() >= self._subscribe_retry_at:
                    try:
                        await self._follow_subscription()
                        # The stream ended cleanly (aggregator shutting down): reconnect, but
                        # not in a tight loop should it keep ending at once.
                        await asyncio.sleep(backoff)
                        continue
                    except UnsupportedError:
                        self._subscribe_retry_at = self._clock() + self._config.resubscribe_interval
                        _log.info(
                            "subscribe_unimplemented",
                            target=self._client.target,
                            fallback="polling GetAggregatedPrice",
                            poll_interval=self._config.poll_interval,
                        )
                await self._poll_until_resubscribe()
                backoff = 0.25
            except ExplorerError as error:
                self._mark_down(error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._config.reconnect_max)

    async def _follow_subscription(self) -> None:
        async for update in self._client.subscribe():
            which = update.WhichOneof("update")
            if which == "price":
                self._publish_price(update.price, "subscribe")
            elif which == "round":
                self._notify(update.round)

    async def _poll_until_resubscribe(self) -> None:
        last_key: tuple[int, bool] | None = None
        while self._clock() < self._subscribe_retry_at:
            price = await self._client.price()
            key = (price.aggregate_minute, price.final)
            self._publish_price(price, "poll")
            if last_key is not None and key != last_key:
                # A new minute or a round turning final: a round may have closed. Listeners
                # refresh their round list (an empty Round means "look again").
                self._notify(oracle_pb2.Round())
            last_key = key
            await asyncio.sleep(self._config.poll_interval)

    async def _health_loop(self) -> None:
        while True:
            try:
                health = await self._client.health()
                if self.state.reachable:
                    self._set(health=health)
                else:
                    # Back: fetch the price at once rather than wait for the next poll.
                    price = await self._client.price()
                    self._set(health=health)
                    self._publish_price(price, self.state.mode)
            except UpstreamUnavailableError as error:
                self._mark_down(error)
            except ExplorerError as error:
                _log.warning("health_check_failed", target=self._client.target, error=error.message)
            await asyncio.sleep(self._config.health_interval)
