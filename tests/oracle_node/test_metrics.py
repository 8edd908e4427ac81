"""The node's metrics and /healthz: "running but failing" is told apart from "down"."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from common.metrics import MetricsServer
from oracle_node.metrics import (
    Event,
    NodeHealthState,
    NodeMetrics,
    NodeMetricsSettings,
    health_answer,
)
from tests.metrics_helpers import scrape, value

START = 1_795_000_000.0
MINUTE = 1_794_999_960


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics(clock: Clock) -> NodeMetrics:
    return NodeMetrics(
        exchange="kraken",
        node_id="oracle-node-3",
        simulated=True,
        settings=NodeMetricsSettings(port=0),
        clock=clock,
    )


@pytest.fixture
def url(metrics: NodeMetrics) -> Iterator[str]:
    with MetricsServer(metrics.registry, metrics.settings, health=metrics.health) as server:
        yield server.url


def answer(state: NodeHealthState, now: float) -> tuple[int, dict[str, object]]:
    return health_answer(
        state, now, stale_after=180, exchange="kraken", node_id="n", simulated=False
    )


def test_the_health_rule() -> None:
    fresh = NodeHealthState(started_at=START)
    assert answer(fresh, START + 10)[0] == 200
    assert answer(fresh, START + 10)[1]["status"] == "starting"
    assert answer(fresh, START + 181)[0] == 503

    accepted = NodeHealthState(started_at=START, last_accepted=Event(START + 60, MINUTE))
    assert answer(accepted, START + 200)[1]["status"] == "ok"
    assert answer(accepted, START + 240)[0] == 200
    status, body = answer(accepted, START + 241)
    assert (status, body["status"]) == (503, "failing")
    assert "for 181 s" in str(body["reason"])

    fetch_failing = NodeHealthState(
        started_at=START,
        last_fetch=Event(START + 300, MINUTE, "timeout"),
        last_fetch_ok=False,
    )
    assert "fetching candles" in str(answer(fetch_failing, START + 400)[1]["reason"])
    delivery_failing = NodeHealthState(
        started_at=START, last_fetch=Event(START + 300), last_fetch_ok=True, buffer_depth=4
    )
    assert "4 minute(s) buffered" in str(answer(delivery_failing, START + 400)[1]["reason"])


def test_healthz_over_http_follows_the_node_from_starting_to_ok_to_failing(
    metrics: NodeMetrics, url: str, clock: Clock
) -> None:
    starting = httpx.get(f"{url}/healthz")
    assert starting.status_code == 200
    assert starting.json()["status"] == "starting"
    assert starting.json()["simulated"] is True

    clock.now = START + 61
    metrics.record_fetch(
        outcome="ok", seconds=0.2, start_skew=0.01, finish_skew=0.21, minute=MINUTE, now=clock.now
    )
    metrics.record_submission(outcome="accepted", seconds=0.003, minute=MINUTE, now=clock.now)
    ok = httpx.get(f"{url}/healthz").json()
    assert ok["status"] == "ok"
    assert ok["last_accepted_submission"]["minute"] == MINUTE
    assert ok["last_successful_fetch"]["at"] == START + 61

    # The aggregator goes away: fetching still works, delivery does not.
    for step in range(1, 5):
        clock.now = START + 61 + 60 * step
        metrics.record_fetch(
            outcome="ok", seconds=0.2, start_skew=0.0, finish_skew=0.2, minute=MINUTE, now=clock.now
        )
        metrics.record_submission(
            outcome="unreachable",
            seconds=5.0,
            minute=MINUTE + 60 * step,
            now=clock.now,
            error="Cannot connect to gRPC Aggregator\nat 127.0.0.1:50051",
        )
        metrics.set_buffer_depth(step)
    failing = httpx.get(f"{url}/healthz")
    assert failing.status_code == 503
    body = failing.json()
    assert body["status"] == "failing"
    assert "delivery to the aggregator fails (4 minute(s) buffered)" in body["reason"]
    assert body["last_error"]["detail"] == "Cannot connect to gRPC Aggregator at 127.0.0.1:50051"
    assert body["last_fetch_ok"] is True


def test_node_counters_and_gauges_move_with_events(
    metrics: NodeMetrics, url: str, clock: Clock
) -> None:
    metrics.record_retry("rate_limit")
    metrics.record_retry("rate_limit")
    metrics.record_retry("something odd")
    metrics.record_fetch(
        outcome="ok", seconds=1.5, start_skew=0.004, finish_skew=1.504, minute=MINUTE, now=START
    )
    metrics.record_fetch(
        outcome="skipped", seconds=45, start_skew=0, finish_skew=45, minute=MINUTE + 60, now=START
    )
    metrics.record_submission(outcome="accepted", seconds=0.002, minute=MINUTE, now=START + 1)
    metrics.record_submission(outcome="rejected", seconds=0.002, minute=MINUTE, now=START + 2)
    metrics.set_buffer_depth(3)
    samples = scrape(url)
    assert value(samples, "oracle_node_retries_total", exchange="kraken", cause="rate_limit") == 2
    assert value(samples, "oracle_node_retries_total", exchange="kraken", cause="other") == 1
    assert value(samples, "oracle_node_fetches_total", exchange="kraken", outcome="skipped") == 1
    assert (
        value(
            samples,
            "oracle_node_fetch_skew_seconds_bucket",
            exchange="kraken",
            phase="start",
            le="0.005",
        )
        == 2
    )
    assert (
        value(samples, "oracle_node_fetch_duration_seconds_count", exchange="kraken", outcome="ok")
        == 1
    )
    assert (
        value(samples, "oracle_node_last_fetch_success_timestamp_seconds", exchange="kraken")
        == START
    )
    assert (
        value(samples, "oracle_node_last_submit_success_timestamp_seconds", exchange="kraken")
        == START + 1
    )
    assert (
        value(samples, "oracle_node_submissions_total", exchange="kraken", outcome="rejected") == 1
    )
    assert value(samples, "oracle_node_buffer_depth", exchange="kraken") == 3
    info = value(
        samples,
        "oracle_node_info",
        exchange="kraken",
        node_id="oracle-node-3",
        simulated="true",
        transport="unary",
    )
    assert info == 1
