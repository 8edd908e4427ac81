"""Coinbase Exchange `GET /products/BTC-USD/candles` as the real API answers it, 1-minute buckets.

Rows are `[time, low, high, open, close, volume]` (note the order), every field a JSON number,
newest first, `time` the bucket start in seconds. The forming minute is the first row. The
quirk that bites clients is the lag: a closed minute is only published `lag_seconds` after its
close, so right after a minute closes its row is missing while the next, forming minute is
already there. Parameters: `granularity` (seconds), `start` / `end` (ISO 8601 or unix seconds;
if either is missing both are ignored and the range ends now); at most 300 buckets. Requests
without a User-Agent are refused as Coinbase refuses them. Errors are `{"message": ...}`.

Simulator limits: only BTC-USD and `granularity=60` are served (a missing granularity means 60).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from common.timeutil import MINUTE, minute_floor

from ..market import Candle, Market, PriceOverrides
from ..responses import (
    Query,
    RejectedRequest,
    SimResponse,
    first,
    json_response,
    raw_json_response,
)

VENUE: Final = "coinbase"
PATH_PREFIX: Final = "/products/"
PATH_SUFFIX: Final = "/candles"
PRODUCTS: Final = frozenset({"BTC-USD"})
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
    if product not in PRODUCTS:
        raise RejectedRequest(json_response(404, NOT_FOUND))
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


def candles(
    product: str,
    query: Query,
    headers: Mapping[str, str],
    *,
    now: float,
    market: Market,
    overrides: PriceOverrides,
    lag_seconds: float,
) -> SimResponse:
    """Answer one candles request the way api.exchange.coinbase.com does."""
    try:
        minutes = _minute_range(product, query, headers, now)
    except RejectedRequest as rejected:
        return rejected.response
    forming = minute_floor(now)
    rows = [
        _row(market.candle(VENUE, minute, now, overrides))
        for minute in minutes
        # The lag: a closed minute appears only lag_seconds after its close.
        if minute == forming or minute + MINUTE + lag_seconds <= now
    ]
    return raw_json_response(200, "[" + ",".join(rows) + "]")


def _number(value: Decimal) -> str:
    """A JSON number without trailing zeros or exponent, as Coinbase prints them."""
    return format(value.normalize(), "f")


def _row(candle: Candle) -> str:
    fields = [
        str(candle.minute),
        _number(candle.low),
        _number(candle.high),
        _number(candle.open),
        _number(candle.close),
        _number(candle.volume),
    ]
    return "[" + ",".join(fields) + "]"
