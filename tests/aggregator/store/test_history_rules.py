"""The history's rules, each checked on both backends (SQLite and in-memory) through one fixture."""

from __future__ import annotations

import dataclasses
import random
from decimal import Decimal

import grpc
import pytest

from aggregator.store import (
    DuplicateRoundError,
    HistoryClosedError,
    HistoryRecordError,
    ObservationConflictError,
    RoundRecord,
)
from aggregator.store.refusals import MAX_REASONS, SAMPLE_BYTES, SAMPLES_PER_REASON
from common.proto import oracle_pb2
from tests.aggregator.store.builders import (
    DAY,
    T0,
    FakeClock,
    node_row,
    observation,
    round_proto,
    round_record,
    signed_observation,
)
from tests.aggregator.store.conftest import AnyStore

EVERYTHING = 10**12  # a recover horizon that reaches every stored minute


async def test_an_observation_is_read_back_exactly_with_its_signature(store: AnyStore) -> None:
    record = signed_observation(price="101234.56789012", received_at=T0 + 61.25)
    await store.add_observation(record)

    recovered = store.recover(T0 + 65, 600).observations
    assert recovered == [record]
    assert recovered[0].price == Decimal("101234.56789012")
    assert recovered[0].signature == bytes(range(64))


async def test_the_same_observation_again_is_idempotent(store: AnyStore) -> None:
    record = observation()
    await store.add_observation(record)
    await store.add_observation(dataclasses.replace(record, received_at=T0 + 70))

    assert store.recover(T0 + 65, 600).observations == [record]


async def test_a_different_price_for_the_same_minute_is_refused_and_the_first_stands(
    store: AnyStore,
) -> None:
    first = observation(price="100000")
    await store.add_observation(first)

    with pytest.raises(ObservationConflictError, match="first observation stands") as refused:
        await store.add_observation(observation(price="100001"))

    assert refused.value.status == grpc.StatusCode.ALREADY_EXISTS
    assert store.recover(T0 + 65, 600).observations == [first]


async def test_each_node_exchange_pair_and_minute_is_its_own_observation(store: AnyStore) -> None:
    records = [
        observation(),
        observation(base="USDT", quote="USD", price="0.9998"),  # the node's USDT/USD rate
        observation(node_id="binance-node-2"),
        observation("kraken"),
        observation(minute=T0 + 60),
    ]
    for record in records:
        await store.add_observation(record)

    assert store.recover(T0 + 65, 600).observations == records


async def test_a_closed_round_is_stored_once_and_never_replaced(store: AnyStore) -> None:
    original = round_record(T0)
    await store.add_round(original)
    replacement = RoundRecord(T0, original.status, T0 + 99.0, False, round_proto(T0, price_e8=1))

    with pytest.raises(DuplicateRoundError):
        await store.add_round(replacement)

    assert store.get_round(T0) == original
    assert oracle_pb2.Round.FromString(original.round_proto).price_e8 == 10_000_012_345_678


async def test_a_round_whose_bytes_disagree_with_its_columns_is_refused(store: AnyStore) -> None:
    other_minute = RoundRecord(
        T0, oracle_pb2.PRICE_STATUS_OK, T0 + 62.0, False, round_proto(T0 + 60)
    )
    wrong_status = dataclasses.replace(round_record(T0), status=oracle_pb2.PRICE_STATUS_DEGRADED)
    still_open = RoundRecord(
        T0, 1, T0 + 62.0, False, oracle_pb2.Round(minute=T0, status=1).SerializeToString()
    )
    garbage = RoundRecord(T0, 1, T0 + 62.0, False, b"\xff\xff\xff")

    for bad in (other_minute, wrong_status, still_open, garbage):
        with pytest.raises(HistoryRecordError):
            await store.add_round(bad)

    assert store.get_round(T0) is None
    assert store.rounds(None, None, 10, None) == []


async def test_simulated_records_never_enter_a_real_history(store: AnyStore) -> None:
    with pytest.raises(HistoryRecordError, match="simulated and real data never share"):
        await store.add_observation(observation(simulated=True))
    with pytest.raises(HistoryRecordError, match="simulated and real"):
        await store.add_round(round_record(T0, simulated=True))

    assert store.recover(T0 + 65, EVERYTHING).observations == []
    assert store.get_round(T0) is None


@pytest.mark.parametrize(
    "bad",
    [
        observation(price="NaN"),
        observation(price="-1"),
        observation(price="0"),
        observation(node_id="x" * 500),
        observation(signature=b"s" * 1000),
    ],
)
async def test_a_record_that_cannot_be_stored_faithfully_is_refused(
    store: AnyStore, bad: object
) -> None:
    with pytest.raises(HistoryRecordError):
        await store.add_observation(bad)  # type: ignore[arg-type]
    assert store.recover(T0 + 65, EVERYTHING).observations == []


async def test_rounds_are_newest_first_and_pages_have_no_gap_or_repeat(store: AnyStore) -> None:
    minutes = [T0 + 60 * i for i in range(250)]
    order = random.Random(7)  # noqa: S311 - a reproducible order
    for minute in order.sample(minutes, len(minutes)):
        await store.add_round(round_record(minute))

    pages: list[list[int]] = []
    before: int | None = None
    while page := store.rounds(None, None, 100, before):
        pages.append([r.minute for r in page])
        before = page[-1].minute

    assert [len(page) for page in pages] == [100, 100, 50]
    assert [m for page in pages for m in page] == sorted(minutes, reverse=True)


async def test_rounds_honour_an_inclusive_minute_range(store: AnyStore) -> None:
    for i in range(10):
        await store.add_round(round_record(T0 + 60 * i))

    selected = store.rounds(T0 + 120, T0 + 300, 100, None)
    assert [r.minute for r in selected] == [T0 + 300, T0 + 240, T0 + 180, T0 + 120]
    assert [r.minute for r in store.rounds(T0 + 120, T0 + 300, 2, None)] == [T0 + 300, T0 + 240]
    assert [r.minute for r in store.rounds(T0 + 120, None, 100, T0 + 180)] == [T0 + 120]
    assert store.rounds(T0 + 600, None, 10, None) == []


async def test_minute_bounds_from_the_wire_never_overflow(store: AnyStore) -> None:
    await store.add_round(round_record(T0))
    wire_max = 2**64 - 1  # a uint64 field of GetPriceHistory / GetRound

    assert store.get_round(wire_max) is None
    assert store.rounds(wire_max, None, 10, None) == []
    assert [r.minute for r in store.rounds(0, wire_max, 10, wire_max)] == [T0]
    assert store.rounds(None, None, 10, -(2**70)) == []
    assert len(store.rounds(None, None, wire_max, None)) == 1


@pytest.mark.parametrize("limit", [0, -1, True])
async def test_rounds_refuses_a_limit_that_is_not_positive(store: AnyStore, limit: int) -> None:
    with pytest.raises(HistoryRecordError):
        store.rounds(None, None, limit, None)


async def test_recover_returns_the_lateness_horizon_and_the_node_table(store: AnyStore) -> None:
    now, horizon = T0 + 3600.0, 600.0
    # A candle M is inside the horizon while M + 60 >= now - horizon.
    boundary = int(now - horizon - 60)
    inside = [
        observation(minute=boundary),
        observation("kraken", minute=boundary + 60),
        observation(minute=T0 + 3600 + 60),  # dated in the future (clock skew): kept too
        observation("coinbase", minute=boundary + 120, received_at=now - 1),
    ]
    outside = [observation(minute=boundary - 60), observation("kraken", minute=T0)]
    for record in [inside[0], outside[0], inside[1], outside[1], inside[2], inside[3]]:
        await store.add_observation(record)
    for minute in (boundary - 60, boundary, boundary + 60):
        await store.add_round(round_record(minute))
    await store.touch_node(node_row("kraken-node", last_seen=now - 5, n=7))
    await store.touch_node(node_row("binance-node", last_seen=now - 50, n=9))
    await store.touch_node(node_row("kraken-node", last_seen=now - 2, n=8))
    await store.add_observation(observation("coinbase", minute=boundary + 180))  # carries the rows
    inside.append(observation("coinbase", minute=boundary + 180))

    state = store.recover(now, horizon)

    assert state.observations == inside  # in the order they were accepted
    assert [r.minute for r in state.rounds] == [boundary, boundary + 60]
    assert state.nodes == [
        node_row("binance-node", last_seen=now - 50, n=9),
        node_row("kraken-node", last_seen=now - 2, n=8),
    ]


async def test_equivocation_evidence_keeps_both_signed_observations_once(store: AnyStore) -> None:
    first = signed_observation(price="100000")
    second = signed_observation(price="99000", received_at=T0 + 62.0)
    await store.add_equivocation(first, second)
    await store.add_equivocation(first, signed_observation(price="98000"))  # same node-minute

    evidence = store.equivocations()
    assert len(evidence) == 1
    assert (evidence[0].first, evidence[0].second) == (first, second)
    assert evidence[0].detected_at == T0 + 65


async def test_equivocation_evidence_must_be_one_node_minute_with_two_prices(
    store: AnyStore,
) -> None:
    with pytest.raises(HistoryRecordError):
        await store.add_equivocation(observation(), observation(minute=T0 + 60, price="1"))
    with pytest.raises(HistoryRecordError):
        await store.add_equivocation(observation(), observation())
    assert store.equivocations() == []


async def test_refusals_are_counted_by_reason_with_a_bounded_sample(store: AnyStore) -> None:
    for i in range(30):
        store.count_refusal("bad_signature", f"request {i}".encode(), T0 + i)
    store.count_refusal("too_late", None, T0 + 40)
    await store.add_observation(observation())  # the next commit carries the counts

    assert store.refusal_counts() == {"bad_signature": 30, "too_late": 1}
    samples = store.refusal_samples()
    assert [s.sample for s in samples] == [f"request {i}".encode() for i in range(22, 30)]
    assert len(samples) == SAMPLES_PER_REASON


async def test_a_flood_of_junk_refusals_stays_bounded(store: AnyStore) -> None:
    junk = random.Random(3)  # noqa: S311 - reproducible junk
    for i in range(5_000):
        reason = f"junk-{junk.randrange(10**9)}" if i % 2 else "bad_price"
        store.count_refusal(reason + "\x00\n" * 50, junk.randbytes(64 * 1024), T0 + i / 100)
    await store.add_observation(observation())

    counts = store.refusal_counts()
    assert sum(counts.values()) == 5_000
    assert len(counts) <= MAX_REASONS + 1  # the rest are counted under "other"
    assert "other" in counts
    assert all(reason.isprintable() and len(reason) <= 64 for reason in counts)
    samples = store.refusal_samples()
    assert len(samples) <= (MAX_REASONS + 1) * SAMPLES_PER_REASON
    assert all(len(s.sample) == SAMPLE_BYTES and s.size == 64 * 1024 for s in samples)


async def test_retention_prunes_everything_older_than_its_days(
    store: AnyStore, clock: FakeClock
) -> None:
    old, recent = T0, T0 + 20 * DAY
    await store.add_observation(observation(minute=old))
    await store.add_observation(observation(minute=recent))
    await store.add_round(round_record(old))
    await store.add_round(round_record(recent))
    await store.add_equivocation(observation(minute=old), observation(minute=old, price="1"))
    await store.touch_node(node_row("old-node", last_seen=old + 61))
    await store.touch_node(node_row("binance-node", last_seen=recent + 61))
    store.count_refusal("bad_price", b"x", old + 1)
    await store.add_observation(observation("kraken", minute=recent))
    newest = old + 31 * DAY
    await store.add_observation(observation("coinbase", minute=newest))

    clock.now = newest + 65  # 30 days of retention: `old` is past, `recent` is not
    assert await store.prune() > 0

    state = store.recover(clock.now, EVERYTHING)
    assert [r.minute for r in state.observations] == [recent, recent, newest]
    assert [r.minute for r in state.rounds] == [recent]
    assert [n.node_id for n in state.nodes] == ["binance-node"]
    assert store.equivocations() == []
    assert store.refusal_counts() == {}


async def test_a_clock_jumping_far_ahead_never_prunes_the_recent_history(
    store: AnyStore, clock: FakeClock
) -> None:
    for day in range(3):
        await store.add_observation(observation(minute=T0 + day * DAY))
        await store.add_round(round_record(T0 + day * DAY))

    clock.now = T0 + 400 * DAY  # a VM restored with a wrong clock, a bad NTP source
    await store.prune()

    # Retention counts back from the newest data, not from a clock nothing was written at.
    assert len(store.recover(clock.now, EVERYTHING).observations) == 3
    assert len(store.rounds(None, None, 10, None)) == 3


async def test_a_closed_store_refuses_writes_and_reads(store: AnyStore) -> None:
    await store.close()
    await store.close()  # idempotent

    with pytest.raises(HistoryClosedError):
        await store.add_observation(observation())
    with pytest.raises(HistoryClosedError):
        store.get_round(T0)
    store.count_refusal("bad_price", b"x", T0)  # never raises: refusals are best effort
