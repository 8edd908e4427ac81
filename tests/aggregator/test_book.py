"""The book: dedupe by exchange, idempotent resubmission, bounded memory, node health."""

from decimal import Decimal

import pytest

from aggregator.book import Book, Outcome
from aggregator.config import AggregatorConfig
from common.errors import CapacityError, ConflictingObservationError

from .conftest import T0, observation


@pytest.fixture
def book() -> Book:
    return Book(AggregatorConfig())


def test_three_exchanges_give_their_mean(book):
    for exchange, price in (("binance", "100"), ("coinbase", "110"), ("kraken", "120")):
        assert book.submit(observation(exchange, price), T0 + 62).outcome is Outcome.COUNTED
    result = book.aggregate(T0 + 63)
    assert result.price == Decimal("110")
    assert len(result.inputs) == 3


def test_second_node_on_an_exchange_does_not_add_weight(book):
    book.submit(observation("binance", "100", node_id="b1"), T0 + 61)
    book.submit(observation("kraken", "200"), T0 + 61)
    result = book.submit(observation("binance", "100", node_id="b2"), T0 + 62)
    assert result.first_reporter == "b1"
    third = book.submit(observation("binance", "100", node_id="b3"), T0 + 62)
    assert third.first_reporter is None  # the operator was warned once for this minute
    current = book.aggregate(T0 + 62)
    assert current.price == Decimal("150")
    assert current.inputs[0].node_ids == ("b1", "b2", "b3")


def test_resubmission_is_idempotent(book):
    book.submit(observation("kraken", "100"), T0 + 61)
    before = book.snapshot()
    assert book.submit(observation("kraken", "100"), T0 + 90).outcome is Outcome.DUPLICATE
    assert book.snapshot() == before


def test_conflicting_resubmission_is_refused_and_changes_nothing(book):
    book.submit(observation("kraken", "100"), T0 + 61)
    before = book.snapshot()
    with pytest.raises(ConflictingObservationError, match="first report stands"):
        book.submit(observation("kraken", "101"), T0 + 62)
    assert book.snapshot() == before


def test_late_observation_is_stored_but_does_not_replace_newer_minute(book):
    book.submit(observation("kraken", "200", minute=T0 + 60), T0 + 121)
    result = book.submit(observation("kraken", "100", minute=T0), T0 + 122)
    assert result.outcome is Outcome.STORED
    assert book.aggregate(T0 + 122).price == Decimal("200")
    assert book.report_count("kraken") == 2


def test_window_keeps_only_the_last_observations_per_exchange():
    book = Book(AggregatorConfig(window=5))
    for i in range(12):
        book.submit(observation("kraken", "100", node_id=f"k{i}"), T0 + 61)
    assert book.report_count("kraken") == 5
    assert book.aggregate(T0 + 62).inputs[0].node_ids == ("k10", "k11", "k7", "k8", "k9")


def test_evicted_report_stays_idempotent_within_lateness(book):
    small = Book(AggregatorConfig(window=2))
    small.submit(observation("kraken", "100", node_id="a"), T0 + 61)
    small.submit(observation("kraken", "100", node_id="b", minute=T0 + 60), T0 + 121)
    small.submit(observation("kraken", "100", node_id="c", minute=T0 + 60), T0 + 121)
    # "a"'s report left the window, but a resubmission is still recognised.
    assert small.submit(observation("kraken", "100", node_id="a"), T0 + 122).outcome is (
        Outcome.DUPLICATE
    )


def test_node_active_for_timeout_then_inactive(book):
    book.submit(observation("binance", node_id="b1"), T0 + 61)
    book.submit(observation("kraken", node_id="k1"), T0 + 100)
    assert book.active_node_count(T0 + 61 + 120) == 2
    assert book.active_nodes(T0 + 61 + 121) == ["k1"]
    assert book.active_node_count(T0 + 100 + 121) == 0


def test_node_table_is_bounded_and_refusal_changes_nothing():
    book = Book(AggregatorConfig(max_nodes=2, node_timeout=120))
    book.submit(observation("binance", node_id="b1"), T0 + 61)
    book.submit(observation("kraken", node_id="k1"), T0 + 100)
    before = book.snapshot()
    with pytest.raises(CapacityError, match="node table full"):
        book.submit(observation("coinbase", node_id="c1"), T0 + 150)
    assert book.snapshot() == before
    # Once the least recently seen node has gone quiet, it makes room for the new one.
    book.submit(observation("coinbase", node_id="c1", minute=T0 + 120), T0 + 182)
    assert book.node("b1") is None
    assert book.node("k1") is not None
    assert book.node("c1") is not None


def test_junk_ids_cannot_lock_out_a_real_node_for_longer_than_the_timeout():
    book = Book(AggregatorConfig(max_nodes=100, node_timeout=120))
    for index in range(100):
        book.submit(observation("kraken", node_id=f"junk-{index}"), T0 + 61)
    with pytest.raises(CapacityError):
        book.submit(observation("kraken", node_id="oracle-node-3", minute=T0 + 60), T0 + 121)
    result = book.submit(observation("kraken", node_id="oracle-node-3", minute=T0 + 120), T0 + 182)
    assert result.outcome is Outcome.COUNTED


def test_aggregate_recomputed_when_inputs_go_stale(book):
    book.submit(observation("binance", "100", minute=T0 + 60), T0 + 121)
    book.submit(observation("kraken", "200", minute=T0), T0 + 121)
    assert book.aggregate(T0 + 122).price == Decimal("150")
    assert book.aggregate(T0 + 60 + 121).price == Decimal("100")
    assert book.aggregate(T0 + 120 + 121).price is None


def test_memory_of_seen_reports_is_pruned_past_lateness(book):
    for minute_index in range(30):
        minute = T0 + 60 * minute_index
        book.submit(observation("kraken", "100", minute=minute), minute + 61)
    seen = book.snapshot()[2]
    assert len(seen) <= 13
