"""Realistic SubmitPrice traffic that passes the aggregator's validation without duplicates.

A real node reports each closed candle once; a benchmark that resubmitted the same (node, minute)
would mostly measure the cheap idempotent-duplicate path. So each stream owns a set of node ids
spread over the three exchanges and gives every node each closed candle at most once, walking the
last three closed minutes (open times `now - 180` to `now - 60`: closed, at most two minutes late,
well inside the contract's 10-minute lateness even after the call's own latency on the
accelerated clock). On the real clock that budget is `nodes x 3` submissions plus `nodes` per
minute of wall time, and the aggregator's node table is capped (1024), so at thousands of calls
per second it runs out within a second; the stream then resubmits the same (node, minute, price),
an idempotent duplicate, and the report shows the duplicate share.

`ServerClock` with `speed > 1` is the accelerated clock: the aggregator is started with the same
clock, so candle minutes advance fast enough for every submission to be a new report (at 6000x,
each node has a new closed candle every 10 ms) and a million submissions cover many days of
candle minutes, which the bounded-memory check needs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from common.exchanges import EXCHANGES
from common.proto import oracle_pb2
from common.timeutil import MINUTE, minute_floor

SYMBOLS = {"binance": "BTCUSDT", "coinbase": "BTC-USD", "kraken": "XBTUSD"}
EXCHANGE_OFFSET = {"binance": 0.0, "coinbase": 12.5, "kraken": -7.25}
OLDEST_OFFSET = 3 * MINUTE  # candle open times down to now - 180 s (closed 2 minutes ago)
NEWEST_OFFSET = -MINUTE  # ... and up to now - 60 s: the newest closed candle


class CandleClock(Protocol):
    """What traffic needs of a clock: the aggregator's idea of now, in unix seconds."""

    def now(self) -> float: ...


@dataclass(frozen=True)
class ServerClock:
    """The aggregator's idea of now: real time, or real time sped up `speed` times from `t0`."""

    t0: float
    speed: float = 1.0

    def now(self) -> float:
        real = time.time()
        if self.speed == 1.0:
            return real
        return self.t0 + (real - self.t0) * self.speed


def candle_close(exchange: str, minute: int, node_index: int) -> float:
    """A plausible BTC close, a pure function of its inputs so a retry is an idempotent duplicate.

    Exchanges differ by a few dollars and nodes of one exchange by cents, as real feeds do.
    """
    drift = ((minute // MINUTE) % 997) * 0.37
    return round(100_000.0 + drift + EXCHANGE_OFFSET[exchange] + (node_index % 7) * 0.01, 2)


class SubmitStream:
    """One in-flight slot's sequence of unique, valid PriceRequests."""

    def __init__(self, prefix: str, nodes: int, clock: CandleClock, *, simulated: bool) -> None:
        if nodes < 1:
            raise ValueError("a stream needs at least one node")
        self._node_ids = [f"{prefix}-{i}" for i in range(nodes)]
        self._exchanges = [EXCHANGES[i % len(EXCHANGES)] for i in range(nodes)]
        self._last_minute = [0] * nodes
        self._next_node = 0
        self._clock = clock
        self._simulated = simulated
        self.resubmissions = 0

    def next_request(self) -> oracle_pb2.PriceRequest:
        """The next new report, or an idempotent resubmission once the budget is used up."""
        now_minute = minute_floor(self._clock.now())
        oldest = now_minute - OLDEST_OFFSET
        newest = now_minute + NEWEST_OFFSET
        count = len(self._node_ids)
        for _ in range(count):
            index = self._next_node
            minute = max(self._last_minute[index] + MINUTE, oldest)
            if minute <= newest:
                self._last_minute[index] = minute
                # Walk the minutes of one node before moving on: consecutive calls then spread
                # over all the accepted minutes instead of piling onto one.
                if minute + MINUTE > newest:
                    self._next_node = (index + 1) % count
                return self._request(index, minute)
            self._next_node = (index + 1) % count
        # Every node has reported every accepted minute: resend a report the aggregator holds.
        self.resubmissions += 1
        index = self._next_node
        self._next_node = (index + 1) % count
        return self._request(index, self._last_minute[index])

    def _request(self, index: int, minute: int) -> oracle_pb2.PriceRequest:
        exchange = self._exchanges[index]
        return oracle_pb2.PriceRequest(
            price=candle_close(exchange, minute, index),
            timestamp=minute,
            source=exchange,
            node_id=self._node_ids[index],
            symbol=SYMBOLS[exchange],
            simulated=self._simulated,
        )


def fresh_seed_requests(clock: CandleClock, *, simulated: bool) -> list[oracle_pb2.PriceRequest]:
    """Three nodes per exchange for the last two closed minutes: a fresh aggregate to read."""
    closed = minute_floor(clock.now()) - MINUTE
    requests = []
    for minute in (closed - MINUTE, closed):
        for index, exchange in enumerate(EXCHANGES * 3):
            requests.append(
                oracle_pb2.PriceRequest(
                    price=candle_close(exchange, minute, index),
                    timestamp=minute,
                    source=exchange,
                    node_id=f"seed-{exchange}-{index // len(EXCHANGES)}",
                    symbol=SYMBOLS[exchange],
                    simulated=simulated,
                )
            )
    return requests
