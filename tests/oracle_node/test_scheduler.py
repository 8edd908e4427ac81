"""Minute boundaries with a fake clock: collection at XX:00 for the minute that just closed."""

from __future__ import annotations

import asyncio

import pytest

from oracle_node.scheduler import MinuteScheduler
from tests.oracle_node.fakes import FakeClock

T0 = 1737383640  # 2025-01-20T14:34:00Z


def test_next_tick_is_the_next_boundary_for_the_minute_just_closed() -> None:
    tick = MinuteScheduler().next_tick(T0 + 27.4)
    assert tick.boundary == T0 + 60
    assert tick.minute == T0
    assert tick.due == T0 + 60


def test_exactly_on_a_boundary_waits_for_the_next_one() -> None:
    assert MinuteScheduler().next_tick(T0).boundary == T0 + 60


def test_offset_delays_collection_but_not_the_minute() -> None:
    tick = MinuteScheduler(offset=2.0).next_tick(T0 + 30)
    assert (tick.minute, tick.due) == (T0, T0 + 62)
    # Between XX:00 and XX:02 the collection for the minute just closed is still ahead.
    assert MinuteScheduler(offset=2.0).next_tick(T0 + 61).minute == T0


def test_interval_of_two_minutes_collects_every_second_boundary() -> None:
    scheduler = MinuteScheduler(interval=120)
    assert scheduler.next_tick(T0 + 1).boundary % 120 == 0


@pytest.mark.parametrize("interval", [0, -60, 90, 61])
def test_interval_must_be_a_positive_multiple_of_60(interval: int) -> None:
    with pytest.raises(ValueError, match="multiple of 60"):
        MinuteScheduler(interval=interval)


async def test_wait_returns_at_the_boundary_instantly_with_a_fake_clock() -> None:
    clock = FakeClock(T0 + 12.5)
    scheduler = MinuteScheduler(clock=clock, sleep=clock.sleep)
    ticks = []
    for _ in range(60):  # an hour of boundaries
        tick = await scheduler.wait()
        assert tick is not None
        assert clock.now == tick.due
        ticks.append(tick.minute)
    assert ticks == [T0 + 60 * i for i in range(60)]


async def test_stop_interrupts_the_wait() -> None:
    # A fake clock a second before the boundary, and a sleep that never ends on its own: only
    # `stop` can end the wait, so it must return None, never a Tick (no race with the real clock).
    clock = FakeClock(T0 + 59.0)
    stop = asyncio.Event()
    napping = asyncio.Event()

    async def sleep_until_stopped(_seconds: float) -> None:
        napping.set()
        await stop.wait()

    scheduler = MinuteScheduler(clock=clock, sleep=sleep_until_stopped)
    waiting = asyncio.ensure_future(scheduler.wait(stop))
    await asyncio.wait_for(napping.wait(), timeout=2)
    stop.set()
    assert await asyncio.wait_for(waiting, timeout=2) is None
    assert clock.now == T0 + 59.0
