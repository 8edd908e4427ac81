"""Kraken `GET /0/public/OHLC` as the real API answers it, for XBTUSD 1-minute candles.

The answer is `{"error":[],"result":{"XXBTZUSD":[[time,"open","high","low","close","vwap",
"volume",count],...],"last":N}}`: the result key is Kraken's internal pair name (not what the
client sent), rows run oldest first over the last 720 minutes, and the last row is always the
forming, uncommitted candle; `last` is the newest committed candle's time. Errors -- unknown
pair, bad arguments, rate limits -- arrive with HTTP 200 and a non-empty `error` list, which is
the quirk a client must handle. `since` (unix seconds) returns rows newer than it; the forming
row is always included.

Also `USDTUSD`, the USDT/USD rate (result key `USDTZUSD`: USDT is a newer asset without Kraken's
X prefix, USD keeps its Z), in the same format.

Simulator limit: only `interval=1` is served; other intervals get `EGeneral:Invalid arguments`.
A non-200 answer never comes from Kraken itself: it is the CDN's HTML page.
"""

from __future__ import annotations

from decimal import Decimal
from email.utils import formatdate
from typing import Final

from common.timeutil import MINUTE, minute_floor

from ..market import Candle
from ..responses import SimResponse, first, html_response, json_response
from ..tamper import RowFields
from .base import CandleAsk

VENUE: Final = "kraken"
PATH: Final = "/0/public/OHLC"
RESULT_KEY: Final = "XXBTZUSD"
USDT_RESULT_KEY: Final = "USDTZUSD"
# Every name Kraken accepts for a pair -> (series in prices.SERIES, the result key it answers).
PAIRS: Final[dict[str, tuple[str, str]]] = {
    **dict.fromkeys(("XBTUSD", "XXBTZUSD", "BTCUSD", "XBT/USD", "BTC/USD"), ("kraken", RESULT_KEY)),
    **dict.fromkeys(("USDTUSD", "USDTZUSD", "USDT/USD"), ("kraken:USDT", USDT_RESULT_KEY)),
}
FIELDS: Final = RowFields(time=0, open=1, high=2, low=3, close=4)
MAX_ROWS: Final = 720
_CDN_PAGE: Final = (
    "<html><head><title>{status} {reason}</title></head>"
    "<body><center><h1>{status} {reason}</h1></center><hr>"
    "<center>cloudflare</center></body></html>"
)

UNKNOWN_PAIR: Final = {"error": ["EQuery:Unknown asset pair"]}
INVALID_ARGUMENTS: Final = {"error": ["EGeneral:Invalid arguments"]}
RATE_LIMITED: Final = {"error": ["EAPI:Rate limit exceeded"]}
_VOLUME_QUANTUM: Final = Decimal("0.00000001")


class KrakenVenue:
    """api.kraken.com: public OHLC with errors in HTTP 200 bodies, server time."""

    name = VENUE
    default_lag_seconds = 0.0

    def serves(self, path: str) -> bool:
        """`/0/public/OHLC`."""
        return path == PATH

    def candles(self, ask: CandleAsk) -> SimResponse:
        """Answer one OHLC request the way api.kraken.com does (errors in HTTP 200 bodies)."""
        query = ask.query
        pair = first(query, "pair")
        if not pair:
            return json_response(200, INVALID_ARGUMENTS)
        if pair.upper() not in PAIRS:
            return json_response(200, UNKNOWN_PAIR)
        series, result_key = PAIRS[pair.upper()]
        interval = first(query, "interval") or "1"
        if interval != "1":
            return json_response(200, INVALID_ARGUMENTS)
        raw_since = first(query, "since")
        since: int | None = None
        if raw_since:
            if not raw_since.isdigit():
                return json_response(200, INVALID_ARGUMENTS)
            since = int(raw_since)

        forming = minute_floor(ask.now)
        oldest = forming - (MAX_ROWS - 1) * MINUTE
        minutes = [
            minute
            for minute in range(oldest, forming + 1, MINUTE)
            if since is None or minute > since or minute == forming
        ]
        rows = ask.rows(series, minutes, _row, FIELDS)
        return json_response(
            200, {"error": [], "result": {result_key: rows, "last": forming - MINUTE}}
        )

    def info(self, path: str, now: float) -> SimResponse | None:
        """`/0/public/Time`, Kraken's server clock."""
        if path == "/0/public/Time":
            time_result = {"unixtime": int(now), "rfc1123": formatdate(now, usegmt=True)}
            return json_response(200, {"error": [], "result": time_result})
        return None

    def rate_limited(self, retry_after: int | str) -> SimResponse:
        """Kraken reports throttling inside an HTTP 200 body, never with a 429."""
        return json_response(200, RATE_LIMITED)

    def banned(self, retry_after: int | str, now: float) -> SimResponse:
        """Kraken has no ban status: a banned client keeps getting the rate-limit error."""
        return self.rate_limited(retry_after)

    def geo_blocked(self) -> SimResponse:
        """The CDN's 403 page."""
        return html_response(403, _CDN_PAGE.format(status=403, reason="Forbidden"))

    def server_error(self, status: int) -> SimResponse:
        """A non-200 from Kraken means the request never reached it: the CDN answers in HTML."""
        return html_response(status, _CDN_PAGE.format(status=status, reason="Service Unavailable"))

    def finish(self, response: SimResponse, now: float) -> SimResponse:
        """No venue headers."""
        return response


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
