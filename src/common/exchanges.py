"""The exchanges the oracle knows and the quote currencies their BTC pairs use.

Binance's default pair BTCUSDT is quoted in USDT, Coinbase's BTC-USD and Kraken's XBTUSD in USD.
The aggregate treats USDT at par with USD, as the original did; every input carries its quote so
a consumer can see it (and an operator who wants USD only can point Binance at Binance.US BTCUSD).
"""

from __future__ import annotations

from typing import Final

EXCHANGES: Final[tuple[str, ...]] = ("binance", "coinbase", "kraken")

# The quote of each exchange's default pair: what an original node (which sent no quote) meant.
DEFAULT_QUOTE: Final[dict[str, str]] = {"binance": "USDT", "coinbase": "USD", "kraken": "USD"}

QUOTES: Final[frozenset[str]] = frozenset({"USD", "USDT"})

MAX_ID_LENGTH: Final = 64
