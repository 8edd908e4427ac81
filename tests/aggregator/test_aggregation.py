"""The pure per-exchange combination: nodes of one exchange count once (their median).

The rules across exchanges (status, outliers, rounds) are tested in test_rounds.py.
"""

from decimal import Decimal

import pytest

from aggregator.aggregation import ExchangePrice, Report, combine_reports, median
from aggregator.rounds import Rules, judge_round

MINUTE_0 = 1_795_000_020 // 60 * 60


def price(exchange: str, value: str, minute: int = MINUTE_0, nodes=("n",)) -> ExchangePrice:
    return ExchangePrice(exchange, minute, Decimal(value), "USD", tuple(nodes), minute + 61.0)


def test_mean_of_one_price_per_exchange():
    latest = {
        "binance": price("binance", "100000.10"),
        "coinbase": price("coinbase", "100010.20"),
        "kraken": price("kraken", "99990.30"),
    }
    result = judge_round(MINUTE_0, list(latest.values()), rules=Rules())
    assert result.price == Decimal("100000.20")
    assert result.minute == MINUTE_0
    assert [p.exchange for p in result.kept] == ["binance", "coinbase", "kraken"]
    assert result.excluded == ()


def test_nodes_of_one_exchange_are_combined_by_median_and_count_once():
    reports = {
        "b3": Report(Decimal("900"), "USDT", 2.0),
        "b1": Report(Decimal("100"), "USDT", 1.0),
        "b2": Report(Decimal("102"), "USDT", 3.0),
    }
    combined = combine_reports("binance", MINUTE_0, reports)
    assert combined.price == Decimal("102")
    assert combined.node_ids == ("b1", "b2", "b3")
    assert combined.received_at == 3.0
    assert combined.reports[0][0] == "b1"
    both = judge_round(MINUTE_0, [combined, price("kraken", "102.5")], rules=Rules())
    assert both.price == Decimal("102.25")


def test_median_of_even_count_is_mean_of_middle_pair():
    assert median([Decimal(4), Decimal(1), Decimal(3), Decimal(2)]) == Decimal("2.5")
    with pytest.raises(ValueError, match="no values"):
        median([])
