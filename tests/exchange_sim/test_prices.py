"""Closes are a deterministic function of (seed, venue, minute) and wander around the set level."""

from __future__ import annotations

import itertools
import statistics
from decimal import Decimal

from exchange_sim.prices import PriceModel

from .conftest import NEWEST_CLOSED, make_sim

MINUTES = range(NEWEST_CLOSED - 3 * 24 * 3600, NEWEST_CLOSED, 60)


def test_same_seed_same_closes_in_any_order() -> None:
    forward = PriceModel(7, Decimal(100000))
    backward = PriceModel(7, Decimal(100000))
    sample = list(MINUTES)[::97]
    closes_forward = [forward.close("kraken", m) for m in sample]
    closes_backward = [backward.close("kraken", m) for m in reversed(sample)]
    assert closes_forward == list(reversed(closes_backward))


def test_another_seed_gives_other_closes() -> None:
    one, other = PriceModel(1, Decimal(100000)), PriceModel(2, Decimal(100000))
    assert one.close("binance", NEWEST_CLOSED) != other.close("binance", NEWEST_CLOSED)


def test_price_wanders_like_a_walk_but_stays_around_the_level() -> None:
    model = PriceModel(42, Decimal(60000))
    closes = [float(model.close("coinbase", m)) for m in MINUTES]
    moves = [abs(b - a) for a, b in itertools.pairwise(closes)]

    assert all(50000 < close < 70000 for close in closes)  # around the configured level
    assert 54000 < statistics.mean(closes) < 66000
    assert 5 < statistics.median(moves) < 200  # dollars a minute: moving, but not wildly
    assert sum(1 for move in moves if move == 0) < len(moves) * 0.01


def test_binance_usdt_sits_slightly_above_the_usd_venues_on_average() -> None:
    model = PriceModel(42, Decimal(100000))
    sample = list(MINUTES)[::11]
    premium = [model.close("binance", m) - model.close("coinbase", m) for m in sample]
    assert Decimal(0) < sum(premium) / len(premium) < Decimal(30)


def test_control_close_is_stable_across_app_instances() -> None:
    first, second = make_sim(seed=5), make_sim(seed=5)
    assert first.close("binance", NEWEST_CLOSED) == second.close("binance", NEWEST_CLOSED)
    assert make_sim(seed=6).close("binance", NEWEST_CLOSED) != first.close("binance", NEWEST_CLOSED)
