"""Exchange adapters, looked up by name: one small module per venue, no I/O in any of them."""

from __future__ import annotations

from typing import Final

from oracle_node.exchanges.base import ExchangeAdapter, ExchangeRequest, quote_of
from oracle_node.exchanges.binance import BinanceAdapter
from oracle_node.exchanges.coinbase import CoinbaseAdapter
from oracle_node.exchanges.kraken import KrakenAdapter

ADAPTERS: Final[dict[str, ExchangeAdapter]] = {
    "binance": BinanceAdapter(),
    "coinbase": CoinbaseAdapter(),
    "kraken": KrakenAdapter(),
}


def get_adapter(name: str) -> ExchangeAdapter:
    """The adapter registered under `name`; a `KeyError` names the known ones."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise KeyError(f"unknown exchange {name!r}; known: {', '.join(ADAPTERS)}") from None


__all__ = ["ADAPTERS", "ExchangeAdapter", "ExchangeRequest", "get_adapter", "quote_of"]
