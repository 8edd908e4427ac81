"""Minute arithmetic and an injectable clock, so no test ever sleeps through a real minute.

A "minute" is the open time of a 1-minute candle in unix seconds (a multiple of 60); the candle
closes at minute + 60.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Final, Protocol

MINUTE: Final = 60


class Clock(Protocol):
    """Wall-clock seconds; the real one is `time.time`, tests pass a fake."""

    def __call__(self) -> float: ...


def system_clock() -> float:
    """The real wall clock (UTC unix seconds)."""
    return time.time()


def minute_floor(unix_seconds: float) -> int:
    """The open time of the minute containing `unix_seconds`."""
    return int(unix_seconds // MINUTE) * MINUTE


def format_minute(minute: int) -> str:
    """`2026-11-25T10:41Z`: short, unambiguous and sortable, for logs and messages."""
    return datetime.fromtimestamp(minute, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")
