"""The settings of the streaming RPCs and the standard health service: bounds, each with a default.

Proposed as the aggregator's `[streaming]` table, declared as a `common.settings.Table` (strict,
frozen, unknown keys refused, each field's docstring its help text), so joining the validated
config is two lines in `aggregator/config.py`: `streaming: StreamingSettings = StreamingSettings()`
in `AggregatorFile` and in `AggregatorConfig`. Every bound exists so that no client, slow or
hostile, can make the aggregator hold an unbounded number of streams or updates.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from common.settings import ConflictError, Seconds, Table


class StreamingSettings(Table):
    """`[streaming]`: SubscribePrices, StreamPrices and grpc.health.v1 Watch limits."""

    max_subscribers: int = Field(1000, ge=1, le=100_000)
    """SubscribePrices streams open at once (RESOURCE_EXHAUSTED past it)"""
    # One client (one address) cannot take every slot; a proxy fanning out to many users should
    # hold one subscription and fan out itself, or be given a higher bound.
    max_subscribers_per_peer: int = Field(100, ge=1, le=100_000)
    """SubscribePrices streams open at once from one client address"""
    # Price updates are conflated, so a subscriber never falls behind by more than one price:
    # being behind means not taking an update that has waited this long (its connection stalls).
    max_lag_seconds: Seconds = Field(30.0, gt=0, le=3600)
    """Seconds an update may wait for a subscriber before it is dropped"""
    # Fan-out is bounded: a change is sent at once when no fan-out happened for the interval,
    # else it is coalesced with later ones and sent when the interval is over. The interval is
    # the larger of these two: a write costs grpc.aio ~55 us of CPU per subscriber (measured,
    # scripts/bench_streaming.py), so 1,000 subscribers get at most one fan-out a second and a
    # flood of submissions cannot spend more than ~6 % of the loop on them. The aggregate
    # changes a few times a minute and a round close sends what is pending at once, so a real
    # update is not delayed by this.
    min_update_interval_seconds: Seconds = Field(0.1, ge=0, le=60)
    """Seconds between two price fan-outs, at least (0: every change at once)"""
    update_interval_per_subscriber_seconds: Seconds = Field(0.001, ge=0, le=0.1)
    """Seconds added to the fan-out interval per attached subscriber"""
    # Round closes come once a minute, but a restart can close several overdue rounds at once.
    round_queue: int = Field(16, ge=1, le=1024)
    """Round closes held for one subscriber before it is dropped"""
    max_streams: int = Field(256, ge=1, le=100_000)
    """StreamPrices (node submission) streams open at once"""
    max_health_watchers: int = Field(100, ge=1, le=100_000)
    """grpc.health.v1 Watch streams open at once"""

    @model_validator(mode="after")
    def _consistent(self) -> StreamingSettings:
        if self.max_subscribers_per_peer > self.max_subscribers:
            raise ConflictError(
                ("max_subscribers_per_peer",),
                f"must not exceed max_subscribers = {self.max_subscribers}",
            )
        return self
