"""Shared fixtures for aggregator tests: a controllable clock and observation builders."""

from decimal import Decimal

import pytest

from aggregator.validation import Observation

# A fixed minute well inside every time window the tests use.
T0 = 1_795_000_000 // 60 * 60


class FakeClock:
    """The injected clock: tests move time by assignment, never by sleeping."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + 65)


def observation(
    exchange: str = "binance",
    price: str = "100000",
    minute: int = T0,
    node_id: str | None = None,
    quote: str = "USD",
) -> Observation:
    return Observation(
        exchange, node_id or f"{exchange}-node", minute, Decimal(price), quote, False
    )
