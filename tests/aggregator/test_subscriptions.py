"""The subscription hub: conflation, bounded round queue, drops, limits, filter and shutdown.

The first part drives the hub directly with a fake monotonic clock (exact lag arithmetic); the
second serves it over real grpc.aio streams on a loopback server, where gRPC's flow control is
what stalls a subscriber that does not read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from aggregator.streaming_settings import StreamingSettings
from aggregator.subscriptions import (
    DROP_BEHIND,
    DROP_ROUND_QUEUE_FULL,
    SubscriptionHub,
    peer_address,
)
from common.errors import CapacityError, InvalidObservationError, UnavailableError
from common.exchanges import EXCHANGES
from common.proto import oracle_pb2, oracle_pb2_grpc
from tests.aggregator.streaming_fakes import Harness, price_request, start_harness

PEER = "ipv4:127.0.0.1:50000"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingObserver:
    def __init__(self) -> None:
        self.counts: list[int] = []
        self.drops: list[str] = []

    def subscribers_changed(self, attached: int) -> None:
        self.counts.append(attached)

    def subscriber_dropped(self, reason: str) -> None:
        self.drops.append(reason)


def answer(price: float, source: str = "") -> oracle_pb2.GetPriceResponse:
    return oracle_pb2.GetPriceResponse(
        success=True, aggregated_price=price, message=f"{source or 'aggregate'} {price}"
    )


def closed_round(minute: int) -> oracle_pb2.Round:
    return oracle_pb2.Round(minute=minute, closed=True, status=oracle_pb2.PRICE_STATUS_OK)


def make_hub(
    monotonic: FakeMonotonic, observer: RecordingObserver | None = None, **settings: object
) -> SubscriptionHub:
    settings.setdefault("min_update_interval_seconds", 0)
    settings.setdefault("update_interval_per_subscriber_seconds", 0)
    return SubscriptionHub(
        StreamingSettings.model_validate(settings),
        snapshot=lambda source: answer(1.0, source),
        exchanges=EXCHANGES,
        clock=lambda: 1_795_000_000.5,
        monotonic=monotonic,
        observer=observer,
    )


def subscribe(source: str | None = None) -> oracle_pb2.SubscribeRequest:
    if source is None:
        return oracle_pb2.SubscribeRequest()
    return oracle_pb2.SubscribeRequest(source_filter=source)


# -- the hub alone -----------------------------------------------------------------------------


def test_a_subscriber_first_gets_the_current_state_then_only_the_newest_price() -> None:
    monotonic = FakeMonotonic()
    hub = make_hub(monotonic)
    subscription = hub.attach(subscribe(), PEER)

    first = subscription.take(monotonic())
    assert first is not None
    assert first.sequence == 1
    assert first.timestamp_ms == 1_795_000_000_500
    assert first.price.aggregated_price == 1.0

    for price in (2.0, 3.0, 4.0):
        hub.publish_price(aggregate=answer(price))
    newest = subscription.take(monotonic())
    assert newest is not None
    # Conflated: 2.0 and 3.0 were superseded; the gap in the sequence says so.
    assert (newest.sequence, newest.price.aggregated_price) == (4, 4.0)
    assert subscription.skipped == 2
    assert subscription.take(monotonic()) is None


def test_round_closes_are_all_kept_in_order_between_conflated_prices() -> None:
    monotonic = FakeMonotonic()
    hub = make_hub(monotonic)
    subscription = hub.attach(subscribe(), PEER)
    subscription.take(monotonic())

    hub.publish_price(aggregate=answer(2.0))  # 2, superseded by 5
    hub.publish_round(closed_round(60))  # 3
    hub.publish_round(closed_round(120))  # 4
    hub.publish_price(aggregate=answer(3.0))  # 5
    hub.publish_round(closed_round(180))  # 6

    taken = []
    while (update := subscription.take(monotonic())) is not None:
        kind = update.WhichOneof("update")
        value = update.round.minute if kind == "round" else update.price.aggregated_price
        taken.append((update.sequence, kind, value))
    assert taken == [(3, "round", 60), (4, "round", 120), (5, "price", 3.0), (6, "round", 180)]


def test_an_exchange_subscriber_gets_that_exchange_only_and_no_rounds() -> None:
    monotonic = FakeMonotonic()
    hub = make_hub(monotonic)
    kraken = hub.attach(subscribe("kraken"), PEER)
    first = kraken.take(monotonic())
    assert first is not None
    assert first.price.message == "kraken 1.0"

    hub.publish_price(aggregate=answer(5.0), exchanges={"binance": answer(6.0, "binance")})
    hub.publish_round(closed_round(60))
    assert kraken.take(monotonic()) is None

    hub.publish_price(exchanges={"kraken": answer(7.0, "kraken")})
    update = kraken.take(monotonic())
    assert update is not None
    assert update.price.message == "kraken 7.0"


@pytest.mark.parametrize("source", ["KRAKEN", "bitstamp", " kraken", "x" * 1000])
def test_an_unknown_source_filter_is_refused_and_registers_nothing(source: str) -> None:
    hub = make_hub(FakeMonotonic())
    with pytest.raises(InvalidObservationError, match="source_filter"):
        hub.attach(subscribe(source), PEER)
    assert (hub.attached, hub.open_streams) == (0, 0)


def test_a_failing_snapshot_leaves_nothing_registered() -> None:
    def broken(source: str) -> oracle_pb2.GetPriceResponse:
        raise RuntimeError("book unavailable")

    hub = SubscriptionHub(StreamingSettings(), snapshot=broken, exchanges=EXCHANGES)
    with pytest.raises(RuntimeError):
        hub.attach(subscribe(), PEER)
    assert (hub.attached, hub.open_streams) == (0, 0)


def test_a_subscriber_that_leaves_an_update_waiting_past_the_lag_limit_is_dropped() -> None:
    monotonic = FakeMonotonic()
    observer = RecordingObserver()
    hub = make_hub(monotonic, observer, max_lag_seconds=5.0)
    stalled = hub.attach(subscribe(), PEER)
    reading = hub.attach(subscribe(), "ipv4:127.0.0.2:1")
    reading.take(monotonic())

    for step in range(10):
        monotonic.now += 1.0
        hub.publish_price(aggregate=answer(float(step)))
        assert reading.take(monotonic()) is not None  # keeps up: never behind
        hub.reap()

    assert observer.drops == [DROP_BEHIND]
    assert hub.attached == 1
    # Dropped: nothing is kept for it any more, and its stream ends with the reason.
    assert not stalled.pending
    hub.publish_price(aggregate=answer(99.0))
    assert not stalled.pending
    assert isinstance(stalled.end, CapacityError)
    assert "max_lag_seconds" in str(stalled.end)
    assert "GetPriceHistory" in str(stalled.end)
    # Its slot is still counted until its stream really ends.
    assert hub.open_streams == 2
    hub.detach(stalled)
    assert hub.open_streams == 1


def test_an_idle_subscriber_with_nothing_waiting_is_never_behind() -> None:
    monotonic = FakeMonotonic()
    hub = make_hub(monotonic, max_lag_seconds=5.0)
    subscription = hub.attach(subscribe(), PEER)
    subscription.take(monotonic())
    monotonic.now += 3600
    assert hub.reap() == 0
    assert hub.attached == 1


def test_a_full_round_queue_drops_the_subscriber_rather_than_lose_a_round() -> None:
    monotonic = FakeMonotonic()
    observer = RecordingObserver()
    hub = make_hub(monotonic, observer, round_queue=3)
    subscription = hub.attach(subscribe(), PEER)
    for minute in (60, 120, 180):
        hub.publish_round(closed_round(minute))
    assert observer.drops == []
    hub.publish_round(closed_round(240))
    assert observer.drops == [DROP_ROUND_QUEUE_FULL]
    assert isinstance(subscription.end, CapacityError)
    assert "round_queue" in str(subscription.end)


def test_the_subscriber_limit_counts_open_streams_and_frees_a_slot_when_one_ends() -> None:
    observer = RecordingObserver()
    hub = make_hub(FakeMonotonic(), observer, max_subscribers=2, max_subscribers_per_peer=2)
    first = hub.attach(subscribe(), "ipv4:10.0.0.1:1")
    hub.attach(subscribe("kraken"), "ipv4:10.0.0.2:1")
    with pytest.raises(CapacityError, match="max_subscribers"):
        hub.attach(subscribe(), "ipv4:10.0.0.3:1")
    hub.detach(first)
    hub.attach(subscribe(), "ipv4:10.0.0.3:1")
    assert observer.counts == [1, 2, 1, 2]


def test_one_address_cannot_take_every_slot() -> None:
    hub = make_hub(FakeMonotonic(), max_subscribers=10, max_subscribers_per_peer=2)
    hub.attach(subscribe(), "ipv4:10.0.0.1:1")
    hub.attach(subscribe(), "ipv4:10.0.0.1:2")
    with pytest.raises(CapacityError, match="max_subscribers_per_peer"):
        hub.attach(subscribe(), "ipv4:10.0.0.1:3")
    hub.attach(subscribe(), "ipv6:[::1]:4")


def test_peer_addresses_drop_the_port_only() -> None:
    assert peer_address("ipv4:10.0.0.1:5123") == "ipv4:10.0.0.1"
    assert peer_address("ipv6:[2001:db8::1]:443") == "ipv6:[2001:db8::1]"
    assert peer_address("unix:/run/oracle.sock") == "unix:/run/oracle.sock"


def test_the_per_peer_limit_cannot_exceed_the_total() -> None:
    with pytest.raises(ValueError, match="must not exceed max_subscribers = 10"):
        StreamingSettings(max_subscribers=10, max_subscribers_per_peer=11)


async def test_on_close_pending_updates_are_delivered_then_the_stream_ends_unavailable() -> None:
    monotonic = FakeMonotonic()
    hub = make_hub(monotonic)
    subscription = hub.attach(subscribe(), PEER)
    hub.publish_round(closed_round(60))
    hub.close()
    first = await subscription.next_update(monotonic)
    second = await subscription.next_update(monotonic)
    assert (first.WhichOneof("update"), second.WhichOneof("update")) == ("price", "round")
    with pytest.raises(UnavailableError, match="shutting down"):
        await subscription.next_update(monotonic)
    with pytest.raises(UnavailableError):
        hub.attach(subscribe(), PEER)
    # Nothing more is offered after the close, so a stream always reaches its end.
    hub.publish_price(aggregate=answer(9.0))
    hub.publish_round(closed_round(120))
    assert not subscription.pending


async def test_a_waiting_subscriber_is_woken_by_a_publish() -> None:
    monotonic = FakeMonotonic()
    hub = make_hub(monotonic)
    subscription = hub.attach(subscribe(), PEER)
    await subscription.next_update(monotonic)
    waiting = asyncio.ensure_future(subscription.next_update(monotonic))
    await asyncio.sleep(0)
    assert not waiting.done()
    hub.publish_price(aggregate=answer(42.0))
    update = await asyncio.wait_for(waiting, 1)
    assert update.price.aggregated_price == 42.0


async def test_fan_out_is_immediate_after_a_quiet_interval_and_coalesced_within_it() -> None:
    monotonic = FakeMonotonic()
    hub = make_hub(monotonic, min_update_interval_seconds=0.05)
    subscription = hub.attach(subscribe(), PEER)
    subscription.take(monotonic())

    hub.publish_price(aggregate=answer(2.0))  # the first change goes out at once
    assert hub.fanouts == 1
    first = subscription.take(monotonic())
    assert first is not None
    assert first.price.aggregated_price == 2.0

    for price in (3.0, 4.0, 5.0):  # within the interval: coalesced, nothing sent yet
        hub.publish_price(aggregate=answer(price))
    assert hub.fanouts == 1
    assert subscription.take(monotonic()) is None
    waiting = asyncio.ensure_future(subscription.next_update(monotonic))
    newest = await asyncio.wait_for(waiting, 2)
    assert newest.price.aggregated_price == 5.0
    assert hub.fanouts == 2


async def test_a_round_close_sends_the_coalesced_price_before_it() -> None:
    monotonic = FakeMonotonic()
    hub = make_hub(monotonic, min_update_interval_seconds=30)
    subscription = hub.attach(subscribe(), PEER)
    subscription.take(monotonic())
    hub.publish_price(aggregate=answer(2.0))
    subscription.take(monotonic())
    hub.publish_price(aggregate=answer(3.0))  # coalesced: the next fan-out is 30 s away
    hub.publish_round(closed_round(60))
    kinds = []
    while (update := subscription.take(monotonic())) is not None:
        kinds.append(update.WhichOneof("update"))
    assert kinds == ["price", "round"]


# -- over real loopback streams ------------------------------------------------------------------


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    started = await start_harness(
        StreamingSettings(
            max_lag_seconds=1.0,
            max_subscribers=4,
            max_subscribers_per_peer=4,
            # Every publish fans out at once here; coalescing has tests of its own.
            min_update_interval_seconds=0,
            update_interval_per_subscriber_seconds=0,
        )
    )
    yield started
    started.hub.close()
    await started.server.stop(None)


async def wait_until(condition: Callable[[], object]) -> None:
    """Poll a condition the hub exposes no event for (test-only; bounded)."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - the hub's counters have no event to wait on
            await asyncio.sleep(0.01)


async def test_subscribe_prices_answers_the_current_state_at_once_then_each_change(
    harness: Harness,
) -> None:
    async with grpc.aio.insecure_channel(harness.target) as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        await stub.SubmitPrice(price_request(100_000.0))
        call = stub.SubscribePrices(oracle_pb2.SubscribeRequest())
        first = await call.read()
        assert isinstance(first, oracle_pb2.PriceUpdate)
        assert first.sequence == 1
        assert first.price.aggregated_price == 100_000.0

        await stub.SubmitPrice(price_request(102_000.0, source="coinbase", node_id="cb"))
        second = await call.read()
        assert isinstance(second, oracle_pb2.PriceUpdate)
        assert second.sequence == 2
        assert second.price.aggregated_price == 101_000.0
        assert second.price.data_points == 2
        call.cancel()

    await wait_until(lambda: harness.hub.open_streams == 0)


async def test_a_bad_filter_is_invalid_argument_over_the_wire(harness: Harness) -> None:
    async with grpc.aio.insecure_channel(harness.target) as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        call = stub.SubscribePrices(oracle_pb2.SubscribeRequest(source_filter="bitstamp"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "source_filter" in (refused.value.details() or "")


async def test_a_subscriber_that_never_reads_delays_no_one_and_is_dropped(
    harness: Harness,
) -> None:
    # The stalled client keeps its flow-control window small (no BDP growth), so the server's
    # writes to it block after ~64 KiB, as they would for any client that stops reading.
    stalled_options = [("grpc.http2.bdp_probe", 0)]
    fat = "x" * 2000  # ~2 KiB per update: the stalled window fills after a few dozen
    published = 300
    async with (
        grpc.aio.insecure_channel(harness.target, options=stalled_options) as stalled_channel,
        grpc.aio.insecure_channel(harness.target) as reader_channel,
    ):
        stalled = oracle_pb2_grpc.OracleServiceStub(stalled_channel).SubscribePrices(
            oracle_pb2.SubscribeRequest()
        )
        await stalled.initial_metadata()
        reader_stub = oracle_pb2_grpc.OracleServiceStub(reader_channel)
        reader = reader_stub.SubscribePrices(oracle_pb2.SubscribeRequest())
        received: list[oracle_pb2.PriceUpdate] = []

        async def read_all() -> None:
            async for update in reader:
                received.append(update)  # noqa: PERF401 - read while the test looks at it

        reading = asyncio.ensure_future(read_all())
        await wait_until(lambda: harness.hub.attached == 2 and received)

        for index in range(published):
            harness.hub.publish_price(
                aggregate=oracle_pb2.GetPriceResponse(aggregated_price=index, message=fat)
            )
            await asyncio.sleep(0.002)
        # Submissions still answer while the stalled subscriber blocks its own writes.
        for minute_index in range(20):
            response = await reader_stub.SubmitPrice(
                price_request(100_000.0 + minute_index, minute=1_794_999_960 - 60 * minute_index)
            )
            assert response.success

        # The reader sees the newest price, in increasing sequence, without waiting for anyone.
        newest = 100_000.0 + 19
        await wait_until(lambda: received[-1].price.aggregated_price == newest)
        sequences = [update.sequence for update in received]
        assert sequences == sorted(set(sequences))

        # The stalled one is dropped once an update has waited past max_lag_seconds.
        await wait_until(lambda: harness.hub.attached == 1)
        # Its stream still counts until its client reads (or goes away) ...
        assert harness.hub.open_streams == 2
        # ... and when it reads, it gets what was already on the wire, then the reason.
        with pytest.raises(grpc.aio.AioRpcError) as dropped:
            async for _update in stalled:
                pass
        assert dropped.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = dropped.value.details() or ""
        assert "max_lag_seconds" in details
        assert "GetPriceHistory" in details
        await wait_until(lambda: harness.hub.open_streams == 1)
        reader.cancel()
        reading.cancel()


async def test_past_the_subscriber_limit_the_answer_is_resource_exhausted(
    harness: Harness,
) -> None:
    async with grpc.aio.insecure_channel(harness.target) as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        calls = [stub.SubscribePrices(oracle_pb2.SubscribeRequest()) for _ in range(4)]
        for call in calls:
            await call.read()
        refused_call = stub.SubscribePrices(oracle_pb2.SubscribeRequest())
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await refused_call.read()
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_subscribers" in (refused.value.details() or "")

        calls[0].cancel()
        await wait_until(lambda: harness.hub.open_streams == 3)
        again = stub.SubscribePrices(oracle_pb2.SubscribeRequest())
        assert isinstance(await again.read(), oracle_pb2.PriceUpdate)
        for call in (*calls, again):
            call.cancel()


async def test_on_shutdown_every_stream_ends_with_a_clean_status_before_the_server_stops(
    harness: Harness,
) -> None:
    async with grpc.aio.insecure_channel(harness.target) as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        calls = [
            stub.SubscribePrices(oracle_pb2.SubscribeRequest(source_filter=source))
            for source in ("", "kraken", "binance")
        ]
        for call in calls:
            await call.read()
        harness.hub.publish_round(closed_round(1_794_999_960))
        harness.hub.close()
        async with asyncio.timeout(5):
            await harness.hub.wait_closed()
        await harness.server.stop(5)

        endings = []
        for call in calls:
            updates = [update async for update in _until_status(call)]
            endings.append(([u.WhichOneof("update") for u in updates], await call.code()))
        details = await calls[0].details()
    # The aggregate subscriber got the round published before the close; all ended UNAVAILABLE.
    assert endings == [
        (["round"], grpc.StatusCode.UNAVAILABLE),
        ([], grpc.StatusCode.UNAVAILABLE),
        ([], grpc.StatusCode.UNAVAILABLE),
    ]
    assert "shutting down" in details


async def _until_status(
    call: grpc.aio.UnaryStreamCall[oracle_pb2.SubscribeRequest, oracle_pb2.PriceUpdate],
) -> AsyncIterator[oracle_pb2.PriceUpdate]:
    # read(), not `async for`: these calls already used read(), and the two styles cannot mix.
    while True:
        try:
            update = await call.read()
        except grpc.aio.AioRpcError:
            return
        if update is grpc.aio.EOF:
            return
        assert isinstance(update, oracle_pb2.PriceUpdate)
        yield update
