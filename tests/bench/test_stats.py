"""Percentiles are nearest-rank over raw samples: always a latency that was really observed."""

import math

import pytest
from bench.stats import percentile, summarise


def test_percentiles_pick_observed_samples_by_nearest_rank() -> None:
    samples = list(range(1, 1001))  # 1..1000
    assert percentile(samples, 0.5) == 500
    assert percentile(samples, 0.99) == 990
    assert percentile(samples, 0.999) == 999
    assert percentile(samples, 1.0) == 1000
    assert percentile([7], 0.999) == 7


def test_percentile_refuses_empty_samples_and_bad_fractions() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 0.5)
    with pytest.raises(ValueError, match="fraction"):
        percentile([1, 2], 0)


def test_summary_reports_rate_milliseconds_errors_and_cpu_per_call() -> None:
    latencies_ns = [1_000_000] * 98 + [5_000_000, 20_000_000]
    figures = summarise(
        latencies_ns,
        seconds=0.5,
        error_codes={"INVALID_ARGUMENT": 2},
        total_calls=102,
        server_cpu_seconds=0.0102,
    )
    assert figures.calls == 100
    assert figures.calls_per_s == 200
    assert figures.p50_ms == pytest.approx(1.0)
    assert figures.p99_ms == pytest.approx(5.0)
    assert figures.p999_ms == pytest.approx(20.0)
    assert figures.errors == 2
    assert figures.server_cpu_us_per_call == pytest.approx(100.0)


def test_summary_of_no_successful_calls_is_explicitly_empty() -> None:
    figures = summarise([], seconds=1.0, error_codes={"UNAVAILABLE": 3})
    assert figures.calls == 0
    assert figures.errors == 3
    assert math.isnan(figures.p99_ms)
