"""Fetching one closed candle over HTTP, with retries that only repeat what can succeed later.

The adapter describes the request and parses the answer; this module does the I/O and decides what
to do on failure: exponential backoff with jitter on network errors, timeouts, 5xx and rate limits
(429/418 honour `Retry-After`, Kraken's rate-limit error counts too); polling every few seconds
while the venue has not published the minute yet; and an immediate, explained failure on anything
else (invalid symbol, geo-block, a simulated answer to a real node or the reverse). Every retry and
poll stops at the minute's deadline, so a slow venue never makes the node miss the next minute.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Collection
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from common.logsetup import get_logger
from common.timeutil import Clock, format_minute, system_clock
from oracle_node.candle import Candle
from oracle_node.config import ExchangeSettings
from oracle_node.errors import (
    CandleNotYetAvailableError,
    FetchError,
    MalformedResponseError,
    PermanentFetchError,
    RateLimitedError,
    TransientFetchError,
)
from oracle_node.exchanges import get_adapter

SIMULATED_HEADER: Final = "X-Oracle-Simulated"
# The longest pause a venue's Retry-After can impose (seconds). Binance documents bans of up to
# three days, but honouring a value like that, or a mistaken one, would silence the node until
# restarted; after an hour, one request finds out whether the ban is still on.
MAX_RETRY_AFTER: Final = 3600.0

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class FetchResult:
    """A closed candle and how getting it went (for the skew and latency log lines)."""

    candle: Candle
    latency_ms: float
    attempts: int


def make_client(settings: ExchangeSettings) -> httpx.AsyncClient:
    """The process's one HTTP client: explicit timeouts, a User-Agent (Coinbase requires one)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.timeout, connect=min(settings.timeout, 5.0)),
        headers={"User-Agent": settings.user_agent, "Accept": "application/json"},
        follow_redirects=False,
    )


def parse_http_date(value: str | None) -> float | None:
    """An HTTP date (`Mon, 20 Jan 2025 14:36:00 GMT`) as epoch seconds; None if absent or bad."""
    if value is None:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_retry_after(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None if absent or bad."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # 'inf' and 'nan' parse as floats but are no waiting time.
        return max(0.0, seconds) if math.isfinite(seconds) else None
    when = parse_http_date(text)
    if when is None:
        return None
    return max(0.0, when - now)


class CandleFetcher:
    """Gets the closed candle of one minute from one exchange, retrying within a deadline."""

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
    ) -> None:
        self._client = client
        self._settings = settings
        self._adapter = get_adapter(settings.name)
        self._simulate = simulate
        self._clock = clock
        self._sleep = sleep
        self._lag_poll_interval = lag_poll_interval
        # Until this clock time the venue asked us (Retry-After) not to call: calling anyway
        # during a Binance 418 ban lengthens the ban.
        self._quiet_until = 0.0
        self._backfilled: dict[int, Candle] = {}
        self._rng = rng or random.Random()  # noqa: S311 - backoff jitter, not cryptography
        bound = {"exchange": settings.name}
        if simulate:
            bound["mode"] = "SIMULATED"
        self._log = get_logger().bind(**bound)

    @property
    def api_url(self) -> str:
        """The base URL requests go to."""
        return self._settings.api_url

    async def fetch(
        self, minute: int, deadline: float, *, backfill: Collection[int] = ()
    ) -> FetchResult:
        """The candle that opened at `minute`; raises the last `FetchError` if none by `deadline`.

        `deadline` is a time on the injected clock after which no new attempt starts. Each answer
        is also searched for the closed candles of the earlier minutes in `backfill` (one request
        returns many rows); those found wait in `take_backfilled`, whether or not `minute` is.
        """
        if (quiet := self._quiet_until - self._clock()) > 0:
            raise RateLimitedError(
                f"{self._adapter.display_name} asked for no requests for {quiet:.0f} s more "
                "(Retry-After); not calling it before then",
                retry_after=quiet,
            )
        failures = _FailureCount()
        attempts = 0
        latency_ms = 0.0
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((TransientFetchError, CandleNotYetAvailableError)),
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
                candle = await self._attempt(minute, backfill)
                latency_ms = (time.perf_counter() - started) * 1000
        return FetchResult(candle=candle, latency_ms=round(latency_ms, 1), attempts=attempts)

    def take_backfilled(self) -> list[Candle]:
        """The earlier minutes found since the last call, oldest first; forgets them."""
        found = [self._backfilled[minute] for minute in sorted(self._backfilled)]
        self._backfilled.clear()
        return found

    async def _attempt(self, minute: int, backfill: Collection[int]) -> Candle:
        request = self._adapter.request(self._settings.symbol, minute)
        url = self._settings.api_url + request.path
        try:
            response = await self._client.get(
                url, params=request.params, headers=request.headers or None
            )
        except httpx.TimeoutException as exc:
            raise TransientFetchError(
                f"{self._adapter.display_name} request timed out after "
                f"{self._settings.timeout:g} s ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise TransientFetchError(
                f"cannot reach {self._adapter.display_name} at {self._settings.api_url}: {exc!r}"
            ) from exc
        except httpx.HTTPError as exc:
            # The rest of httpx's tree (a body that fails to decode, too many redirects, ...):
            # one odd answer is worth another try, never the end of the node.
            raise TransientFetchError(
                f"{self._adapter.display_name} answer could not be read: {exc!r}"
            ) from exc
        self._check_simulated(response)
        status = response.status_code
        if status in {418, 429}:
            retry_after = self._retry_after(response.headers.get("Retry-After"), status)
            if retry_after is not None:
                self._quiet_until = max(self._quiet_until, self._clock() + retry_after)
            raise RateLimitedError(
                f"{self._adapter.display_name} rate limit (HTTP {status}): "
                f"{self._adapter.error_message(status, response.content)}",
                retry_after=retry_after,
            )
        if status >= 500:
            raise TransientFetchError(self._adapter.error_message(status, response.content))
        if status != 200:
            raise PermanentFetchError(self._adapter.error_message(status, response.content))
        exchange_time = self._exchange_time(response)
        for earlier in backfill:
            if earlier not in self._backfilled:
                # Not there (yet) or unreadable: the wanted minute's parse below says why.
                with suppress(FetchError):
                    self._backfilled[earlier] = self._adapter.parse(
                        response.content, self._settings.symbol, earlier, exchange_time
                    )
        return self._adapter.parse(response.content, self._settings.symbol, minute, exchange_time)

    def _exchange_time(self, response: httpx.Response) -> float:
        """The venue's clock when it answered (HTTP `Date`), or ours if it sent none we can read.

        Closedness is judged on the venue's clock: ours may run ahead of it by a second or two.
        """
        when = parse_http_date(response.headers.get("Date"))
        return when if when is not None else self._clock()

    def _retry_after(self, header: str | None, status: int) -> float | None:
        """The venue's `Retry-After`, at most `MAX_RETRY_AFTER`: a bad or hostile value ('1e12',
        a far-future date) must not silence the node until it is restarted."""
        retry_after = parse_retry_after(header, self._clock())
        if retry_after is not None and retry_after > MAX_RETRY_AFTER:
            self._log.error(
                "retry_after_clamped",
                status=status,
                retry_after_header=header,
                retry_after=retry_after,
                clamped_to=MAX_RETRY_AFTER,
                hint="the venue asked for an implausibly long pause; asking again after the cap",
            )
            retry_after = MAX_RETRY_AFTER
        return retry_after

    def _check_simulated(self, response: httpx.Response) -> None:
        """A simulated answer must never pass as a real price, nor a real one as simulated."""
        marked = response.headers.get(SIMULATED_HEADER) == "1"
        if marked and not self._simulate:
            raise PermanentFetchError(
                f"{self._settings.api_url} is the exchange simulator ({SIMULATED_HEADER}: 1) but "
                "this node is not in --simulate mode; refusing to submit simulated prices as real"
            )
        if self._simulate and not marked:
            raise PermanentFetchError(
                f"{self._settings.api_url} did not mark its answer {SIMULATED_HEADER}: 1; in "
                "--simulate mode only the exchange simulator may be used (a real price would be "
                "labelled simulated)"
            )

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


@dataclass
class _FailureCount:
    """Failures that count against max_retries (lag polls do not: they are bounded by time)."""

    count: int = 0


def _error_of(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


__all__ = ["SIMULATED_HEADER", "CandleFetcher", "FetchError", "FetchResult", "make_client"]
