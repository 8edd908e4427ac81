"""Submission rate limits: a token bucket per node and one for everyone, in bounded memory.

A flooding node must be refused (RESOURCE_EXHAUSTED) while honest nodes still get through at
normal latency. Each node id has its own bucket of `burst` tokens refilled at `rate` per second;
a submission spends one. A global bucket caps what all nodes together may submit, so the book
and the history database see a bounded write rate whatever the number of ids. Buckets are kept
for at most `max_tracked_nodes` ids, least recently seen evicted first; an evicted id comes
back with a full bucket, which is why the global bound exists (with an allowlist the ids are
bounded anyway; in `--allow-unsigned` mode anyone can invent ids).

Where to call it (docs/signing.md): after the signature verified, so the id is authenticated and
a forger using an honest node's id cannot spend that node's budget. Unauthenticated floods are
bounded by the server's concurrent-call limit and cost one refused verification each.

Pure and fast: time is passed in (`now`, seconds of any monotonic clock), nothing is read or
logged here, and a call is a dictionary lookup and a few float operations
(`scripts/bench_signing.py` prints the per-call cost).
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from dataclasses import dataclass

from common.errors import CapacityError


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Bucket sizes and refill rates; the defaults fit the three-node layout with room to spare.

    A node sends two observations a minute (BTC and, on Kraken and Coinbase, the USDT rate) and
    after an outage a backlog of at most a few minutes at once, so a burst of 30 with one token
    every two seconds never touches an honest node, while a flooding node gets one submission
    in two seconds through.
    """

    rate: float = 0.5
    burst: float = 30.0
    global_rate: float = 50.0
    global_burst: float = 200.0
    max_tracked_nodes: int = 4096

    def __post_init__(self) -> None:
        for name in ("rate", "burst", "global_rate", "global_burst"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if self.burst < 1 or self.global_burst < 1:
            raise ValueError("burst and global_burst must be at least 1 (one submission)")
        if not isinstance(self.max_tracked_nodes, int) or self.max_tracked_nodes < 1:
            raise ValueError("max_tracked_nodes must be a positive integer")


class Admission(enum.Enum):
    """The limiter's answer; the value is the refusal counter's reason label."""

    ALLOWED = "allowed"
    NODE_LIMITED = "rate_limited_node"
    GLOBAL_LIMITED = "rate_limited_global"


class SubmissionRateLimiter:
    """Token buckets per node id (LRU-bounded) and one global bucket; time passed in."""

    __slots__ = ("_buckets", "_config", "_global_tokens", "_global_updated")

    def __init__(self, config: RateLimitConfig | None = None) -> None:
        self._config = config or RateLimitConfig()
        # node id -> [tokens, last refill time]; a list so the hot path mutates in place.
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._global_tokens = self._config.global_burst
        self._global_updated: float | None = None

    @property
    def config(self) -> RateLimitConfig:
        return self._config

    def __len__(self) -> int:
        """How many node ids have a bucket (at most `max_tracked_nodes`)."""
        return len(self._buckets)

    def admit(self, node_id: str, now: float) -> Admission:
        """Spend one token of `node_id` and one global token, or neither.

        A refused call spends nothing: a node over its limit does not also drain the global
        bucket, and a global refusal does not cost the node its own token. A clock that goes
        backwards refills nothing (and punishes no one).
        """
        config = self._config
        bucket = self._buckets.get(node_id)
        if bucket is None:
            bucket = [config.burst, now]
            self._buckets[node_id] = bucket
            if len(self._buckets) > config.max_tracked_nodes:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(node_id)
            elapsed = now - bucket[1]
            if elapsed > 0:
                bucket[0] = min(config.burst, bucket[0] + elapsed * config.rate)
                bucket[1] = now
        if bucket[0] < 1:
            return Admission.NODE_LIMITED

        if self._global_updated is None:
            self._global_updated = now
        elif now > self._global_updated:
            self._global_tokens = min(
                config.global_burst,
                self._global_tokens + (now - self._global_updated) * config.global_rate,
            )
            self._global_updated = now
        if self._global_tokens < 1:
            return Admission.GLOBAL_LIMITED

        bucket[0] -= 1
        self._global_tokens -= 1
        return Admission.ALLOWED

    def retry_after(self, node_id: str, admission: Admission) -> float:
        """Seconds until the bucket that refused `admission` holds a token again (0 if allowed)."""
        if admission is Admission.NODE_LIMITED:
            bucket = self._buckets.get(node_id)
            tokens = bucket[0] if bucket is not None else self._config.burst
            return max(0.0, (1 - tokens) / self._config.rate)
        if admission is Admission.GLOBAL_LIMITED:
            return max(0.0, (1 - self._global_tokens) / self._config.global_rate)
        return 0.0

    def check(self, node_id: str, now: float) -> None:
        """`admit`, raising `CapacityError` (RESOURCE_EXHAUSTED) with a retry hint when refused."""
        admission = self.admit(node_id, now)
        if admission is Admission.ALLOWED:
            return
        wait = self.retry_after(node_id, admission)
        if admission is Admission.NODE_LIMITED:
            raise RateLimitedError(
                f"node {node_id[:64]!r} is over its submission rate limit "
                f"({self._config.rate:g}/s, burst {self._config.burst:g}); retry in {wait:.1f} s",
                reason=admission.value,
                retry_after=wait,
            )
        raise RateLimitedError(
            f"the aggregator is over its total submission rate limit "
            f"({self._config.global_rate:g}/s); retry in {wait:.1f} s",
            reason=admission.value,
            retry_after=wait,
        )


class RateLimitedError(CapacityError):
    """A submission over a rate limit (RESOURCE_EXHAUSTED); `retry_after` in seconds."""

    def __init__(self, message: str, *, reason: str, retry_after: float) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after
