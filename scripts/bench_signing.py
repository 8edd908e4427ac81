"""Per-call cost of the signed-observation pieces, in process: what signing adds to a submission.

Times, each over `--iterations` calls (best of `--repeat` runs, to keep a busy machine's noise
out): building an ObservationPayload (its validation), encoding it, the tagged hash, BIP340
signing and verification (a valid and a forged signature), the allowlist lookup, the rate
limiter (an allowed call, a refused call, and a churn of new ids that exercises the LRU bound) and
the refusal log's suppressed path. Prints a markdown table of microseconds per call.

    .venv/bin/python scripts/bench_signing.py                 # ~10 s
    .venv/bin/python scripts/bench_signing.py --smoke         # a fraction of a second
"""

from __future__ import annotations

import argparse
import platform
import sys
import timeit
from collections.abc import Callable
from itertools import count

from aggregator.allowlist import Allowlist, NodePermit
from aggregator.ratelimit import RateLimitConfig, SubmissionRateLimiter
from common.observation import (
    ObservationPayload,
    encode_observation,
    observation_digest,
    sign_observation,
    verify_observation,
)
from common.refusal_log import RefusalLog
from common.schnorr import SigningKey


def _payload() -> ObservationPayload:
    return ObservationPayload(
        "oracle-node-1",
        "binance",
        "BTC",
        "USDT",
        "BTCUSDT",
        1_764_547_200,
        9_731_245_000_000,
        False,
    )


def _per_call_us(call: Callable[[], object], iterations: int, repeat: int) -> float:
    return min(timeit.repeat(call, number=iterations, repeat=repeat)) / iterations * 1e6


class _NullLogger:
    """Swallows the few lines the refusal log writes, so the figure is the limiter's own cost."""

    def warning(self, *_args: object, **_kwargs: object) -> None:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks the script works")
    args = parser.parse_args()
    iterations, repeat = (50, 1) if args.smoke else (args.iterations, args.repeat)

    key = SigningKey(bytes([7]) * 32)
    payload = _payload()
    signature = sign_observation(key, payload)
    forged = bytes(64)
    allowlist = Allowlist(
        [NodePermit("oracle-node-1", key.public_key, frozenset({"binance"}))], source="bench"
    )

    allowed_limiter = SubmissionRateLimiter(
        RateLimitConfig(rate=1e12, burst=1e12, global_rate=1e12, global_burst=1e12)
    )
    refused_limiter = SubmissionRateLimiter(RateLimitConfig(rate=1e-9, burst=1, global_rate=1))
    refused_limiter.admit("oracle-node-1", 0.0)
    churn_limiter = SubmissionRateLimiter(
        RateLimitConfig(
            rate=1, burst=1, global_rate=1e12, global_burst=1e12, max_tracked_nodes=1000
        )
    )
    fresh_ids = (f"attacker-{index}" for index in count())
    clock = count()
    refusals = RefusalLog(_NullLogger(), per_reason=10, window=1e12)  # type: ignore[arg-type]
    for _ in range(20):
        refusals.refused("bad_signature", 0.0)

    rows: list[tuple[str, Callable[[], object]]] = [
        ("ObservationPayload(...) (validation)", _payload),
        ("encode_observation", lambda: encode_observation(payload)),
        ("observation_digest (encode + tagged hash)", lambda: observation_digest(payload)),
        ("sign_observation (BIP340, fresh aux)", lambda: sign_observation(key, payload)),
        (
            "verify_observation, valid",
            lambda: verify_observation(key.public_key, payload, signature),
        ),
        ("verify_observation, forged", lambda: verify_observation(key.public_key, payload, forged)),
        (
            "Allowlist.authorize",
            lambda: allowlist.authorize("oracle-node-1", key.public_key, "binance"),
        ),
        (
            "rate limiter admit, allowed",
            lambda: allowed_limiter.admit("oracle-node-1", next(clock)),
        ),
        ("rate limiter admit, refused", lambda: refused_limiter.admit("oracle-node-1", 1.0)),
        (
            "rate limiter admit, new id each call (LRU full)",
            lambda: churn_limiter.admit(next(fresh_ids), 0.0),
        ),
        ("refusal log, suppressed refusal", lambda: refusals.refused("bad_signature", 1.0)),
    ]
    print(
        f"Signing benchmark: {platform.python_implementation()} {platform.python_version()}, "
        f"{iterations} calls x best of {repeat}{' (smoke)' if args.smoke else ''}\n"
    )
    print("| operation | µs per call |")
    print("|---|---:|")
    for name, call in rows:
        print(f"| {name} | {_per_call_us(call, iterations, repeat):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
