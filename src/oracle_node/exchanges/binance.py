"""Binance (and Binance.US, same format): `GET /api/v3/klines?symbol=BTCUSDT&interval=1m`.

Rows are `[openTime ms, "open", "high", "low", "close", volume, closeTime ms, ...]`, oldest first,
and the last row is the candle still forming. Binance geo-blocks some regions (notably US IPs and
some cloud hosts) with HTTP 451; Binance.US serves the identical format at another base URL.
"""

from __future__ import annotations

from typing import Final

from oracle_node.candle import Candle
from oracle_node.errors import CandleNotYetAvailableError, MalformedResponseError
from oracle_node.exchanges.base import (
    ExchangeRequest,
    RowLayout,
    error_text,
    load_json,
    preview,
    require_closed,
)

BINANCE_US_URL: Final = "https://api.binance.us"

# `[openTime ms, "open", "high", "low", "close", volume, closeTime ms, ...]`
_ROW: Final = RowLayout(
    "Binance",
    "kline row",
    "openTime",
    open=1,
    high=2,
    low=3,
    close=4,
    length=12,
    time_unit=1000,
    max_rows=1000,
)
# Enough rows to hold the minute just closed and the forming one, even with a few seconds of skew,
# and the skipped minutes within the node's backfill horizon (8 minutes).
_ROWS: Final = 12


class BinanceAdapter:
    """Request and parser for Binance spot klines."""

    name = "binance"
    display_name = "Binance"
    default_api_url = "https://api.binance.com"
    default_symbol = "BTCUSDT"

    def request(self, symbol: str, minute: int) -> ExchangeRequest:
        """The newest few rows; selection is by open time, never by position alone."""
        return ExchangeRequest(
            path="/api/v3/klines",
            params={"symbol": symbol, "interval": "1m", "limit": str(_ROWS)},
        )

    def parse(self, body: bytes, symbol: str, minute: int, exchange_time: float) -> Candle:
        """The candle opened at `minute`, refused while it is still the forming (last) row."""
        rows = load_json(body, self.display_name)
        if not isinstance(rows, list):
            raise MalformedResponseError(f"Binance klines answer is not a list: {preview(rows)}")
        found = _ROW.find(rows, minute, exchange_time)
        if found is None:
            raise CandleNotYetAvailableError(f"Binance has no candle for minute {minute} yet")
        index, row = found
        require_closed(self.display_name, minute, exchange_time)
        if index == len(rows) - 1:
            # Binance always appends the forming minute; if ours is last, Binance's clock has
            # not rolled over yet and the close can still move.
            raise CandleNotYetAvailableError(f"Binance minute {minute} is still the forming candle")
        return _ROW.candle(row, self.name, symbol, minute)

    def error_message(self, status: int, body: bytes) -> str:
        """Binance's `{"code","msg"}` text, with the Binance.US hint for a geo-block."""
        text = error_text(body)
        if status == 451:
            return (
                f"Binance refuses this location (HTTP 451: {text}). Use Binance.US, which serves "
                f"the same API: set api_url = {BINANCE_US_URL!r} in the [binance] table or pass "
                f"--api-url {BINANCE_US_URL} (its USD pair is symbol = 'BTCUSD')"
            )
        return f"Binance answered HTTP {status}: {text}"
