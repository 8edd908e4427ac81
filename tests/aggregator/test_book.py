"""The book by minute: rounds close at once or at their deadline, stay closed, cannot be evicted."""

from decimal import Decimal

import pytest

from aggregator.book import Book, Outcome
from aggregator.config import AggregatorConfig
from aggregator.rounds import Status
from aggregator.validation import Observation
from common.errors import CapacityError, ConflictingObservationError
from common.proto import oracle_pb2 as pb

from .conftest import T0, observation


@pytest.fixture
def book() -> Book:
    return Book(AggregatorConfig())


def submit_three(book: Book, minute: int = T0, at: float | None = None, prices=None):
    at = minute + 62 if at is None else at
    prices = prices or ("100000", "100010", "100020")
    results = []
    for exchange, value in zip(("binance", "coinbase", "kraken"), prices, strict=True):
        results.append(book.submit(observation(exchange, value, minute=minute), at))
    return results


def rate(value: str, minute: int = T0, exchange: str = "kraken") -> Observation:
    return Observation(
        exchange, f"{exchange}-node", minute, Decimal(value), "USD", False, base="USDT"
    )


def test_round_closes_at_once_when_every_exchange_reported(book):
    first, second, third = submit_three(book)
    assert first.outcome is Outcome.COUNTED
    assert first.closed_rounds == ()
    assert second.closed_rounds == ()
    (closed,) = third.closed_rounds
    assert closed.minute == T0
    assert closed.closed
    assert closed.close_reason == pb.ROUND_CLOSE_REASON_ALL_REPORTED
    assert closed.status == pb.PRICE_STATUS_OK
    assert closed.price_e8 == 100010 * 10**8
    assert closed.confidence_e8 == 10 * 10**8
    assert [item.source for item in closed.inputs] == ["binance", "coinbase", "kraken"]
    assert closed.inputs[0].observations[0].node_id == "binance-node"
    assert list(closed.expected_sources) == ["binance", "coinbase", "kraken"]
    assert book.closed_round(T0) == closed
    assert book.open_round(T0, T0 + 63) is None
    live = book.aggregate(T0 + 63)
    assert (live.minute, live.price, live.final) == (T0, Decimal("100010"), True)


def test_round_closes_at_its_deadline_otherwise(book):
    book.submit(observation("binance", "100000"), T0 + 61)
    book.submit(observation("kraken", "100010"), T0 + 62)
    assert book.next_deadline() == T0 + 60 + 45
    assert book.close_due(T0 + 60 + 44.9) == []
    opened = book.open_round(T0, T0 + 70)
    assert opened is not None
    assert not opened.closed
    assert opened.status == pb.PRICE_STATUS_OK
    assert not book.aggregate(T0 + 70).final
    (closed,) = book.close_due(T0 + 60 + 45)
    assert closed.close_reason == pb.ROUND_CLOSE_REASON_DEADLINE
    assert closed.closed_at_ms == (T0 + 105) * 1000
    assert book.next_deadline() is None
    assert book.aggregate(T0 + 106).final


def test_a_report_after_the_deadline_is_late_even_before_the_clock_ran(book):
    book.submit(observation("binance", "100000"), T0 + 61)
    result = book.submit(observation("kraken", "100010"), T0 + 106)
    assert result.outcome is Outcome.LATE
    (closed,) = result.closed_rounds
    assert closed.status == pb.PRICE_STATUS_DEGRADED
    assert [item.source for item in closed.inputs] == ["binance"]


def test_a_late_report_leaves_the_closed_round_as_it_was(book):
    submit_three(book)
    before = book.closed_round(T0)
    live_before = book.aggregate(T0 + 63)
    late = book.submit(observation("kraken", "150000", node_id="kraken-2"), T0 + 64)
    assert late.outcome is Outcome.LATE
    after = book.closed_round(T0)
    assert after is not None
    assert before is not None
    assert after.late_reports == 1
    after.late_reports = 0
    assert after == before
    assert book.aggregate(T0 + 64) == live_before
    # Idempotent and conflict-checked like any other report.
    again = book.submit(observation("kraken", "150000", node_id="kraken-2"), T0 + 65)
    assert again.outcome is Outcome.DUPLICATE
    with pytest.raises(ConflictingObservationError):
        book.submit(observation("kraken", "150001", node_id="kraken-2"), T0 + 66)


def test_three_hundred_late_reports_from_new_ids_cannot_evict_the_current_minute(book):
    now_minute = T0 + 300
    for minute in range(T0, now_minute + 1, 60):
        submit_three(book, minute)
    healthy = book.aggregate(now_minute + 63)
    assert healthy.status is Status.OK
    for index in range(300):
        result = book.submit(
            observation("kraken", "90000", minute=T0, node_id=f"junk-{index}"), now_minute + 63
        )
        assert result.outcome is Outcome.LATE
    after = book.aggregate(now_minute + 63)
    assert after.status is Status.OK
    assert (after.minute, after.price) == (healthy.minute, healthy.price)
    # Honest redelivery of a current report is still recognised, not taken for new.
    redelivered = book.submit(observation("kraken", "100020", minute=now_minute), now_minute + 64)
    assert redelivered.outcome is Outcome.DUPLICATE


def test_a_minute_holds_at_most_window_nodes_per_exchange_and_refusal_changes_nothing():
    book = Book(AggregatorConfig(window=3))
    for index in range(3):
        book.submit(observation("kraken", node_id=f"k{index}"), T0 + 61)
    before = book.snapshot()
    with pytest.raises(CapacityError, match="window = 3"):
        book.check(observation("kraken", node_id="k9"), T0 + 62)
    with pytest.raises(CapacityError):
        book.submit(observation("kraken", node_id="k9"), T0 + 62)
    assert book.snapshot() == before
    # Other exchanges and the next minute are untouched by it.
    assert book.submit(observation("binance"), T0 + 62).outcome is Outcome.COUNTED


def test_second_node_on_an_exchange_does_not_add_weight(book):
    book.submit(observation("binance", "100000", node_id="b1"), T0 + 61)
    book.submit(observation("kraken", "100100"), T0 + 61)
    result = book.submit(observation("binance", "100000", node_id="b2"), T0 + 62)
    assert result.first_reporter == "b1"
    third = book.submit(observation("binance", "100000", node_id="b3"), T0 + 62)
    assert third.first_reporter is None  # the operator was warned once for this minute
    current = book.aggregate(T0 + 62)
    assert current.price == Decimal("100050")
    assert current.inputs[0].node_ids == ("b1", "b2", "b3")


def test_resubmission_is_idempotent(book):
    book.submit(observation("kraken", "100000"), T0 + 61)
    before = book.snapshot()
    assert book.submit(observation("kraken", "100000"), T0 + 90).outcome is Outcome.DUPLICATE
    assert book.snapshot() == before


def test_conflicting_resubmission_is_refused_by_check_and_submit_and_changes_nothing(book):
    book.submit(observation("kraken", "100000"), T0 + 61)
    before = book.snapshot()
    with pytest.raises(ConflictingObservationError, match="first report stands"):
        book.check(observation("kraken", "100001"), T0 + 62)
    with pytest.raises(ConflictingObservationError, match="first report stands"):
        book.submit(observation("kraken", "100001"), T0 + 62)
    assert book.snapshot() == before


def test_a_value_never_mixes_two_minutes(book):
    book.submit(observation("kraken", "100000", minute=T0), T0 + 61)
    book.submit(observation("binance", "100500", minute=T0 + 60), T0 + 121)
    live = book.aggregate(T0 + 122)
    assert live.minute == T0 + 60
    assert {price.minute for price in live.inputs} == {T0 + 60}
    assert live.status is Status.DEGRADED


def test_the_live_value_stays_on_the_ok_minute_until_the_next_one_is_ok(book):
    submit_three(book)
    book.submit(observation("binance", "100100", minute=T0 + 60), T0 + 121)
    assert book.aggregate(T0 + 122).minute == T0
    book.submit(observation("kraken", "100110", minute=T0 + 60), T0 + 122)
    live = book.aggregate(T0 + 123)
    assert (live.minute, live.status, live.final) == (T0 + 60, Status.OK, False)


def test_nothing_fresh_is_unknown_with_no_price(book):
    submit_three(book)
    live = book.aggregate(T0 + 60 + 121)
    assert live.status is Status.UNKNOWN
    assert live.price is None
    assert "no fresh prices" in live.reason


def test_report_dated_in_the_future_waits_for_its_candle(book):
    submit_three(book)
    pending = book.submit(observation("kraken", "1000", minute=T0 + 120, node_id="f"), T0 + 65)
    assert pending.outcome is Outcome.PENDING
    assert book.aggregate(T0 + 66).minute == T0


def test_usdt_rate_observations_convert_the_round(book):
    book.submit(rate("0.998"), T0 + 61)
    book.submit(observation("binance", "100200", quote="USDT"), T0 + 61)
    book.submit(observation("kraken", "100000"), T0 + 61)
    live = book.aggregate(T0 + 62)
    assert live.result is not None
    assert live.result.usdt_converted
    assert live.result.usdt_rate == Decimal("0.998")
    assert live.price == (Decimal("100200") * Decimal("0.998") + 100000) / 2
    # A rate is never a BTC input.
    assert [price.exchange for price in live.inputs] == ["binance", "kraken"]


def test_usdt_without_a_rate_is_flagged_at_par(book):
    book.submit(observation("binance", "100200", quote="USDT"), T0 + 61)
    book.submit(observation("kraken", "100000"), T0 + 61)
    live = book.aggregate(T0 + 62)
    assert live.result is not None
    assert live.result.usdt_at_par
    assert live.price == Decimal("100100")


def test_a_restored_round_stays_closed_and_serves_the_same_value():
    original = Book(AggregatorConfig())
    submit_three(original)
    stored = original.closed_round(T0)
    assert stored is not None
    restarted = Book(AggregatorConfig())
    restarted.restore_closed_round(stored)
    assert restarted.closed_round(T0) == stored
    # Recovery replays the round's own reports: recorded for idempotency, not counted late.
    replayed = restarted.submit(observation("binance", "100000"), T0 + 62)
    assert replayed.outcome is Outcome.LATE
    assert restarted.closed_round(T0) == stored
    result = restarted.submit(observation("binance", "100000", node_id="b2"), T0 + 70)
    assert result.outcome is Outcome.LATE
    assert restarted.closed_round(T0).late_reports == 1
    live = restarted.aggregate(T0 + 70)
    assert (live.minute, live.price, live.final) == (T0, Decimal("100010"), True)
    assert live.result is not None
    assert live.result.confidence == Decimal("10")


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
        book.check(observation("coinbase", node_id="c1"), T0 + 150)
    with pytest.raises(CapacityError, match="node table full"):
        book.submit(observation("coinbase", node_id="c1"), T0 + 150)
    assert book.snapshot() == before
    # Once the least recently seen node has gone quiet, it makes room for the new one.
    book.submit(observation("coinbase", node_id="c1", minute=T0 + 120), T0 + 182)
    assert book.node("b1") is None
    assert book.node("k1") is not None
    assert book.node("c1") is not None
    assert [node_id for node_id, _ in book.nodes()] == ["c1", "k1"]


def test_memory_is_bounded_by_time(book):
    for minute_index in range(120):
        minute = T0 + 60 * minute_index
        submit_three(book, minute)
    open_rounds, closed, _, closes, seen, *_ = book.snapshot()
    assert open_rounds == {}
    assert len(seen) <= 3 * 13
    assert len(closed) <= 62
    assert all(len(by_minute) <= 8 for by_minute in closes.values())
