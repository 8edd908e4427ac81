"""Test doubles for the node: a fake clock whose sleep advances time, and a fake exchange.

The fake exchange answers all three venues' real paths in their real formats (Binance and Kraken
include the forming minute as the last row, Coinbase can lag), with closes that are a pure
function of (venue, minute), so a test can predict exactly what a node must submit.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import httpx

from common.timeutil import MINUTE, minute_floor

FIXTURES = Path(__file__).parents[1] / "fixtures" / "exchanges"

# The reference scenario: 2025-01-20T14:35:27Z; 14:34 is the newest closed minute.
SCENARIO_NOW = 1737383727.0
NEWEST_CLOSED = 1737383640
FORMING = 1737383700


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class FakeClock:
    """Wall-clock seconds under test control; `sleep` advances them instead of waiting."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


_BASE = {
    "binance": Decimal("100000.00"),
    "coinbase": Decimal("100010.00"),
    "kraken": Decimal("99990.0"),
}


def fake_close(venue: str, minute: int) -> Decimal:
    """Deterministic close: the venue's base plus a few dollars that vary with the minute."""
    return _BASE[venue] + Decimal((minute // MINUTE) % 97) + Decimal("0.25")


class FakeExchange:
    """An httpx handler serving /api/v3/klines, /products/<p>/candles and /0/public/OHLC.

    `coinbase_lag` minutes are withheld from Coinbase answers (its publication delay); `down`
    makes every venue answer 503; `simulated` adds the simulator's `X-Oracle-Simulated: 1`.
    """

    def __init__(self, clock: FakeClock, *, simulated: bool = False) -> None:
        self.clock = clock
        self.simulated = simulated
        self.coinbase_lag = 0
        self.down = False
        self.requests: list[httpx.Request] = []

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        headers = {"X-Oracle-Simulated": "1"} if self.simulated else {}
        if self.down:
            return httpx.Response(503, json={"message": "down"}, headers=headers)
        forming = minute_floor(self.clock())
        path = request.url.path
        if path == "/api/v3/klines":
            body: object = [
                self._binance_row(m) for m in range(forming - 4 * MINUTE, forming + 1, MINUTE)
            ]
        elif path.startswith("/products/") and path.endswith("/candles"):
            newest = forming - self.coinbase_lag * MINUTE
            body = [self._coinbase_row(m) for m in range(newest, forming - 12 * MINUTE, -MINUTE)]
        elif path == "/0/public/OHLC":
            rows = [self._kraken_row(m) for m in range(forming - 4 * MINUTE, forming + 1, MINUTE)]
            body = {"error": [], "result": {"XXBTZUSD": rows, "last": forming - MINUTE}}
        else:
            return httpx.Response(404, json={"message": "NotFound"}, headers=headers)
        return httpx.Response(200, content=json.dumps(body).encode(), headers=headers)

    @staticmethod
    def _ohlc(venue: str, minute: int) -> tuple[str, str, str, str]:
        close = fake_close(venue, minute)
        return (str(close - 5), str(close + 10), str(close - 20), str(close))

    def _binance_row(self, minute: int) -> list[object]:
        o, h, low, c = self._ohlc("binance", minute)
        return [
            minute * 1000,
            o,
            h,
            low,
            c,
            "1.0",
            minute * 1000 + 59999,
            "1.0",
            10,
            "0.5",
            "0.5",
            "0",
        ]

    def _coinbase_row(self, minute: int) -> list[object]:
        o, h, low, c = self._ohlc("coinbase", minute)
        # Coinbase sends JSON numbers; json.dumps of a float keeps these short decimals exact.
        return [minute, float(low), float(h), float(o), float(c), 1.5]

    def _kraken_row(self, minute: int) -> list[object]:
        o, h, low, c = self._ohlc("kraken", minute)
        return [minute, o, h, low, c, c, "1.0", 12]
