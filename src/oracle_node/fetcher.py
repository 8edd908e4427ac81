"""Fetching one closed candle of one pair, with retries that only repeat what can succeed later.

The adapter describes the request and parses the answer; `venue.VenueClient` does the bounded
I/O; this module decides what to do on failure, reading only `FetchError.retryable`: exponential
backoff with jitter on network errors, timeouts, 5xx, malformed answers and rate limits (429/418
honour `Retry-After`, Kraken's rate-limit error counts too); polling every few seconds while the
venue has not published the minute yet; and an immediate, explained failure on anything else
(invalid symbol, geo-block, a simulated answer to a real node or the reverse). Every retry and
poll stops at the minute's deadline, and every attempt has a total deadline of its own, so a slow,
dripping or hostile venue costs at most that minute, never the next one.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Collection
from contextlib import suppress
from dataclasses import dataclass

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from common.logsetup import get_logger
from common.timeutil import MINUTE, Clock, format_minute, system_clock
from oracle_node.candle import Candle
from oracle_node.config import ExchangeSettings
from oracle_node.errors import (
    CandleNotYetAvailableError,
    FetchError,
    MalformedResponseError,
    RateLimitedError,
    TransientFetchError,
)
from oracle_node.venue import (
    MAX_RETRY_AFTER,
    VenueClient,
    make_client,
    parse_http_date,
    parse_retry_after,
)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class FetchResult:
    """A closed candle and how getting it went (for the skew and latency log lines)."""

    candle: Candle
    latency_ms: float
    attempts: int


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, FetchError) and error.retryable


class CandleFetcher:
    """Gets the closed candle of one minute of one pair from one exchange, within a deadline.

    `client` and `settings` name the venue; `symbol` (default: the settings' BTC symbol) the
    pair. `sibling` makes a fetcher for another pair of the same venue that shares its
    `VenueClient`, so a Retry-After from either pair silences both.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: ExchangeSettings,
        *,
        simulate: bool = False,
        clock: Clock = system_clock,
        sleep: Sleep = asyncio.sleep,
        lag_poll_interval: float = 2.0,
        rng: random.Random | None = None,
        symbol: str | None = None,
        venue: VenueClient | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self._venue = venue or VenueClient(client, settings, simulate=simulate, clock=clock)
        self._client = client
        self._settings = settings
        self._simulate = simulate
        self._adapter = self._venue.adapter
        self.symbol = symbol or settings.symbol
        self._clock = clock
        self._sleep = sleep
        self._lag_poll_interval = lag_poll_interval
        self._backfilled: dict[int, Candle] = {}
        self._rng = rng or random.Random()  # noqa: S311 - backoff jitter, not cryptography
        # Told the cause of every retry (the node's metrics count them by cause).
        self.on_retry = on_retry
        bound = {"exchange": settings.name, "symbol": self.symbol}
        if simulate:
            bound["mode"] = "SIMULATED"
        self._log = get_logger().bind(**bound)

    def sibling(self, symbol: str) -> CandleFetcher:
        """A fetcher for `symbol` on the same venue, sharing this one's venue client."""
        return CandleFetcher(
            self._client,
            self._settings,
            simulate=self._simulate,
            clock=self._clock,
            sleep=self._sleep,
            lag_poll_interval=self._lag_poll_interval,
            rng=self._rng,
            symbol=symbol,
            venue=self._venue,
            on_retry=self.on_retry,
        )

    @property
    def api_url(self) -> str:
        """The base URL requests go to."""
        return self._settings.api_url

    async def fetch(
        self,
        minute: int,
        deadline: float,
        *,
        backfill: Collection[int] = (),
        accept_older: int = 0,
    ) -> FetchResult:
        """The candle that opened at `minute`; raises the last `FetchError` if none by `deadline`.

        `deadline` is a time on the injected clock after which no new attempt starts. Each answer
        is also searched for the closed candles of the earlier minutes in `backfill` (one request
        returns many rows); those found wait in `take_backfilled`, whether or not `minute` is.
        With `accept_older` = N, the newest closed candle of `minute` and the N minutes before it
        is returned (for a rate, a minute or two old is as good as none missing).
        """
        self._venue.check_not_quiet()
        wanted = [minute - back * MINUTE for back in range(accept_older + 1)]
        failures = _FailureCount()
        attempts = 0
        latency_ms = 0.0
        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_retryable),
            wait=lambda state: self._wait(state, failures),
            stop=lambda state: self._stop(state, failures, deadline),
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(state, minute),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                attempts += 1
                started = time.perf_counter()
                candle = await self._attempt(wanted, deadline, backfill)
                latency_ms = (time.perf_counter() - started) * 1000
        return FetchResult(candle=candle, latency_ms=round(latency_ms, 1), attempts=attempts)

    def take_backfilled(self) -> list[Candle]:
        """The earlier minutes found since the last call, oldest first; forgets them."""
        found = [self._backfilled[minute] for minute in sorted(self._backfilled)]
        self._backfilled.clear()
        return found

    async def _attempt(
        self, wanted: list[int], deadline: float, backfill: Collection[int]
    ) -> Candle:
        request = self._adapter.request(self.symbol, wanted[0])
        answer = await self._venue.get(request, self._venue.attempt_budget(deadline))
        parse = self._adapter.parse
        for earlier in backfill:
            if earlier not in self._backfilled:
                # Not there (yet) or unreadable: the wanted minute's parse below says why.
                with suppress(FetchError):
                    self._backfilled[earlier] = parse(
                        answer.body, self.symbol, earlier, answer.exchange_time
                    )
        try:
            return parse(answer.body, self.symbol, wanted[0], answer.exchange_time)
        except CandleNotYetAvailableError:
            for older in wanted[1:]:  # newest first; if none is there, the wanted minute's error
                with suppress(CandleNotYetAvailableError):
                    return parse(answer.body, self.symbol, older, answer.exchange_time)
            raise

    def _wait(self, state: RetryCallState, failures: _FailureCount) -> float:
        error = _error_of(state)
        if isinstance(error, CandleNotYetAvailableError):
            return self._lag_poll_interval
        failures.count += 1
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return error.retry_after
        policy = self._settings.retry
        backoff = min(policy.backoff_max, policy.backoff_initial * 2.0 ** (failures.count - 1))
        return backoff + self._rng.uniform(0, policy.backoff_initial)

    def _stop(self, state: RetryCallState, failures: _FailureCount, deadline: float) -> bool:
        if failures.count > self._settings.retry.max_retries:
            return True
        upcoming = state.upcoming_sleep or 0.0
        return self._clock() + upcoming > deadline

    def _log_retry(self, state: RetryCallState, minute_start: int) -> None:
        error = _error_of(state)
        minute = format_minute(minute_start)
        wait = round(state.upcoming_sleep, 2)
        if self.on_retry is not None:
            self.on_retry(retry_cause(error))
        if isinstance(error, CandleNotYetAvailableError):
            self._log.info(
                "candle_not_yet_published", minute=minute, reason=str(error), retry_in=wait
            )
        elif isinstance(error, RateLimitedError):
            self._log.warning(
                "Rate limit exceeded - Too many requests",
                hint="Wait a moment, automatic retry with exponential backoff",
                minute=minute,
                reason=str(error),
                retry_after=error.retry_after,
                retry_in=wait,
            )
        elif isinstance(error, MalformedResponseError):
            self._log.warning(
                f"Failed to parse {self._adapter.display_name} JSON response",
                hint="Check network connection and API availability",
                minute=minute,
                reason=str(error),
                retry_in=wait,
            )
        else:
            self._log.warning("fetch_retry", minute=minute, reason=str(error), retry_in=wait)


def retry_cause(error: BaseException | None) -> str:
    """Why a fetch is retried, as the node's metrics name it (oracle_node.metrics.RETRY_CAUSES)."""
    cause = error.__cause__ if error is not None else None
    for matches, name in (
        (isinstance(error, CandleNotYetAvailableError), "not_yet_available"),
        (isinstance(error, RateLimitedError), "rate_limit"),
        (isinstance(error, MalformedResponseError), "malformed"),
        (isinstance(cause, TimeoutError | httpx.TimeoutException), "timeout"),
        (isinstance(cause, httpx.HTTPError), "network"),
        # The venue answered 5xx or said it had an outage.
        (isinstance(error, TransientFetchError), "http_5xx"),
    ):
        if matches:
            return name
    return "other"


@dataclass
class _FailureCount:
    """Failures that count against max_retries (lag polls do not: they are bounded by time)."""

    count: int = 0


def _error_of(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


__all__ = [
    "MAX_RETRY_AFTER",
    "CandleFetcher",
    "FetchError",
    "FetchResult",
    "make_client",
    "parse_http_date",
    "parse_retry_after",
]
