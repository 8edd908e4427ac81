"""Kraken `GET /0/public/OHLC` as the real API answers it, for XBTUSD 1-minute candles.

The answer is `{"error":[],"result":{"XXBTZUSD":[[time,"open","high","low","close","vwap",
"volume",count],...],"last":N}}`: the result key is Kraken's internal pair name (not what the
client sent), rows run oldest first over the last 720 minutes, and the last row is always the
forming, uncommitted candle; `last` is the newest committed candle's time. Errors -- unknown
pair, bad arguments, rate limits -- arrive with HTTP 200 and a non-empty `error` list, which is
the quirk a client must handle. `since` (unix seconds) returns rows newer than it; the forming
row is always included.

Simulator limit: only `interval=1` is served; other intervals get `EGeneral:Invalid arguments`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from common.timeutil import MINUTE, minute_floor

from ..market import Candle, Market, PriceOverrides
from ..responses import Query, SimResponse, first, json_response

VENUE: Final = "kraken"
PATH: Final = "/0/public/OHLC"
RESULT_KEY: Final = "XXBTZUSD"
PAIRS: Final = frozenset({"XBTUSD", "XXBTZUSD", "BTCUSD", "XBT/USD", "BTC/USD"})
MAX_ROWS: Final = 720

UNKNOWN_PAIR: Final = {"error": ["EQuery:Unknown asset pair"]}
INVALID_ARGUMENTS: Final = {"error": ["EGeneral:Invalid arguments"]}
RATE_LIMITED: Final = {"error": ["EAPI:Rate limit exceeded"]}
_VOLUME_QUANTUM: Final = Decimal("0.00000001")


def ohlc(query: Query, now: float, market: Market, overrides: PriceOverrides) -> SimResponse:
    """Answer one OHLC request the way api.kraken.com does (errors in HTTP 200 bodies)."""
    pair = first(query, "pair")
    if not pair:
        return json_response(200, INVALID_ARGUMENTS)
    if pair.upper() not in PAIRS:
        return json_response(200, UNKNOWN_PAIR)
    interval = first(query, "interval") or "1"
    if interval != "1":
        return json_response(200, INVALID_ARGUMENTS)
    raw_since = first(query, "since")
    since: int | None = None
    if raw_since:
        if not raw_since.isdigit():
            return json_response(200, INVALID_ARGUMENTS)
        since = int(raw_since)

    forming = minute_floor(now)
    oldest = forming - (MAX_ROWS - 1) * MINUTE
    rows: list[list[object]] = []
    for minute in range(oldest, forming + 1, MINUTE):
        if since is not None and minute <= since and minute != forming:
            continue
        rows.append(_row(market.candle(VENUE, minute, now, overrides)))
    return json_response(200, {"error": [], "result": {RESULT_KEY: rows, "last": forming - MINUTE}})


def _row(candle: Candle) -> list[object]:
    return [
        candle.minute,
        str(candle.open),
        str(candle.high),
        str(candle.low),
        str(candle.close),
        str(candle.vwap),
        str(candle.volume.quantize(_VOLUME_QUANTUM)),
        candle.trades,
    ]
