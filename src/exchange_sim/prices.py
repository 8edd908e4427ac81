"""Deterministic simulated closes: one seeded, mean-reverting walk per asset, a spread per venue.

Every close is a pure function of (seed, series, minute), a series being one pair on one venue
(`SERIES`: each venue's BTC pair, and the USDT/USD pairs). The walk's shock for minute m is
derived from a hash of (seed, m), and the level is a geometrically weighted sum of the last
`WINDOW` shocks (a truncated AR(1) process), so any minute -- past, forming or future -- is
computed on demand with no state carried between minutes. A restarted simulator with the same
seed therefore serves the same candles, and the price wanders like a random walk over minutes
but stays around the configured level over hours instead of drifting away from it.
"""

from __future__ import annotations

import hashlib
import math
import operator
import threading
from collections import OrderedDict
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

from common.exchanges import EXCHANGES

VENUES: Final[tuple[str, ...]] = EXCHANGES
BTC: Final = "BTC"
USDT: Final = "USDT"


@dataclass(frozen=True)
class Series:
    """One pair on one venue as the simulator prices it.

    `key` names the series in every hash, so it fixes the series' prices for a seed: a venue's
    BTC series is keyed by the venue's name alone, as before there were other series.
    """

    key: str
    venue: str
    asset: str
    tick: Decimal
    bias: float


def _series(*items: Series) -> dict[str, Series]:
    return {item.key: item for item in items}


# Ticks: Binance BTCUSDT and Coinbase BTC-USD trade in cents, Kraken XBTUSD in tenths of a dollar;
# the USDT/USD pairs in 0.00001 (Kraken USDTUSD shows five decimals, e.g. 0.99700). Biases: USDT
# trades a little above USD, so Binance BTCUSDT sits about 0.01 % (roughly +10 at 100 000) above
# the USD venues, as in the reference captures; and USDT/USD itself a hair under par.
SERIES: Final[dict[str, Series]] = _series(
    Series("binance", "binance", BTC, Decimal("0.01"), 0.0001),
    Series("coinbase", "coinbase", BTC, Decimal("0.01"), 0.0),
    Series("kraken", "kraken", BTC, Decimal("0.1"), 0.00002),
    Series("binance:USDT", "binance", USDT, Decimal("0.00001"), 0.0),
    Series("coinbase:USDT", "coinbase", USDT, Decimal("0.00001"), -0.00004),
    Series("kraken:USDT", "kraken", USDT, Decimal("0.00001"), -0.00012),
)
TICK: Final[dict[str, Decimal]] = {key: series.tick for key, series in SERIES.items()}

# Per-minute venue noise (about 1 basis point): enough that the three closes never coincide.
_VENUE_NOISE: Final = 0.0001

PHI: Final = 0.985
"""Mean reversion per minute; the stationary spread is about 5.8 x the per-minute volatility."""
WINDOW: Final = 240
"""Shocks older than this weigh less than PHI**240 (about 3 %) and are dropped."""
_CACHE_SIZE: Final = 20_000


def unit_hash(seed: int, *parts: object) -> float:
    """A uniform number in (0, 1) that depends only on `seed` and `parts` (never 0 or 1)."""
    key = ":".join(str(part) for part in (seed, *parts)).encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


def gauss_hash(seed: int, *parts: object) -> float:
    """A standard normal number derived from `seed` and `parts` (Box-Muller on two hashes)."""
    u1 = unit_hash(seed, *parts, "u1")
    u2 = unit_hash(seed, *parts, "u2")
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


class PriceModel:
    """The fair closes of one asset, before any injected fault (freeze, jump) is applied.

    `walk` names the asset's walk in the hashes: BTC's is "walk", another asset's walk must have
    its own name, or it would move in lockstep with BTC.
    """

    def __init__(
        self, seed: int, base_price: Decimal, volatility: float = 0.0004, *, walk: str = "walk"
    ) -> None:
        if base_price <= 0:
            raise ValueError(f"base price must be positive, got {base_price}")
        if not 0 <= volatility < 0.05:
            raise ValueError(f"volatility must be in [0, 0.05), got {volatility}")
        self.seed = seed
        self.base_price = base_price
        self.volatility = volatility
        self.walk = walk
        # Oldest first, to line up with a window of shocks that runs oldest first.
        self._weights = [PHI**lag for lag in reversed(range(WINDOW))]
        self._shocks: OrderedDict[int, float] = OrderedDict()
        self._levels: OrderedDict[int, float] = OrderedDict()
        self._lock = threading.Lock()  # the HTTP server answers on many threads

    def _shock_run(self, first_index: int, last_index: int) -> list[float]:
        """Shocks of minute numbers first_index..last_index (open time / 60), oldest first."""
        run = []
        for index in range(first_index, last_index + 1):
            shock = self._shocks.get(index)
            if shock is None:
                shock = gauss_hash(self.seed, self.walk, index)
                _remember(self._shocks, index, shock)
            run.append(shock)
        return run

    def warm(self, first_minute: int, last_minute: int) -> None:
        """Compute the levels of a run of minutes in one pass (a 720-row answer stays fast).

        `math.fsum` is correctly rounded, so a level comes out bit-identical whether it was
        computed here or alone in `log_level`: determinism does not depend on the request.
        """
        first_index, last_index = first_minute // 60, last_minute // 60
        with self._lock:
            missing = [
                index
                for index in range(first_index, last_index + 1)
                if index * 60 not in self._levels
            ]
            if not missing:
                return
            shocks = self._shock_run(missing[0] - WINDOW + 1, missing[-1])
            offset = missing[0] - WINDOW + 1
            for index in missing:
                start = index - WINDOW + 1 - offset
                total = math.fsum(map(operator.mul, self._weights, shocks[start : start + WINDOW]))
                _remember(self._levels, index * 60, self.volatility * total)

    def log_level(self, minute: int) -> float:
        """The walk's log-deviation from the base price at the close of `minute`."""
        level = self._levels.get(minute)
        if level is None:
            self.warm(minute, minute)
            level = self._levels[minute]
        return level

    def raw_close(self, series: str, minute: int) -> Decimal:
        """The unrounded close of `series` (a `SERIES` key, e.g. "kraken") for `minute`."""
        if series not in SERIES:
            raise ValueError(f"unknown series {series!r}; use one of {', '.join(SERIES)}")
        spread = SERIES[series].bias + _VENUE_NOISE * gauss_hash(self.seed, series, minute // 60)
        factor = math.exp(self.log_level(minute)) * (1.0 + spread)
        return self.base_price * Decimal(factor)

    def close(self, series: str, minute: int) -> Decimal:
        """The close `series` reports for `minute`, rounded to its tick."""
        return quantize(series, self.raw_close(series, minute))

    def absolute_volatility(self) -> Decimal:
        """A typical one-minute move in price units, used to size candle wicks."""
        return self.base_price * Decimal(max(self.volatility, 0.00005))


def quantize(series: str, price: Decimal) -> Decimal:
    """Round `price` to the tick `series` quotes in (never below one tick)."""
    tick = TICK[series]
    return max(price.quantize(tick, rounding=ROUND_HALF_EVEN), tick)


def _remember(cache: OrderedDict[int, float], key: int, value: float) -> None:
    cache[key] = value
    if len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
