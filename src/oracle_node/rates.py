"""The USDT/USD rate a node collects besides its BTC candle, where its venue lists the pair.

Binance quotes BTC in USDT; to turn that into USD the aggregator needs what one USDT is worth in
USD, observed the same way as the BTC prices: the closed 1-minute candle of the venue's USDT/USD
pair (Kraken `USDTUSD`, result key `USDTZUSD`; Coinbase `USDT-USD`), submitted as a second
observation with `base = "USDT"`, `quote = "USD"` for the same minute. Binance.com has no USD
pair, so a Binance node collects no rate by default (Binance.US lists `USDTUSD`). Which pair is
the exchange table's `usdt_rate_symbol` setting (`oracle_node.config`; empty: no rate).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from oracle_node.validation import PriceBounds

# A USDT/USD close outside this is not a rate to convert prices with (the aggregator's own
# bounds for rate observations are the same).
RATE_BOUNDS: Final = PriceBounds(min_price=Decimal("0.5"), max_price=Decimal(2))
# After the BTC candle, the rate gets at least this long to be fetched (its own polls for a
# lagging venue), but never past the next minute's collection.
RATE_FETCH_WINDOW: Final = 5.0
