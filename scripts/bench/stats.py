"""Latency statistics from raw samples, so percentiles are exact rather than bucketed estimates.

Benchmarks keep every latency (a few hundred thousand integers at most) and compute nearest-rank
percentiles over the sorted list: p99.9 from a histogram with coarse buckets would hide exactly the
tail the goals are about.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (`fraction` in (0, 1]).

    Nearest rank never interpolates, so the answer is always a latency that was really observed.
    """
    if not sorted_values:
        raise ValueError("percentile of no samples")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    rank = math.ceil(fraction * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


@dataclass(frozen=True)
class LoadFigures:
    """What one load run measured: throughput, latency percentiles (ms) and outcome counts."""

    calls: int
    seconds: float
    calls_per_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    errors: int
    error_codes: dict[str, int]
    duplicates: int
    # Every call issued, warm-up and failures included, and the server process's CPU time
    # (all threads) over them: CPU per call is the figure least disturbed by a client that
    # shares the machine's cores with the server.
    total_calls: int = 0
    server_cpu_us_per_call: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(
    latencies_ns: Sequence[int],
    seconds: float,
    *,
    error_codes: dict[str, int] | None = None,
    duplicates: int = 0,
    total_calls: int = 0,
    server_cpu_seconds: float | None = None,
) -> LoadFigures:
    """Figures from raw per-call latencies (nanoseconds) over a measured window of `seconds`."""
    errors = sum((error_codes or {}).values())
    ordered = sorted(latencies_ns)
    cpu_per_call = (
        server_cpu_seconds / total_calls * 1e6
        if server_cpu_seconds is not None and total_calls
        else None
    )
    if not ordered:
        nan = float("nan")
        return LoadFigures(
            0,
            seconds,
            0.0,
            nan,
            nan,
            nan,
            nan,
            errors,
            error_codes or {},
            0,
            total_calls,
            cpu_per_call,
        )
    to_ms = 1e-6
    return LoadFigures(
        calls=len(ordered),
        seconds=seconds,
        calls_per_s=len(ordered) / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(ordered, 0.50) * to_ms,
        p99_ms=percentile(ordered, 0.99) * to_ms,
        p999_ms=percentile(ordered, 0.999) * to_ms,
        max_ms=ordered[-1] * to_ms,
        errors=errors,
        error_codes=dict(error_codes or {}),
        duplicates=duplicates,
        total_calls=total_calls,
        server_cpu_us_per_call=cpu_per_call,
    )
