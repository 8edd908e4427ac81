"""Binance `GET /api/v3/klines` as the real API answers it, for BTCUSDT 1-minute candles.

Also `BTCUSD` and `USDTUSD`, the Binance.US pairs (same API at another host).

Rows are 12-field arrays, oldest first, keyed by open time in ms, prices as 8-decimal strings; a
request that reaches "now" gets the forming minute as its last row. Parameters follow the docs:
`symbol`, `interval`, `limit` (default 500, capped at 1000), `startTime` / `endTime` in ms (with
`startTime` the oldest rows from there, with only `endTime` the newest rows up to it). Errors are
`{"code": <negative int>, "msg": ...}` with HTTP 400, copied from the real bodies.

Simulator limit: only `interval=1m` is served; other intervals get Binance's "Invalid interval."
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Final

from common.timeutil import MINUTE, minute_floor

from ..market import Candle
from ..responses import Query, RejectedRequest, SimResponse, first, json_response
from ..tamper import RowFields
from .base import CandleAsk

VENUE: Final = "binance"
PATH: Final = "/api/v3/klines"
# Symbol -> series (prices.SERIES). BTCUSD and USDTUSD are Binance.US pairs; both APIs are one.
SYMBOLS: Final[dict[str, str]] = {
    "BTCUSDT": "binance",
    "BTCUSD": "binance",
    "USDTUSD": "binance:USDT",
}
FIELDS: Final = RowFields(time=0, open=1, high=2, low=3, close=4, time_unit=1000)
DEFAULT_LIMIT: Final = 500
MAX_LIMIT: Final = 1000
WEIGHT_PER_CALL: Final = 2

INVALID_SYMBOL: Final = {"code": -1121, "msg": "Invalid symbol."}
INVALID_INTERVAL: Final = {"code": -1120, "msg": "Invalid interval."}
RATE_LIMITED: Final = {
    "code": -1003,
    "msg": "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
    "Please use WebSocket Streams for live updates to avoid polling the API.",
}
SERVER_ERROR: Final = {
    "code": -1001,
    "msg": "Internal error; unable to process your request. Please try again.",
}
RESTRICTED_LOCATION: Final = {
    "code": 0,
    "msg": "Service unavailable from a restricted location according to 'b. Eligibility' in "
    "https://www.binance.com/en/terms. Please contact customer service if you believe you "
    "received this message in error.",
}
_PRICE_QUANTUM: Final = Decimal("0.00000001")


def banned_body(until_ms: int) -> dict[str, object]:
    """Binance's 418 body: the IP is banned until `until_ms`."""
    return {
        "code": -1003,
        "msg": f"Way too much request weight used; IP banned until {until_ms}. Please use "
        "WebSocket Streams for live updates to avoid bans.",
    }


def _missing(name: str) -> dict[str, object]:
    return {
        "code": -1102,
        "msg": f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
    }


def _illegal(name: str) -> dict[str, object]:
    return {
        "code": -1100,
        "msg": f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
    }


def _reject(payload: dict[str, object]) -> RejectedRequest:
    return RejectedRequest(json_response(400, payload))


def _int_param(query: Query, name: str) -> int | None:
    raw = first(query, name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise _reject(_illegal(name))
    return int(raw)


def _series(query: Query) -> str:
    symbol = first(query, "symbol")
    if not symbol:
        raise _reject(_missing("symbol"))
    if symbol not in SYMBOLS:
        raise _reject(INVALID_SYMBOL)
    return SYMBOLS[symbol]


def _minute_range(query: Query, now: float) -> range:
    """The open times (seconds) of the rows to send, oldest first, as Binance selects them."""
    interval = first(query, "interval")
    if not interval:
        raise _reject(_missing("interval"))
    if interval != "1m":
        raise _reject(INVALID_INTERVAL)
    limit = _int_param(query, "limit")
    limit = DEFAULT_LIMIT if limit is None or limit == 0 else min(limit, MAX_LIMIT)
    start_ms, end_ms = _int_param(query, "startTime"), _int_param(query, "endTime")
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise _reject({"code": -1023, "msg": "Start time is greater than end time."})

    forming = minute_floor(now)
    last_minute = forming if end_ms is None else min(forming, minute_floor(end_ms / 1000))
    if start_ms is not None:
        # With startTime: the oldest `limit` rows whose open time is at or after it.
        first_minute = -(-start_ms // (MINUTE * 1000)) * MINUTE
        last_minute = min(last_minute, first_minute + (limit - 1) * MINUTE)
    else:
        # Without: the newest `limit` rows up to endTime (or now).
        first_minute = last_minute - (limit - 1) * MINUTE
    return range(first_minute, last_minute + 1, MINUTE)


class BinanceVenue:
    """api.binance.com (and Binance.US): klines, server time, ping, its used-weight header."""

    name = VENUE
    default_lag_seconds = 0.0

    def __init__(self) -> None:
        self._weight_lock = threading.Lock()
        self._weight_minute = 0
        self._weight_used = 0

    def serves(self, path: str) -> bool:
        """`/api/v3/klines`."""
        return path == PATH

    def candles(self, ask: CandleAsk) -> SimResponse:
        """Answer one klines request the way api.binance.com does."""
        try:
            series = _series(ask.query)
            minutes = _minute_range(ask.query, ask.now)
        except RejectedRequest as rejected:
            return rejected.response
        return json_response(200, ask.rows(series, minutes, _row, FIELDS))

    def info(self, path: str, now: float) -> SimResponse | None:
        """`/api/v3/time` (clients judge "closed" by it) and `/api/v3/ping`."""
        if path == "/api/v3/time":
            return json_response(200, {"serverTime": int(now * 1000)})
        if path == "/api/v3/ping":
            return json_response(200, {})
        return None

    def rate_limited(self, retry_after: int | str) -> SimResponse:
        """HTTP 429 with Retry-After and the -1003 body."""
        return json_response(429, RATE_LIMITED, (("Retry-After", str(retry_after)),))

    def banned(self, retry_after: int | str, now: float) -> SimResponse:
        """HTTP 418: the IP is auto-banned for ignoring 429s (2 minutes to 3 days)."""
        seconds = retry_after if isinstance(retry_after, int) else 120  # a verbatim header
        until_ms = int((now + min(seconds, 10**9)) * 1000)
        return json_response(418, banned_body(until_ms), (("Retry-After", str(retry_after)),))

    def geo_blocked(self) -> SimResponse:
        """HTTP 451, restricted location (US IPs, some cloud hosts)."""
        return json_response(451, RESTRICTED_LOCATION)

    def server_error(self, status: int) -> SimResponse:
        """Binance's -1001 internal error body."""
        return json_response(status, SERVER_ERROR)

    def finish(self, response: SimResponse, now: float) -> SimResponse:
        """Every klines answer reports the IP's request weight used this minute."""
        with self._weight_lock:
            minute = minute_floor(now)
            if minute != self._weight_minute:
                self._weight_minute, self._weight_used = minute, 0
            self._weight_used += WEIGHT_PER_CALL
            used = self._weight_used
        return response.with_headers(("x-mbx-used-weight-1m", str(used)))


def _price(value: Decimal) -> str:
    return str(value.quantize(_PRICE_QUANTUM))


def _row(candle: Candle) -> list[object]:
    open_ms = candle.minute * 1000
    quote_volume = candle.volume * candle.vwap
    taker_share = Decimal("0.5")
    return [
        open_ms,
        _price(candle.open),
        _price(candle.high),
        _price(candle.low),
        _price(candle.close),
        _price(candle.volume),
        open_ms + MINUTE * 1000 - 1,
        _price(quote_volume),
        candle.trades,
        _price(candle.volume * taker_share),
        _price(quote_volume * taker_share),
        "0",
    ]
