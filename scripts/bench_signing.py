"""Per-call cost of the signed-observation pieces, in process: what signing adds to a submission.

Times, each over `--iterations` calls (best of `--repeat` runs, to keep a busy machine's noise
out): building an ObservationPayload (its validation), encoding it, the tagged hash, BIP340
signing and verification (a valid and a forged signature), the allowlist lookup, the rate
limiter (an allowed call, a refused call, and a churn of new ids that exercises the LRU bound) and
the refusal log's suppressed path. Prints a markdown table of microseconds per call, then
SubmitPrice's whole handler in process, signed (allowlist lookup, BIP340 verification, replay
record) against unsigned (`--allow-unsigned`), over new reports: what signing costs the server.

    .venv/bin/python scripts/bench_signing.py                 # ~10 s
    .venv/bin/python scripts/bench_signing.py --smoke         # a fraction of a second
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import platform
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

from aggregator.allowlist import Allowlist, NodePermit
from aggregator.book import Book
from aggregator.config import AggregatorConfig, AuthConfig, LimitsConfig
from aggregator.ratelimit import RateLimitConfig, SubmissionRateLimiter
from aggregator.service import OracleServicer
from common.logsetup import configure_logging
from common.observation import (
    ObservationPayload,
    e8_to_double,
    encode_observation,
    observation_digest,
    sign_observation,
    verify_observation,
)
from common.proto import oracle_pb2
from common.refusal_log import RefusalLog
from common.schnorr import SigningKey
from oracle_node.keys import allowlist_entry


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
    nodes, minutes = (20, 2) if args.smoke else (300, 10)
    print(
        f"\nSubmitPrice in process (the servicer's whole handler, no wire), {nodes * minutes} new "
        f"reports ({nodes} nodes x {minutes} minutes), best of {repeat}:\n"
    )
    print("| SubmitPrice | µs per call | calls/s | vs unsigned |")
    print("|---|---:|---:|---:|")
    # The handler's own log lines (aggregate, duplicate_exchange) would be most of the cost.
    configure_logging("error", None, service="bench")
    figures = {
        signed: _submit_per_call_us(signed, nodes, minutes, repeat) for signed in (False, True)
    }
    for signed, per_call in figures.items():
        print(
            f"| {'signed, allowlist, verified' if signed else 'unsigned (--allow-unsigned)'} | "
            f"{per_call:.1f} | {1e6 / per_call:,.0f} | {figures[False] / per_call:.2f}x |"
        )
    return 0


class _Context:
    """The servicer's context, in process: an abort is an exception (never expected here)."""

    async def abort(self, code: object, details: str) -> None:
        raise RuntimeError(f"refused: {code} {details}")


def _submit_per_call_us(signed: bool, nodes: int, minutes: int, repeat: int) -> float:
    """Best per-call time of SubmitPrice over `nodes` x `minutes` new reports."""
    minute0 = 1_795_000_000 // 60 * 60
    keys = [
        SigningKey(hashlib.sha256(f"bench {index}".encode()).digest()) for index in range(nodes)
    ]
    requests = [
        _request(keys[index] if signed else None, index, minute0 - 60 * back)
        for back in range(minutes)
        for index in range(nodes)
    ]
    best = float("inf")
    with tempfile.TemporaryDirectory() as directory:
        allowlist = Path(directory) / "allowlist.toml"
        allowlist.write_text(
            "\n".join(
                allowlist_entry(
                    key.public_key, node_id=f"bench-{index}", exchanges=[_EXCHANGES[index % 3]]
                )
                for index, key in enumerate(keys)
            )
        )
        auth = AuthConfig(allowlist=allowlist) if signed else AuthConfig(allow_unsigned=True)
        limits = LimitsConfig(rate=1e6, burst=1e6, global_rate=1e7, global_burst=1e7)
        config = AggregatorConfig(
            host="127.0.0.1", port=0, auth=auth, limits=limits, window=100_000
        )
        for _ in range(repeat):
            servicer = OracleServicer(config, Book(config), lambda: minute0 + 65.0)
            best = min(best, asyncio.run(_run_submissions(servicer, requests)))
    return best / len(requests) * 1e6


async def _run_submissions(
    servicer: OracleServicer, requests: list[oracle_pb2.PriceRequest]
) -> float:
    context: Any = _Context()
    started = time.perf_counter()
    for request in requests:
        await servicer.SubmitPrice(request, context)
    return time.perf_counter() - started


_EXCHANGES = ("binance", "coinbase", "kraken")
_PAIRS = {
    "binance": ("USDT", "BTCUSDT"),
    "coinbase": ("USD", "BTC-USD"),
    "kraken": ("USD", "XBTUSD"),
}


def _request(key: SigningKey | None, index: int, minute: int) -> oracle_pb2.PriceRequest:
    node_id, exchange = f"bench-{index}", _EXCHANGES[index % 3]
    quote, symbol = _PAIRS[exchange]
    price_e8 = 9_731_245_000_000 + minute % 997 + index
    request = oracle_pb2.PriceRequest(
        price=e8_to_double(price_e8),
        timestamp=minute,
        source=exchange,
        node_id=node_id,
        quote=quote,
        symbol=symbol,
        price_e8=price_e8,
        base="BTC",
    )
    if key is not None:
        payload = ObservationPayload(
            node_id, exchange, "BTC", quote, symbol, minute, price_e8, False
        )
        request.observation_signature = sign_observation(key, payload)
        request.public_key = key.public_key
    return request


if __name__ == "__main__":
    sys.exit(main())
