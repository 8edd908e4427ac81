"""The live feed: upgrades from polling to the subscription, and slow listeners cost nothing."""

from __future__ import annotations

import time
from decimal import Decimal

from common.proto import oracle_pb2
from tests.explorer.conftest import System, close_system, make_system, populated_fake, wait_for
from tests.explorer.fake_aggregator import make_round


async def test_an_upgraded_aggregator_is_subscribed_to_without_a_restart() -> None:
    now = time.time()
    fake = populated_fake(now, subscribe=False)
    system = await make_system(fake, now, resubscribe_interval=1.0)
    try:
        await wait_for(lambda: system.explorer.feed.state.mode == "poll")
        fake.implemented["SubscribePrices"] = True
        await wait_for(lambda: system.explorer.feed.state.mode == "subscribe", within=5)
        assert fake.subscribers  # a real stream is open now
    finally:
        await close_system(system)


async def test_a_listener_that_never_reads_holds_only_the_latest(system: System) -> None:
    feed = system.explorer.feed
    stuck = feed.listen()  # never read
    awake = feed.listen()
    start = system.fake.price.aggregate_minute
    for index in range(1, 101):
        minute = start + index * 60
        prices = {"binance": Decimal(1000 + index), "kraken": Decimal(1000 + index)}
        system.fake.close_round(make_round(minute, prices), time.time())
    last = start + 100 * 60
    await wait_for(
        lambda: feed.state.price is not None and feed.state.price.aggregate_minute == last
    )
    # Conflation: one "price changed" flag and at most 16 rounds, however many updates passed.
    assert stuck.price_changed is True
    assert len(stuck.rounds) == 16
    assert stuck.rounds[-1].minute == last
    assert len(awake.rounds) == 16
    feed.unlisten(stuck)
    feed.unlisten(awake)
    assert feed.listener_count == 0


async def test_health_checks_that_change_nothing_wake_no_page(system: System) -> None:
    feed = system.explorer.feed
    page = feed.listen()
    page.price_changed = False
    page.wake.clear()
    checks = system.fake.calls["HealthCheck"]
    await wait_for(lambda: system.fake.calls["HealthCheck"] >= checks + 2)
    assert page.price_changed is False
    assert not page.wake.is_set()
    system.fake.set_price(oracle_pb2.GetPriceResponse(success=False, message="changed"))
    await wait_for(lambda: page.price_changed)
    feed.unlisten(page)
