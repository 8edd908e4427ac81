"""Coinbase Exchange `GET /products/BTC-USD/candles` as the real API answers it, 1-minute buckets.

Also `USDT-USD`, the USDT/USD rate, in the same format.

Rows are `[time, low, high, open, close, volume]` (note the order), every field a JSON number,
newest first, `time` the bucket start in seconds. The forming minute is the first row. The
quirk that bites clients is the lag: a closed minute is only published `lag_seconds` after its
close, so right after a minute closes its row is missing while the next, forming minute is
already there. Parameters: `granularity` (seconds), `start` / `end` (ISO 8601 or unix seconds;
if either is missing both are ignored and the range ends now); at most 300 buckets. Requests
without a User-Agent are refused as Coinbase refuses them. Errors are `{"message": ...}`.

Simulator limits: only BTC-USD, USDT-USD and `granularity=60` are served (a missing granularity
means 60). A 5xx comes as Coinbase's JSON error; a geo-block as Cloudflare's 403 page.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from common.timeutil import MINUTE, minute_floor

from ..market import Candle
from ..responses import (
    Query,
    RejectedRequest,
    SimResponse,
    first,
    html_response,
    json_response,
)
from ..tamper import RowFields
from .base import CandleAsk

VENUE: Final = "coinbase"
PATH_PREFIX: Final = "/products/"
PATH_SUFFIX: Final = "/candles"
# Product -> series (prices.SERIES).
PRODUCTS: Final[dict[str, str]] = {"BTC-USD": "coinbase", "USDT-USD": "coinbase:USDT"}
FIELDS: Final = RowFields(time=0, low=1, high=2, open=3, close=4)
GRANULARITIES: Final = frozenset({60, 300, 900, 3600, 21600, 86400})
MAX_BUCKETS: Final = 300

NOT_FOUND: Final = {"message": "NotFound"}
USER_AGENT_REQUIRED: Final = {"message": "User-Agent header is required."}
UNSUPPORTED_GRANULARITY: Final = {"message": "Unsupported granularity"}
TOO_MANY_BUCKETS: Final = {
    "message": "granularity too small for the requested time range. "
    "Count of aggregations requested exceeds 300"
}
RATE_LIMITED: Final = {"message": "Public rate limit exceeded"}
SERVER_ERROR: Final = {"message": "Internal server error"}
CLOUDFLARE_BLOCKED: Final = (
    "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head>"
    "<body><h1>Sorry, you have been blocked</h1><p>You are unable to access "
    "api.exchange.coinbase.com</p></body></html>"
)


def product_of(path: str) -> str | None:
    """`BTC-USD` for `/products/BTC-USD/candles`, None for any other path."""
    if path.startswith(PATH_PREFIX) and path.endswith(PATH_SUFFIX):
        product = path[len(PATH_PREFIX) : -len(PATH_SUFFIX)]
        if product and "/" not in product:
            return product
    return None


def _parse_time(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise RejectedRequest(json_response(400, {"message": f"Invalid {name}"})) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # Coinbase reads times without an offset as UTC
    return moment.timestamp()


def _minute_range(product: str, query: Query, headers: Mapping[str, str], now: float) -> range:
    """The bucket start times to consider, newest first, or the error Coinbase would send."""
    if not headers.get("user-agent"):
        raise RejectedRequest(json_response(400, USER_AGENT_REQUIRED))
    raw_granularity = first(query, "granularity") or "60"
    if not raw_granularity.isdigit() or int(raw_granularity) not in GRANULARITIES:
        raise RejectedRequest(json_response(400, UNSUPPORTED_GRANULARITY))
    granularity = int(raw_granularity)
    if granularity != 60:
        raise RejectedRequest(json_response(400, UNSUPPORTED_GRANULARITY))

    raw_start, raw_end = first(query, "start"), first(query, "end")
    forming = minute_floor(now)
    if raw_start and raw_end:
        start, end = _parse_time("start", raw_start), _parse_time("end", raw_end)
        if start > end:
            raise RejectedRequest(json_response(400, {"message": "start must be before end"}))
        if (end - start) / granularity > MAX_BUCKETS:
            raise RejectedRequest(json_response(400, TOO_MANY_BUCKETS))
        first_minute, last_minute = minute_floor(start), min(minute_floor(end), forming)
    else:
        # Either one missing: both are ignored and the range ends now.
        last_minute = forming
        first_minute = forming - (MAX_BUCKETS - 1) * MINUTE
    return range(last_minute, first_minute - 1, -MINUTE)


class CoinbaseVenue:
    """api.exchange.coinbase.com: product candles, newest first, published late."""

    name = VENUE

    def __init__(self, lag_seconds: float) -> None:
        self.default_lag_seconds = lag_seconds

    def serves(self, path: str) -> bool:
        """`/products/<product>/candles`."""
        return product_of(path) is not None

    def candles(self, ask: CandleAsk) -> SimResponse:
        """Answer one candles request the way api.exchange.coinbase.com does."""
        product = product_of(ask.path) or ""
        series = PRODUCTS.get(product)
        if series is None:
            return json_response(404, NOT_FOUND)
        try:
            minutes = _minute_range(product, ask.query, ask.headers, ask.now)
        except RejectedRequest as rejected:
            return rejected.response
        # The lag: a closed minute appears only lag_seconds after its close (`ask.published`).
        return json_response(200, ask.rows(series, minutes, _row, FIELDS))

    def info(self, path: str, now: float) -> SimResponse | None:
        """No other endpoint is simulated."""
        return None

    def rate_limited(self, retry_after: int | str) -> SimResponse:
        """HTTP 429 with Retry-After."""
        return json_response(429, RATE_LIMITED, (("Retry-After", str(retry_after)),))

    def banned(self, retry_after: int | str, now: float) -> SimResponse:
        """Coinbase has no ban status: a banned client keeps getting 429s."""
        return self.rate_limited(retry_after)

    def geo_blocked(self) -> SimResponse:
        """Cloudflare's block page, HTTP 403."""
        return html_response(403, CLOUDFLARE_BLOCKED)

    def server_error(self, status: int) -> SimResponse:
        """Coinbase's JSON error body."""
        return json_response(status, SERVER_ERROR)

    def finish(self, response: SimResponse, now: float) -> SimResponse:
        """No venue headers."""
        return response


def _row(candle: Candle) -> list[object]:
    """`[time, low, high, open, close, volume]`, every field a JSON number (Decimals, no floats)."""
    return [candle.minute, candle.low, candle.high, candle.open, candle.close, candle.volume]
