"""The pure aggregation: one price per exchange, mean over exchanges, staleness, quorum."""

from decimal import Decimal

import pytest

from aggregator.aggregation import (
    ExchangePrice,
    Report,
    aggregate,
    combine_reports,
    counted_price,
    median,
)

MINUTE_0 = 1_795_000_020 // 60 * 60


def price(exchange: str, value: str, minute: int = MINUTE_0, nodes=("n",)) -> ExchangePrice:
    return ExchangePrice(exchange, minute, Decimal(value), "USD", tuple(nodes), minute + 61.0)


def held(latest: dict[str, ExchangePrice]) -> dict[str, list[ExchangePrice]]:
    """The book holds each exchange's newest minutes, newest first; most tests need one."""
    return {exchange: [value] for exchange, value in latest.items()}


def test_mean_of_one_price_per_exchange():
    latest = {
        "binance": price("binance", "100000.10"),
        "coinbase": price("coinbase", "100010.20"),
        "kraken": price("kraken", "99990.30"),
    }
    result = aggregate(held(latest), MINUTE_0 + 65, staleness=120)
    assert result.price == Decimal("100000.20")
    assert result.minute == MINUTE_0
    assert [p.exchange for p in result.inputs] == ["binance", "coinbase", "kraken"]
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
    latest = {"binance": combined, "kraken": price("kraken", "104")}
    assert aggregate(held(latest), MINUTE_0 + 70, staleness=120).price == Decimal("103")


def test_median_of_even_count_is_mean_of_middle_pair():
    assert median([Decimal(4), Decimal(1), Decimal(3), Decimal(2)]) == Decimal("2.5")
    with pytest.raises(ValueError, match="no values"):
        median([])


def test_stale_exchange_is_dropped_with_reason():
    latest = {
        "binance": price("binance", "100", MINUTE_0 + 180),
        "kraken": price("kraken", "200", MINUTE_0),  # closed 240 s before now
    }
    result = aggregate(held(latest), MINUTE_0 + 300, staleness=120)
    assert result.price == Decimal("100")
    assert result.excluded[0][0] == "kraken"
    assert "stale" in result.excluded[0][1]


def test_exchange_more_than_one_minute_behind_newest_is_not_counted():
    latest = {
        "binance": price("binance", "100", MINUTE_0 + 120),
        "coinbase": price("coinbase", "110", MINUTE_0 + 60),  # one minute late: counts
        "kraken": price("kraken", "500", MINUTE_0),  # two minutes late: left out
    }
    result = aggregate(held(latest), MINUTE_0 + 185, staleness=200)
    assert result.price == Decimal("105")
    assert result.minute == MINUTE_0 + 120
    assert result.excluded == (("kraken", "behind: 2 minutes older than newest"),)


def test_no_data_and_all_stale_say_why():
    empty = aggregate({}, MINUTE_0, staleness=120)
    assert empty.price is None
    assert empty.reason == "no prices submitted yet"
    stale = aggregate(held({"kraken": price("kraken", "1")}), MINUTE_0 + 600, staleness=120)
    assert stale.price is None
    assert "no fresh prices" in stale.reason


def test_quorum_not_met_gives_no_price():
    latest = {"kraken": price("kraken", "100")}
    result = aggregate(held(latest), MINUTE_0 + 61, staleness=120, quorum=2)
    assert result.price is None
    assert result.reason == "below quorum: 1 fresh exchange(s), 2 required"


def test_valid_until_is_when_the_first_input_goes_stale():
    latest = {
        "binance": price("binance", "100", MINUTE_0 + 60),
        "kraken": price("kraken", "100", MINUTE_0),
    }
    result = aggregate(held(latest), MINUTE_0 + 125, staleness=120)
    assert result.valid_until == MINUTE_0 + 60 + 120
    later = aggregate(held(latest), result.valid_until + 1, staleness=120)
    assert [p.exchange for p in later.inputs] == ["binance"]


def test_minute_not_closed_yet_waits_and_does_not_hide_the_closed_one():
    # A report dated in the future (allowed for clock skew) must neither take over the
    # aggregate nor push the exchange's real, closed minute out of it.
    forged = price("kraken", "1", MINUTE_0 + 120)
    honest = price("kraken", "100", MINUTE_0)
    latest = {"kraken": [forged, honest], "binance": [price("binance", "102")]}
    now = MINUTE_0 + 65
    result = aggregate(latest, now, staleness=120, close_skew=5)
    assert result.price == Decimal("101")
    assert result.minute == MINUTE_0
    # Recomputed when the held-back minute closes, and only then does it count.
    assert result.valid_until == MINUTE_0 + 180 - 5
    later = aggregate(latest, MINUTE_0 + 180, staleness=120, close_skew=5)
    assert [p.minute for p in later.inputs] == [MINUTE_0 + 120]


def test_exchange_with_only_forming_minutes_is_left_out_with_reason():
    latest = {"kraken": [price("kraken", "1", MINUTE_0 + 60)]}
    result = aggregate(latest, MINUTE_0 + 65, staleness=120, close_skew=5)
    assert result.price is None
    assert result.excluded == (
        ("kraken", "not closed yet: only minutes still forming were reported"),
    )


def test_counted_price_allows_clock_skew():
    early = price("kraken", "1", MINUTE_0)
    assert counted_price([early], MINUTE_0 + 57, close_skew=5) is early
    assert counted_price([early], MINUTE_0 + 54, close_skew=5) is None
