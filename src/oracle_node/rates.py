"""The USDT/USD rate a node collects besides its BTC candle, where its venue lists the pair.

Binance quotes BTC in USDT; to turn that into USD the aggregator needs what one USDT is worth in
USD, observed the same way as the BTC prices: the closed 1-minute candle of the venue's USDT/USD
pair (Kraken `USDTUSD`, result key `USDTZUSD`; Coinbase `USDT-USD`), submitted as a second
observation with `base = "USDT"`, `quote = "USD"` for the same minute. Binance.com has no USD
pair, so a Binance node collects no rate by default (Binance.US lists `USDTUSD`).

The symbol is the exchange table's `usdt_rate_symbol` setting (empty: no rate). Until the node
configuration declares it, it is read from the settings object when present, else the default
below, which is what the setting's default will be.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from common.errors import ConfigError
from oracle_node.config import ExchangeSettings
from oracle_node.exchanges.base import USDT, pair_of
from oracle_node.validation import PriceBounds

DEFAULT_USDT_RATE_SYMBOL: Final[dict[str, str]] = {
    "binance": "",
    "coinbase": "USDT-USD",
    "kraken": "USDTUSD",
}
# A USDT/USD close outside this is not a rate to convert prices with (the aggregator's own
# bounds for rate observations are the same).
RATE_BOUNDS: Final = PriceBounds(min_price=Decimal("0.5"), max_price=Decimal(2))
# After the BTC candle, the rate gets at least this long to be fetched (its own polls for a
# lagging venue), but never past the next minute's collection.
RATE_FETCH_WINDOW: Final = 5.0


def usdt_rate_symbol(settings: ExchangeSettings) -> str:
    """The venue's USDT/USD symbol to collect, or "" for none; a symbol of another pair is refused.

    Reads `settings.usdt_rate_symbol` when the configuration provides it (None or absent: the
    exchange's default).
    """
    configured = getattr(settings, "usdt_rate_symbol", None)
    symbol = DEFAULT_USDT_RATE_SYMBOL.get(settings.name, "") if configured is None else configured
    if not isinstance(symbol, str):
        raise ConfigError(f"[{settings.name}] usdt_rate_symbol: must be a string, got {symbol!r}")
    symbol = symbol.strip()
    if symbol:
        try:
            pair = pair_of(symbol)
        except ValueError as exc:
            raise ConfigError(f"[{settings.name}] usdt_rate_symbol: {exc}") from None
        if pair != (USDT, "USD"):
            raise ConfigError(
                f"[{settings.name}] usdt_rate_symbol: {symbol!r} is not a USDT/USD pair"
            )
    return symbol
