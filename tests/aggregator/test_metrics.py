"""The aggregator's metrics: scraped over loopback HTTP, they move with each recorded event."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from decimal import Decimal

import grpc
import pytest

from aggregator.metrics import AggregatorMetrics
from aggregator.streaming_settings import StreamingSettings
from aggregator.subscriptions import SubscriptionHub
from common.exchanges import EXCHANGES
from common.metrics import MetricsServer, MetricsSettings
from common.proto import oracle_pb2
from tests.metrics_helpers import scrape, value

MINUTE = 1_794_999_960


class Clock:
    def __init__(self) -> None:
        self.now = MINUTE + 75.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics(clock: Clock) -> AggregatorMetrics:
    return AggregatorMetrics(exchanges=EXCHANGES, simulated=True, version="9.9.9", clock=clock)


@pytest.fixture
def url(metrics: AggregatorMetrics) -> Iterator[str]:
    with MetricsServer(metrics.registry, MetricsSettings(port=0)) as server:
        yield server.url


def test_submission_counters_move_with_each_submission(
    metrics: AggregatorMetrics, url: str
) -> None:
    metrics.record_submission("kraken", "counted")
    metrics.record_submission("kraken", "counted", transport="stream")
    metrics.record_submission("kraken", "duplicate")
    before = scrape(url)
    metrics.record_submission("kraken", "counted")
    metrics.record_refusal("price")
    metrics.record_refusal("price")
    after = scrape(url)

    name = "oracle_aggregator_submissions_total"
    labels = {"exchange": "kraken", "outcome": "counted", "transport": "unary"}
    assert value(before, name, **labels) == 1
    assert value(after, name, **labels) == 2
    assert value(after, name, exchange="kraken", outcome="counted", transport="stream") == 1
    assert value(after, name, exchange="kraken", outcome="duplicate", transport="unary") == 1
    assert value(after, "oracle_aggregator_refusals_total", reason="price") == 2


def test_hostile_label_values_cannot_grow_the_series(metrics: AggregatorMetrics, url: str) -> None:
    for index in range(500):
        metrics.record_submission(f"exchange-{index}", "counted")
        metrics.record_refusal(f"Reason {index} {'x' * 200}")
    samples = scrape(url)
    exchanges = {
        dict(labels)["exchange"]
        for name, labels in samples
        if name == "oracle_aggregator_submissions_total"
    }
    assert exchanges == {"other"}
    reasons = {
        dict(labels)["reason"]
        for name, labels in samples
        if name == "oracle_aggregator_refusals_total"
    }
    assert len(reasons) <= 49
    assert "other" in reasons
    assert all(len(reason) <= 40 for reason in reasons)


def test_the_live_aggregate_is_labelled_simulated_and_its_status_is_one_hot(
    metrics: AggregatorMetrics, url: str, clock: Clock
) -> None:
    empty = scrape(url)
    assert math.isnan(value(empty, "oracle_aggregator_price_usd", simulated="true"))
    assert value(empty, "oracle_aggregator_status", status="unknown") == 1
    assert math.isnan(value(empty, "oracle_aggregator_result_age_seconds"))

    metrics.set_aggregate(
        price=Decimal("100123.45"),
        confidence=Decimal("12.5"),
        status=oracle_pb2.PRICE_STATUS_DEGRADED,
        minute=MINUTE,
        inputs={"kraken": Decimal("100123.45")},
    )
    metrics.set_active_nodes(2)
    samples = scrape(url)
    assert value(samples, "oracle_aggregator_price_usd", simulated="true") == 100123.45
    assert value(samples, "oracle_aggregator_confidence_usd", simulated="true") == 12.5
    statuses = {
        status: value(samples, "oracle_aggregator_status", status=status)
        for status in ("ok", "degraded", "unknown")
    }
    assert statuses == {"ok": 0, "degraded": 1, "unknown": 0}
    assert value(samples, "oracle_aggregator_active_nodes") == 2
    assert value(samples, "oracle_aggregator_aggregate_minute_timestamp_seconds") == MINUTE
    assert value(samples, "oracle_aggregator_result_age_seconds") == 15
    kraken = value(
        samples, "oracle_aggregator_input_price_usd", exchange="kraken", simulated="true"
    )
    assert kraken == 100123.45
    assert math.isnan(
        value(samples, "oracle_aggregator_input_price_usd", exchange="binance", simulated="true")
    )
    info = value(samples, "oracle_aggregator_info", version="9.9.9", simulated="true")
    assert info == 1

    clock.now += 100  # the age grows with time alone, between events
    assert value(scrape(url), "oracle_aggregator_result_age_seconds") == 115


def test_round_close_delay_is_measured_from_the_candle_close(
    metrics: AggregatorMetrics, url: str
) -> None:
    metrics.record_round_closed(
        minute=MINUTE,
        closed_at=MINUTE + 60 + 0.3,
        status=oracle_pb2.PRICE_STATUS_OK,
        close_reason=oracle_pb2.ROUND_CLOSE_REASON_ALL_REPORTED,
    )
    metrics.record_round_closed(
        minute=MINUTE + 60,
        closed_at=MINUTE + 120 + 45.01,
        status=oracle_pb2.PRICE_STATUS_DEGRADED,
        close_reason=oracle_pb2.ROUND_CLOSE_REASON_DEADLINE,
    )
    samples = scrape(url)
    histogram = "oracle_aggregator_round_close_delay_seconds"
    assert value(samples, f"{histogram}_bucket", close_reason="all_reported", le="0.5") == 1
    assert value(samples, f"{histogram}_bucket", close_reason="all_reported", le="0.25") == 0
    assert value(samples, f"{histogram}_bucket", close_reason="deadline", le="45.0") == 0
    assert value(samples, f"{histogram}_bucket", close_reason="deadline", le="50.0") == 1
    assert (
        value(
            samples,
            "oracle_aggregator_rounds_closed_total",
            status="degraded",
            close_reason="deadline",
        )
        == 1
    )


def test_rpc_timing_records_the_status_code(metrics: AggregatorMetrics, url: str) -> None:
    with metrics.time_rpc("SubmitPrice"):
        pass
    with metrics.time_rpc("SubmitPrice") as timer:
        timer.code = grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(RuntimeError), metrics.time_rpc("GetAggregatedPrice"):
        raise RuntimeError("bug")
    with pytest.raises(asyncio.CancelledError), metrics.time_rpc("GetRound"):
        raise asyncio.CancelledError
    metrics.observe_rpc("NoSuchMethod", grpc.StatusCode.OK, 0.001)
    samples = scrape(url)
    count = "oracle_aggregator_rpc_duration_seconds_count"
    assert value(samples, count, method="SubmitPrice", code="OK") == 1
    assert value(samples, count, method="SubmitPrice", code="INVALID_ARGUMENT") == 1
    assert value(samples, count, method="GetAggregatedPrice", code="INTERNAL") == 1
    assert value(samples, count, method="GetRound", code="CANCELLED") == 1
    assert value(samples, count, method="other", code="OK") == 1


def test_the_hub_reports_subscribers_and_drops_through_the_metrics(
    metrics: AggregatorMetrics, url: str
) -> None:
    hub = SubscriptionHub(
        StreamingSettings(round_queue=1),
        snapshot=lambda source: oracle_pb2.GetPriceResponse(),
        exchanges=EXCHANGES,
        observer=metrics,
    )
    hub.attach(oracle_pb2.SubscribeRequest(), "ipv4:127.0.0.1:1")
    hub.attach(oracle_pb2.SubscribeRequest(), "ipv4:127.0.0.1:2")
    assert value(scrape(url), "oracle_aggregator_subscribers") == 2
    hub.publish_round(oracle_pb2.Round(minute=MINUTE))
    hub.publish_round(oracle_pb2.Round(minute=MINUTE + 60))  # both queues (of 1) overflow
    samples = scrape(url)
    assert value(samples, "oracle_aggregator_subscribers") == 0
    assert (
        value(samples, "oracle_aggregator_subscribers_dropped_total", reason="round_queue_full")
        == 2
    )


def test_database_write_latency_is_a_histogram_by_operation(
    metrics: AggregatorMetrics, url: str
) -> None:
    metrics.observe_db_write("observation", 0.004)
    metrics.observe_db_write("round", 0.02)
    samples = scrape(url)
    name = "oracle_aggregator_db_write_duration_seconds"
    assert value(samples, f"{name}_count", operation="observation") == 1
    assert value(samples, f"{name}_bucket", operation="round", le="0.025") == 1
    assert value(samples, f"{name}_bucket", operation="round", le="0.01") == 0
