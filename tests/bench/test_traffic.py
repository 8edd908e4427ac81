"""The load's SubmitPrice traffic must pass the real aggregator's validation and not repeat itself.

Checked against the aggregator's own `validate_submission`, so a change in the contract's time
window shows up here rather than as failed calls in a benchmark run.
"""

from collections import Counter

from bench.traffic import ServerClock, SubmitStream, fresh_seed_requests

from aggregator.config import AggregatorConfig
from aggregator.validation import validate_submission

NOW = 1_795_000_000.0


class FrozenClock(ServerClock):
    """A ServerClock stuck at one instant (tests never wait for real minutes)."""

    def now(self) -> float:
        return self.t0


def test_stream_sends_new_valid_reports_over_all_exchanges_until_its_budget_is_used() -> None:
    stream = SubmitStream("bench-s0", 30, FrozenClock(NOW), simulated=False)
    config = AggregatorConfig()
    budget = 30 * 3  # 30 nodes x the last 3 closed minutes (now - 180 .. now - 60)
    requests = [stream.next_request() for _ in range(budget)]
    keys = [(r.node_id, r.timestamp) for r in requests]
    assert len(set(keys)) == budget
    assert stream.resubmissions == 0
    for request in requests:
        validate_submission(request, config, NOW)  # raises on anything the aggregator refuses
    assert Counter(r.source for r in requests) == {"binance": 30, "coinbase": 30, "kraken": 30}

    again = stream.next_request()
    assert stream.resubmissions == 1
    assert (again.node_id, again.timestamp) in set(keys)
    assert again.price == next(
        r.price for r in requests if (r.node_id, r.timestamp) == (again.node_id, again.timestamp)
    )


class SteppingClock:
    """Candle time that moves 20 s per reading, as the accelerated clock does between calls."""

    def __init__(self, t0: float) -> None:
        self.current = t0 - 20.0

    def now(self) -> float:
        self.current += 20.0
        return self.current


def test_advancing_minutes_give_every_node_new_reports_without_running_out() -> None:
    clock = SteppingClock(NOW)
    stream = SubmitStream("bench-s0", 3, clock, simulated=True)
    config = AggregatorConfig(simulate=True)
    requests = []
    for _ in range(200):
        request = stream.next_request()
        validate_submission(request, config, clock.current)
        requests.append(request)
    assert len({(r.node_id, r.timestamp) for r in requests}) == 200
    assert stream.resubmissions == 0
    assert all(r.simulated for r in requests)


def test_seed_gives_three_nodes_per_exchange_for_the_last_closed_minutes() -> None:
    requests = fresh_seed_requests(FrozenClock(NOW), simulated=False)
    config = AggregatorConfig()
    for request in requests:
        validate_submission(request, config, NOW)
    assert Counter(r.source for r in requests) == {"binance": 6, "coinbase": 6, "kraken": 6}
    assert len({(r.node_id, r.source, r.timestamp) for r in requests}) == 18
