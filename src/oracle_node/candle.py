"""The closed 1-minute candle a node reports, as the exchange published it.

Prices stay `Decimal` here and everywhere in the node: the only float is the proto `double` the
submitter writes on the wire, so no rounding ever sneaks into validation or logs. A candle prices
`base` in `quote`: BTC in USD or USDT, or USDT in USD (the rate observation).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from common.timeutil import format_minute


@dataclass(frozen=True)
class Candle:
    """One exchange's 1-minute candle that opened at `minute` (unix seconds) and has closed."""

    exchange: str
    symbol: str
    quote: str
    minute: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    base: str = "BTC"

    def as_json(self) -> dict[str, str | int]:
        """The fields `oracle-node --once` prints; prices as decimal strings, never floats."""
        return {
            "exchange": self.exchange,
            "base": self.base,
            "symbol": self.symbol,
            "quote": self.quote,
            "minute": self.minute,
            "minute_utc": format_minute(self.minute),
            "open": str(self.open),
            "high": str(self.high),
            "low": str(self.low),
            "close": str(self.close),
        }
