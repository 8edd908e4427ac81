"""Minute boundaries of the wall clock: when to collect and which minute has just closed.

All nodes collect at XX:00 (plus an optional, configured offset of a few seconds) so their
observations line up; with `interval` = 120 a node collects every second boundary. The clock and
the sleep are injected, so tests run a whole hour of boundaries in milliseconds.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from common.timeutil import MINUTE, Clock, system_clock

Sleep = Callable[[float], Awaitable[None]]

# Real sleeps may wake a hair early; the loop below re-checks the clock, this caps each nap so a
# wall-clock step (NTP) is noticed within a few seconds.
_MAX_NAP = 5.0


@dataclass(frozen=True)
class Tick:
    """One collection: `boundary` is the XX:00 that was reached, `minute` the candle that closed."""

    boundary: int
    minute: int
    due: float

    def skew(self, at: float) -> float:
        """Seconds `at` is after the boundary: how late a fetch started or finished."""
        return at - self.boundary


class MinuteScheduler:
    """Waits for the next collection boundary, interruptibly."""

    def __init__(
        self,
        interval: int = MINUTE,
        offset: float = 0.0,
        *,
        clock: Clock = system_clock,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if interval <= 0 or interval % MINUTE:
            raise ValueError(f"interval must be an integer multiple of 60, got {interval}")
        self._interval = interval
        self._offset = offset
        self._clock = clock
        self._sleep = sleep

    def next_tick(self, now: float) -> Tick:
        """The first collection strictly after `now` (a boundary reached exactly counts as next)."""
        boundary = math.floor((now - self._offset) / self._interval) * self._interval
        boundary += self._interval
        return Tick(boundary=boundary, minute=boundary - MINUTE, due=boundary + self._offset)

    async def wait(self, stop: asyncio.Event | None = None) -> Tick | None:
        """Sleep until the next collection is due; None if `stop` was set first."""
        tick = self.next_tick(self._clock())
        while (remaining := tick.due - self._clock()) > 0:
            if stop is not None and stop.is_set():
                return None
            nap = asyncio.ensure_future(self._sleep(min(remaining, _MAX_NAP)))
            if stop is None:
                await nap
                continue
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({nap, stopped}, return_when=asyncio.FIRST_COMPLETED)
            for task in (nap, stopped):
                task.cancel()
        if stop is not None and stop.is_set():
            return None
        return tick
