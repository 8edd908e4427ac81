"""Candles that must never be submitted, whatever the exchange said."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from oracle_node.candle import Candle
from oracle_node.errors import InvalidCandleError
from oracle_node.validation import PriceBounds, validate_candle

GOOD = Candle(
    exchange="kraken",
    symbol="XBTUSD",
    quote="USD",
    minute=1737383640,
    open=Decimal("102271.1"),
    high=Decimal("102302.4"),
    low=Decimal("102205.9"),
    close=Decimal("102290.7"),
)


def test_a_sane_candle_passes() -> None:
    validate_candle(GOOD, PriceBounds())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"close": Decimal("NaN")}, "not finite"),
        ({"close": Decimal("Infinity"), "high": Decimal("Infinity")}, "not finite"),
        ({"close": Decimal(0), "low": Decimal(0)}, "not positive"),
        ({"close": Decimal(-5), "low": Decimal(-10)}, "not positive"),
        ({"close": Decimal(999), "low": Decimal(900), "open": Decimal(950)}, "bounds"),
        ({"close": Decimal(20_000_000), "high": Decimal(20_000_001)}, "bounds"),
        ({"low": Decimal(102400), "high": Decimal(102300)}, "low 102400 is above high"),
        ({"close": Decimal("102310")}, "outside the candle's range"),
        ({"close": Decimal("102200")}, "outside the candle's range"),
    ],
)
def test_bad_candles_are_refused_with_the_reason(change: dict[str, Decimal], reason: str) -> None:
    with pytest.raises(InvalidCandleError, match=reason):
        validate_candle(replace(GOOD, **change), PriceBounds())


def test_configured_bounds_apply() -> None:
    narrow = PriceBounds(min_price=Decimal(50_000), max_price=Decimal(100_000))
    with pytest.raises(InvalidCandleError, match=r"\[50000, 100000\]"):
        validate_candle(GOOD, narrow)


def test_close_on_the_range_edges_is_fine() -> None:
    validate_candle(replace(GOOD, close=GOOD.high), PriceBounds())
    validate_candle(replace(GOOD, close=GOOD.low), PriceBounds())
