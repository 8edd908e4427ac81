"""One venue's HTTP door: a GET with a total deadline and a size cap, read as a hostile venue.

Shared by every pair a node fetches from its venue (the BTC candle and the USDT/USD rate), because
what it guards is per venue: a `Retry-After` is the venue's ban on this IP, whichever pair was
asked. Each request is bounded twice: in time, by one deadline for the whole exchange (connect,
headers and every byte of the body; httpx's own timeouts are per read, so a server that drips a
byte a second would never trip them), and in size, by `MAX_BODY_BYTES` after decompression
(`body.read_limited`). The status is mapped to what the fetcher should do (429/418 rate limit
with its `Retry-After`, 5xx transient, other non-200 permanent), the simulated marker is checked
both ways, and the venue's clock is read from `Date`, distrusted when it is implausibly far from
ours.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

import httpx

from common.logsetup import get_logger
from common.simulated import SIMULATED_HEADER, SIMULATED_HEADER_VALUE, is_marked_simulated
from common.timeutil import Clock, system_clock
from oracle_node.body import ACCEPT_ENCODING, read_limited
from oracle_node.config import ExchangeSettings
from oracle_node.errors import (
    FetchError,
    PermanentFetchError,
    RateLimitedError,
    TransientFetchError,
)
from oracle_node.exchanges import ExchangeAdapter, ExchangeRequest, get_adapter

# The longest pause a venue's Retry-After can impose (seconds). Binance documents bans of up to
# three days, but honouring a value like that, or a mistaken one, would silence the node until
# restarted; after an hour, one request finds out whether the ban is still on.
MAX_RETRY_AFTER: Final = 3600.0
# The largest answer read, after decompression. A node asks for a dozen rows (about 2 KB); even
# Kraken's full 720-row answer is under 100 KB.
MAX_BODY_BYTES: Final = 1024 * 1024
# A venue clock (HTTP Date) further than this from ours is not a skew but a broken or hostile
# clock: closedness is then judged by our clock, as when no Date is sent.
MAX_CLOCK_SKEW: Final = 30.0
# The shortest total deadline an attempt gets, even when it starts right at the minute's deadline.
MIN_ATTEMPT_SECONDS: Final = 1.0


@dataclass(frozen=True)
class VenueAnswer:
    """A 200 answer's body and the venue's clock when it answered."""

    body: bytes
    exchange_time: float


def make_client(
    settings: ExchangeSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The process's one HTTP client: explicit timeouts, a User-Agent (Coinbase requires one).

    The encodings are named explicitly: `body.read_limited` bounds gzip and deflate, and a
    venue that would otherwise be offered brotli or zstd cannot send a body it cannot bound.
    `transport` replaces the network (tests: the exchange simulator's transport).
    """
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(settings.timeout, connect=min(settings.timeout, 5.0)),
        headers={
            "User-Agent": settings.user_agent,
            "Accept": "application/json",
            "Accept-Encoding": ACCEPT_ENCODING,
        },
        follow_redirects=False,
    )


def parse_http_date(value: str | None) -> float | None:
    """An HTTP date (`Mon, 20 Jan 2025 14:36:00 GMT`) as epoch seconds; None if absent or bad."""
    if value is None:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


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


class VenueClient:
    """GETs on one venue, bounded in time and size, with the venue's Retry-After remembered."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: ExchangeSettings,
        *,
        simulate: bool = False,
        clock: Clock = system_clock,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._client = client
        self._settings = settings
        self.adapter: ExchangeAdapter = get_adapter(settings.name)
        self._simulate = simulate
        self._clock = clock
        self._max_body_bytes = max_body_bytes
        # Until this clock time the venue asked us (Retry-After) not to call: calling anyway
        # during a Binance 418 ban lengthens the ban.
        self._quiet_until = 0.0
        bound = {"exchange": settings.name}
        if simulate:
            bound["mode"] = "SIMULATED"
        self._log = get_logger().bind(**bound)

    @property
    def settings(self) -> ExchangeSettings:
        """The venue's settings (base URL, timeout, retry policy)."""
        return self._settings

    def check_not_quiet(self) -> None:
        """Raise `RateLimitedError` while the venue's Retry-After has not passed."""
        if (quiet := self._quiet_until - self._clock()) > 0:
            raise RateLimitedError(
                f"{self.adapter.display_name} asked for no requests for {quiet:.0f} s more "
                "(Retry-After); not calling it before then",
                retry_after=quiet,
            )

    def attempt_budget(self, deadline: float) -> float:
        """The total seconds one request may take: its timeout, and not far past `deadline`."""
        left = max(deadline - self._clock(), MIN_ATTEMPT_SECONDS)
        return min(self._settings.timeout, left)

    async def get(self, request: ExchangeRequest, budget: float) -> VenueAnswer:
        """One GET; raises the `FetchError` that says what to do unless the venue answered 200."""
        self.check_not_quiet()
        url = self._settings.api_url + request.path
        name = self.adapter.display_name
        try:
            async with asyncio.timeout(budget):
                return await self._exchange(url, request)
        except TimeoutError as exc:
            raise TransientFetchError(
                f"{name} did not finish answering within {budget:g} s (total deadline per "
                "request: a slow or dripping answer costs at most this)"
            ) from exc
        except httpx.TimeoutException as exc:
            raise TransientFetchError(
                f"{name} request timed out after {self._settings.timeout:g} s "
                f"({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise TransientFetchError(
                f"cannot reach {name} at {self._settings.api_url}: {exc!r}"
            ) from exc
        except httpx.HTTPError as exc:
            # The rest of httpx's tree (too many redirects, ...): one odd answer is worth
            # another try, never the end of the node.
            raise TransientFetchError(f"{name} answer could not be read: {exc!r}") from exc

    async def _exchange(self, url: str, request: ExchangeRequest) -> VenueAnswer:
        async with self._client.stream(
            "GET", url, params=request.params, headers=request.headers or None
        ) as response:
            self._check_simulated(response)
            body = await read_limited(response, self._max_body_bytes)
        self._check_status(response, body)
        return VenueAnswer(body=body, exchange_time=self._exchange_time(response))

    def _check_status(self, response: httpx.Response, body: bytes) -> None:
        status = response.status_code
        if status in {418, 429}:
            retry_after = self._retry_after(response.headers.get("Retry-After"), status)
            if retry_after is not None:
                self._quiet_until = max(self._quiet_until, self._clock() + retry_after)
            raise RateLimitedError(
                f"{self.adapter.display_name} rate limit (HTTP {status}): "
                f"{self.adapter.error_message(status, body)}",
                retry_after=retry_after,
            )
        if status >= 500:
            raise TransientFetchError(self.adapter.error_message(status, body))
        if status != 200:
            raise PermanentFetchError(self.adapter.error_message(status, body))

    def _exchange_time(self, response: httpx.Response) -> float:
        """The venue's clock when it answered (HTTP `Date`), or ours if it sent none we trust.

        Closedness is judged on the venue's clock: ours may run ahead of it by a second or two.
        A Date far from ours (a broken or hostile clock) would make every minute look unclosed
        forever, or a forming one look closed: then our clock decides, and the log says so.
        """
        now = self._clock()
        header = response.headers.get("Date")
        when = parse_http_date(header)
        if when is None:
            return now
        if abs(when - now) > MAX_CLOCK_SKEW:
            self._log.warning(
                "exchange_clock_implausible",
                date_header=header[:64] if header else header,
                skew_seconds=round(when - now, 1),
                max_skew_seconds=MAX_CLOCK_SKEW,
                hint="the venue's Date is far from this machine's clock; judging closed candles "
                "by this machine's clock (check NTP here if every venue shows this)",
            )
            return now
        return when

    def _retry_after(self, header: str | None, status: int) -> float | None:
        """The venue's `Retry-After`, at most `MAX_RETRY_AFTER`: a bad or hostile value ('1e12',
        a far-future date) must not silence the node until it is restarted."""
        retry_after = parse_retry_after(header, self._clock())
        if retry_after is not None and retry_after > MAX_RETRY_AFTER:
            self._log.error(
                "retry_after_clamped",
                status=status,
                retry_after_header=header[:64] if header else header,
                retry_after=retry_after,
                clamped_to=MAX_RETRY_AFTER,
                hint="the venue asked for an implausibly long pause; asking again after the cap",
            )
            retry_after = MAX_RETRY_AFTER
        return retry_after

    def _check_simulated(self, response: httpx.Response) -> None:
        """A simulated answer must never pass as a real price, nor a real one as simulated."""
        marked = is_marked_simulated(response.headers.get(SIMULATED_HEADER))
        mark = f"{SIMULATED_HEADER}: {SIMULATED_HEADER_VALUE}"
        if marked and not self._simulate:
            raise PermanentFetchError(
                f"{self._settings.api_url} is the exchange simulator ({mark}) but this node is "
                "not in --simulate mode; refusing to submit simulated prices as real"
            )
        if self._simulate and not marked:
            raise PermanentFetchError(
                f"{self._settings.api_url} did not mark its answer {mark}; in --simulate mode "
                "only the exchange simulator may be used (a real price would be labelled "
                "simulated)"
            )


__all__ = [
    "MAX_BODY_BYTES",
    "MAX_RETRY_AFTER",
    "FetchError",
    "VenueAnswer",
    "VenueClient",
    "make_client",
    "parse_http_date",
    "parse_retry_after",
]
