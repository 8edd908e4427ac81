"""Rate limits: a flooding node is refused while honest nodes get through; memory stays bounded."""

from __future__ import annotations

import grpc
import pytest

from aggregator.ratelimit import (
    Admission,
    RateLimitConfig,
    RateLimitedError,
    SubmissionRateLimiter,
)


def limiter(**changes: float) -> SubmissionRateLimiter:
    values: dict[str, float] = {
        "rate": 1.0,
        "burst": 3.0,
        "global_rate": 100.0,
        "global_burst": 100.0,
    }
    values.update(changes)
    return SubmissionRateLimiter(RateLimitConfig(**values))  # type: ignore[arg-type]


def test_a_burst_then_the_sustained_rate() -> None:
    limits = limiter()
    assert [limits.admit("a", 0.0) for _ in range(4)] == [Admission.ALLOWED] * 3 + [
        Admission.NODE_LIMITED
    ]
    assert limits.admit("a", 0.5) is Admission.NODE_LIMITED
    assert limits.admit("a", 1.0) is Admission.ALLOWED
    assert limits.admit("a", 1.0) is Admission.NODE_LIMITED
    # A long pause refills to the burst, never beyond it.
    assert [limits.admit("a", 1000.0) for _ in range(4)].count(Admission.ALLOWED) == 3


def test_a_flood_from_one_node_while_two_honest_nodes_still_get_through() -> None:
    limits = SubmissionRateLimiter()  # the shipped defaults
    now, flood_allowed, honest = 1_000.0, 0, {"oracle-node-2": 0, "oracle-node-3": 0}
    for second in range(60):
        for _ in range(1000):  # a thousand submissions a second from the flooder
            if limits.admit("oracle-node-1", now + second) is Admission.ALLOWED:
                flood_allowed += 1
        if second % 30 == 0:  # honest nodes: BTC and USDT observations twice a minute
            for node in honest:
                for _ in range(2):
                    honest[node] += limits.admit(node, now + second) is Admission.ALLOWED
    assert honest == {"oracle-node-2": 4, "oracle-node-3": 4}
    # burst 30, then one every two seconds: 30 + 59 * 0.5 over the minute
    assert 55 <= flood_allowed <= 60


def test_a_refusal_spends_nothing() -> None:
    limits = limiter(burst=1.0, global_burst=1.0, global_rate=1.0)
    assert limits.admit("a", 0.0) is Admission.ALLOWED
    assert limits.admit("a", 0.0) is Admission.NODE_LIMITED  # does not touch the global bucket
    assert limits.admit("b", 0.0) is Admission.GLOBAL_LIMITED  # global empty from a's one
    assert limits.admit("b", 1.0) is Admission.ALLOWED  # b kept its own token


def test_the_global_bound_caps_many_ids() -> None:
    limits = limiter(global_rate=10.0, global_burst=10.0)
    results = [limits.admit(f"id-{index}", 0.0) for index in range(50)]
    assert results.count(Admission.ALLOWED) == 10
    assert results[10:] == [Admission.GLOBAL_LIMITED] * 40


def test_memory_is_bounded_least_recently_seen_evicted() -> None:
    limits = SubmissionRateLimiter(
        RateLimitConfig(rate=1, burst=1, global_rate=1e9, global_burst=1e9, max_tracked_nodes=100)
    )
    assert limits.admit("keep", 0.0) is Admission.ALLOWED
    for index in range(10_000):
        limits.admit(f"attacker-{index}", 0.0)
        if index % 50 == 0:
            limits.admit("keep", 0.0)  # seen recently: never evicted, still limited
    assert len(limits) == 100
    assert limits.admit("keep", 0.0) is Admission.NODE_LIMITED


def test_a_clock_going_backwards_refills_nothing() -> None:
    limits = limiter(burst=1.0)
    assert limits.admit("a", 100.0) is Admission.ALLOWED
    assert limits.admit("a", 50.0) is Admission.NODE_LIMITED
    assert limits.admit("a", 100.5) is Admission.NODE_LIMITED
    assert limits.admit("a", 101.0) is Admission.ALLOWED


def test_check_raises_resource_exhausted_with_a_retry_hint() -> None:
    limits = limiter(rate=0.5, burst=1.0)
    limits.check("a", 0.0)
    with pytest.raises(RateLimitedError) as caught:
        limits.check("a", 0.5)
    assert caught.value.status is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.reason == "rate_limited_node"
    assert caught.value.retry_after == pytest.approx(1.5)
    assert "retry in 1.5 s" in str(caught.value)

    crowded = limiter(global_rate=2.0, global_burst=1.0)
    crowded.check("a", 0.0)
    with pytest.raises(RateLimitedError, match="total submission rate") as crowd:
        crowded.check("b", 0.0)
    assert crowd.value.reason == "rate_limited_global"
    assert crowd.value.retry_after == pytest.approx(0.5)


@pytest.mark.parametrize(
    "changes",
    [
        {"rate": 0},
        {"rate": -1},
        {"rate": float("nan")},
        {"burst": float("inf")},
        {"burst": 0.5},
        {"global_rate": 0},
        {"global_burst": 0.5},
        {"max_tracked_nodes": 0},
        {"max_tracked_nodes": 1.5},
        {"rate": "1"},
    ],
)
def test_bad_settings_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RateLimitConfig(**changes)  # type: ignore[arg-type]
