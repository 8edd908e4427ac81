"""Sanity checks a candle must pass before its close is submitted.

A bad price is worse than no price: a candle whose close is not finite, not positive, outside the
configured bounds or outside its own low/high range is logged and dropped, never sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from oracle_node.candle import Candle
from oracle_node.errors import InvalidCandleError


@dataclass(frozen=True)
class PriceBounds:
    """Closes outside [min_price, max_price] are refused (default 1,000 to 10,000,000)."""

    min_price: Decimal = Decimal(1_000)
    max_price: Decimal = Decimal(10_000_000)


def validate_candle(candle: Candle, bounds: PriceBounds) -> None:
    """Raise `InvalidCandleError` saying which rule `candle` breaks; return if it is fit to send."""
    prices = {"open": candle.open, "high": candle.high, "low": candle.low, "close": candle.close}
    for name, value in prices.items():
        if not value.is_finite():
            raise InvalidCandleError(f"{name} {value} is not finite")
    if candle.close <= 0:
        raise InvalidCandleError(f"close {candle.close} is not positive")
    if not bounds.min_price <= candle.close <= bounds.max_price:
        raise InvalidCandleError(
            f"close {candle.close} is outside the configured bounds "
            f"[{bounds.min_price}, {bounds.max_price}]"
        )
    if candle.low > candle.high:
        raise InvalidCandleError(f"low {candle.low} is above high {candle.high}")
    if not candle.low <= candle.close <= candle.high:
        raise InvalidCandleError(
            f"close {candle.close} is outside the candle's range [{candle.low}, {candle.high}]"
        )
