"""The simulated venues, registered by name: one small module per venue, as the node's adapters.

`build_venues` makes one instance of each per `SimApp` (a venue may keep state, e.g. Binance's
per-minute request weight), so two simulators in one process never share it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ..config import SimConfig
from .base import CandleAsk, SimVenue
from .binance import BinanceVenue
from .coinbase import CoinbaseVenue
from .kraken import KrakenVenue

VENUE_TYPES: Final[dict[str, Callable[[SimConfig], SimVenue]]] = {
    "binance": lambda _config: BinanceVenue(),
    "coinbase": lambda config: CoinbaseVenue(config.coinbase_lag_seconds),
    "kraken": lambda _config: KrakenVenue(),
}


def build_venues(config: SimConfig) -> dict[str, SimVenue]:
    """A fresh instance of every registered venue, configured from `config`."""
    return {name: make(config) for name, make in VENUE_TYPES.items()}


__all__ = ["VENUE_TYPES", "CandleAsk", "SimVenue", "build_venues"]
