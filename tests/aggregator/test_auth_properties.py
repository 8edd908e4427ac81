"""Property tests of the gate (issue 11): whatever a hostile client sends, the servicer never
crashes, never answers INTERNAL, and changes the book only for a valid request signed by an
allowlisted key. The servicer runs in process behind the same handler wrapper the server uses
(a body that does not parse answers INVALID_ARGUMENT), with a fake context whose abort raises.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.book import Book
from aggregator.config import AggregatorConfig, AuthConfig
from aggregator.server import _rewrap
from aggregator.service import OracleServicer
from common.proto import oracle_pb2 as pb
from tests.signing_helpers import key_for, signed_request, write_allowlist

from .conftest import T0

NODE = "oracle-node-1"
KEY = key_for(NODE)
PRICE_E8 = 9_731_245_000_000


class AbortedError(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


class Context:
    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise AbortedError(code, details)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> AggregatorConfig:
    directory: Path = tmp_path_factory.mktemp("allowlist")
    allowlist = write_allowlist(directory / "allowlist.toml", [(NODE, KEY, ("binance",))])
    return AggregatorConfig(host="127.0.0.1", port=0, auth=AuthConfig(allowlist=allowlist))


def submit_body(config: AggregatorConfig, body: bytes) -> tuple[grpc.StatusCode, bool]:
    """(status, whether the book changed) for `body` sent to a fresh servicer's SubmitPrice."""
    servicer = OracleServicer(config, Book(config), lambda: T0 + 65.0)
    handler = _rewrap(
        "SubmitPrice",
        grpc.unary_unary_rpc_method_handler(
            servicer.SubmitPrice,
            request_deserializer=pb.PriceRequest.FromString,
            response_serializer=pb.PriceResponse.SerializeToString,
        ),
    )
    before = servicer.book.snapshot()
    context: Any = Context()

    async def call() -> grpc.StatusCode:
        request = handler.request_deserializer(body)  # type: ignore[misc]
        try:
            await handler.unary_unary(request, context)  # type: ignore[misc]
        except AbortedError as aborted:
            return aborted.code
        return grpc.StatusCode.OK

    code = asyncio.run(call())
    return code, servicer.book.snapshot() != before


def honest() -> pb.PriceRequest:
    return signed_request(KEY, node_id=NODE, exchange="binance", minute=T0, price_e8=PRICE_E8)


def test_the_honest_request_is_accepted(config: AggregatorConfig) -> None:
    assert submit_body(config, honest().SerializeToString()) == (grpc.StatusCode.OK, True)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=300))
def test_random_bodies_never_crash_nor_change_anything(
    config: AggregatorConfig, body: bytes
) -> None:
    code, changed = submit_body(config, body)
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    assert not changed or code is grpc.StatusCode.OK
    # Random bytes are never a request signed by the allowlisted key.
    assert not changed


MUTATIONS = {
    "price": st.floats(allow_nan=True, allow_infinity=True),
    "timestamp": st.integers(min_value=0, max_value=2**64 - 1),
    "source": st.sampled_from(["coinbase", "kraken", "", "BINANCE", "binance2"]),
    "node_id": st.sampled_from(["oracle-node-2", "oracle-node-1 ", "", "x" * 65]),
    "quote": st.sampled_from(["USD", "EUR", "", "usdt"]),
    "simulated": st.just(True),
    "symbol": st.sampled_from(["BTCUSD", "", "BTC-USDT", "btcusdt"]),
    "price_e8": st.integers(min_value=0, max_value=2**64 - 1),
    "observation_signature": st.binary(max_size=80),
    "public_key": st.binary(max_size=40),
    "base": st.sampled_from(["USDT", "ETH", "btc"]),
}


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), fields=st.sets(st.sampled_from(sorted(MUTATIONS)), min_size=1))
def test_any_mutation_of_a_signed_observation_is_refused(
    config: AggregatorConfig, data: st.DataObject, fields: set[str]
) -> None:
    original = honest()
    request = pb.PriceRequest()
    request.CopyFrom(original)
    for name in sorted(fields):
        setattr(request, name, data.draw(MUTATIONS[name], label=name))
    if request.SerializeToString() == original.SerializeToString():
        return  # drew the original values back: not a mutation
    # quote "" and base "" resolve to the same signed values: the same observation, not forged.
    resolved = pb.PriceRequest()
    resolved.CopyFrom(request)
    resolved.quote = resolved.quote or "USDT"
    if resolved.SerializeToString() == original.SerializeToString():
        return
    code, changed = submit_body(config, request.SerializeToString())
    assert code is not grpc.StatusCode.OK, fields
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    assert not changed
