"""Authenticated observations at the aggregator (issue 11): every attack tried as an attacker would.

Each refusal asserts that the book (aggregate, node table, idempotency records) is exactly as it
was (`book.snapshot()`) and that the refusal was counted by its reason. The server is the real
one, in process on a loopback port, with a fake clock and an allowlist of three honest nodes.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import grpc
import pytest

from aggregator.config import AggregatorConfig, AuthConfig, LimitsConfig
from aggregator.server import BoundServer, build_server
from aggregator.store.memory import InMemoryHistoryStore
from common.observation import verify_observation
from common.proto import oracle_pb2 as pb
from common.proto import oracle_pb2_grpc
from common.schnorr import SigningKey
from tests.signing_helpers import key_for, signed_request, write_allowlist

from .conftest import T0, FakeClock

HONEST = {
    "oracle-node-1": ("binance",),
    "oracle-node-2": ("coinbase",),
    "oracle-node-3": ("kraken",),
}
KEYS = {node_id: key_for(node_id) for node_id in HONEST}
EXCHANGE_OF = {node_id: exchanges[0] for node_id, exchanges in HONEST.items()}
PRICE_E8 = 10_000_012_345_678  # 100000.12345678


@dataclass
class Running:
    bound: BoundServer
    stub: oracle_pb2_grpc.OracleServiceStub
    clock: FakeClock

    @property
    def book_state(self) -> tuple[object, ...]:
        return self.bound.servicer.book.snapshot()

    @property
    def refusals(self) -> dict[str, int]:
        return self.bound.servicer.admission.refusals.totals

    async def refused(self, request: pb.PriceRequest, code: grpc.StatusCode) -> str:
        """Submit `request`, expect `code`, and check that nothing changed; the details."""
        before = self.book_state
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await self.stub.SubmitPrice(request)
        assert refused.value.code() == code, refused.value.details()
        assert self.book_state == before
        return refused.value.details() or ""


def honest(node_id: str, price_e8: int = PRICE_E8, minute: int = T0) -> pb.PriceRequest:
    return signed_request(
        KEYS[node_id],
        node_id=node_id,
        exchange=EXCHANGE_OF[node_id],
        minute=minute,
        price_e8=price_e8,
    )


@asynccontextmanager
async def start(
    tmp_path: Path,
    clock: FakeClock,
    *,
    allow_unsigned: bool = False,
    limits: LimitsConfig | None = None,
) -> AsyncIterator[Running]:
    allowlist = write_allowlist(
        tmp_path / "allowlist.toml",
        [(node_id, KEYS[node_id], exchanges) for node_id, exchanges in HONEST.items()],
    )
    config = AggregatorConfig(
        host="127.0.0.1",
        port=0,
        auth=AuthConfig(allowlist=allowlist, allow_unsigned=allow_unsigned),
        limits=limits or LimitsConfig(),
    )
    bound = build_server(config, clock=clock)
    await bound.server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}")
    try:
        yield Running(bound, oracle_pb2_grpc.OracleServiceStub(channel), clock)
    finally:
        await channel.close()
        await bound.server.stop(None)


@pytest.fixture
async def running(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Running]:
    async with start(tmp_path, clock) as server:
        yield server


async def test_signed_observations_of_allowlisted_nodes_make_the_aggregate(
    running: Running,
) -> None:
    for node_id in HONEST:
        reply = await running.stub.SubmitPrice(honest(node_id))
        assert reply.success
    price = await running.stub.GetAggregatedPrice(pb.GetPriceRequest())
    assert price.success
    assert price.aggregated_price == pytest.approx(100000.12345678)
    assert price.data_points == 3
    assert running.refusals == {}
    nodes = await running.stub.ListNodes(pb.ListNodesRequest())
    assert {node.node_id: node.signature_status for node in nodes.nodes} == dict.fromkeys(
        HONEST, pb.SIGNATURE_STATUS_VERIFIED
    )
    assert {node.node_id: node.public_key for node in nodes.nodes} == {
        node_id: key.public_key for node_id, key in KEYS.items()
    }


async def test_forged_signature_is_unauthenticated(running: Running) -> None:
    request = honest("oracle-node-1")
    request.observation_signature = bytes(64)
    details = await running.refused(request, grpc.StatusCode.UNAUTHENTICATED)
    assert "does not verify" in details
    assert running.refusals == {"bad_signature": 1}


async def test_valid_signature_by_a_key_not_on_the_allowlist(running: Running) -> None:
    stranger = key_for("stranger")
    request = signed_request(
        stranger, node_id="oracle-node-1", exchange="binance", minute=T0, price_e8=PRICE_E8
    )
    await running.refused(request, grpc.StatusCode.UNAUTHENTICATED)
    assert running.refusals == {"wrong_key": 1}


async def test_unknown_node_id_is_unauthenticated(running: Running) -> None:
    stranger = key_for("stranger")
    request = signed_request(
        stranger, node_id="oracle-node-9", exchange="binance", minute=T0, price_e8=PRICE_E8
    )
    await running.refused(request, grpc.StatusCode.UNAUTHENTICATED)
    assert running.refusals == {"unknown_node": 1}


async def test_allowlisted_node_posting_for_another_exchange_is_permission_denied(
    running: Running,
) -> None:
    request = signed_request(
        KEYS["oracle-node-1"],
        node_id="oracle-node-1",
        exchange="kraken",
        minute=T0,
        price_e8=PRICE_E8,
    )
    details = await running.refused(request, grpc.StatusCode.PERMISSION_DENIED)
    assert "not allowed to report 'kraken'" in details
    assert running.refusals == {"exchange_not_allowed": 1}


async def test_signature_over_a_different_price_than_the_one_sent(running: Running) -> None:
    request = honest("oracle-node-1")
    request.price_e8 = PRICE_E8 + 1
    request.price = (PRICE_E8 + 1) / 10**8
    await running.refused(request, grpc.StatusCode.UNAUTHENTICATED)
    # And a double that is not the signed exact price: refused before any signature check.
    request = honest("oracle-node-1")
    request.price = 1e7
    details = await running.refused(request, grpc.StatusCode.INVALID_ARGUMENT)
    assert "nearest double of price_e8" in details


async def test_unsigned_is_refused_while_signatures_are_required(running: Running) -> None:
    request = signed_request(
        None, node_id="oracle-node-1", exchange="binance", minute=T0, price_e8=PRICE_E8
    )
    details = await running.refused(request, grpc.StatusCode.UNAUTHENTICATED)
    assert "observation_signature: required" in details
    # The original client's request (a double, no price_e8, no key) likewise.
    original = pb.PriceRequest(price=100000.0, timestamp=T0, source="binance", node_id="x-1")
    await running.refused(original, grpc.StatusCode.UNAUTHENTICATED)
    assert running.refusals == {"unsigned": 2}
    health = await running.stub.HealthCheck(pb.HealthRequest())
    assert "UNSIGNED" not in health.message


async def test_replayed_observation_is_idempotent(running: Running) -> None:
    request = honest("oracle-node-1")
    assert (await running.stub.SubmitPrice(request)).success
    before = running.book_state
    again = await running.stub.SubmitPrice(request)
    assert again.success
    assert again.duplicate
    assert running.book_state == before


async def test_equivocation_is_refused_and_kept_as_evidence(running: Running) -> None:
    # The aggregator's own history (in memory in process tests; SQLite in a service).
    store = running.bound.servicer.history.store
    assert isinstance(store, InMemoryHistoryStore)
    first = honest("oracle-node-1")
    assert (await running.stub.SubmitPrice(first)).success
    second = honest("oracle-node-1", price_e8=PRICE_E8 + 100_000_000)
    details = await running.refused(second, grpc.StatusCode.ALREADY_EXISTS)
    assert "equivocation" in details
    assert running.refusals == {"equivocation": 1}
    (evidence,) = store.equivocations()
    assert evidence.first.signature == first.observation_signature
    assert evidence.second.signature == second.observation_signature
    assert (
        evidence.first.public_key == evidence.second.public_key == KEYS["oracle-node-1"].public_key
    )
    assert (evidence.first.price, evidence.second.price) == (
        Decimal("100000.12345678"),
        Decimal("100001.12345678"),
    )
    # The evidence is the signed observations themselves: both signatures verify.
    (kept,) = running.bound.servicer.admission.evidence
    for signed in (kept.first, kept.second):
        assert verify_observation(signed.public_key, signed.payload, signed.signature)


async def test_the_original_attack_no_longer_moves_the_price(running: Running) -> None:
    """Issue 11: three unauthenticated requests with the honest ids at 10,000,000, sent two
    minutes early, set the aggregate and locked the honest nodes out (ALREADY_EXISTS)."""
    running.clock.now = T0 - 60  # the minute claimed before the honest nodes submit it
    for node_id, exchange in EXCHANGE_OF.items():
        forged = pb.PriceRequest(price=1e7, timestamp=T0, source=exchange, node_id=node_id)
        await running.refused(forged, grpc.StatusCode.UNAUTHENTICATED)
        signed_by_attacker = signed_request(
            key_for("attacker"),
            node_id=node_id,
            exchange=exchange,
            minute=T0,
            price_e8=10**15,
        )
        await running.refused(signed_by_attacker, grpc.StatusCode.UNAUTHENTICATED)
    extra = signed_request(
        key_for("attacker"),
        node_id="oracle-node-4",
        exchange="binance",
        minute=T0,
        price_e8=10**15,
    )
    await running.refused(extra, grpc.StatusCode.UNAUTHENTICATED)
    running.clock.now = T0 + 65
    for node_id in HONEST:
        reply = await running.stub.SubmitPrice(honest(node_id))
        assert reply.success
        assert not reply.duplicate
    price = await running.stub.GetAggregatedPrice(pb.GetPriceRequest())
    assert price.aggregated_price == pytest.approx(100000.12345678)


async def test_a_flood_from_one_node_while_two_honest_nodes_get_through(
    tmp_path: Path, clock: FakeClock
) -> None:
    limits = LimitsConfig(rate=0.5, burst=5, global_rate=1000, global_burst=1000)
    async with start(tmp_path, clock, limits=limits) as server:
        codes: list[grpc.StatusCode] = []
        details: list[str] = []
        for index in range(50):
            request = honest("oracle-node-1", minute=T0 - 60 * (index % 5))
            try:
                await server.stub.SubmitPrice(request)
            except grpc.aio.AioRpcError as error:
                codes.append(error.code())
                details.append(error.details() or "")
        flooded = len(codes)
        assert set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert all("retry in" in detail for detail in details)
        assert flooded == 45  # the burst of 5 went through, then one per 2 s of (frozen) clock
        for node_id in ("oracle-node-2", "oracle-node-3"):
            assert (await server.stub.SubmitPrice(honest(node_id))).success
        assert server.refusals == {"rate_limited_node": 45}


async def test_a_flood_of_forgeries_does_not_spend_the_honest_nodes_budget(
    tmp_path: Path, clock: FakeClock
) -> None:
    limits = LimitsConfig(rate=0.01, burst=2)
    async with start(tmp_path, clock, limits=limits) as server:
        for _ in range(20):
            forged = honest("oracle-node-1")
            forged.observation_signature = bytes(64)
            with pytest.raises(grpc.aio.AioRpcError):
                await server.stub.SubmitPrice(forged)
        assert (await server.stub.SubmitPrice(honest("oracle-node-1"))).success


async def test_allow_unsigned_accepts_allowlisted_ids_and_says_so(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with start(tmp_path, clock, allow_unsigned=True) as server:
        unsigned = pb.PriceRequest(
            price=100000.0, timestamp=T0, source="binance", node_id="oracle-node-1"
        )
        assert (await server.stub.SubmitPrice(unsigned)).success
        # Still, with an allowlist, only its nodes for their exchanges: the node table holds
        # exactly allowlisted nodes.
        stranger = pb.PriceRequest(price=1e7, timestamp=T0, source="kraken", node_id="evil")
        await server.refused(stranger, grpc.StatusCode.UNAUTHENTICATED)
        elsewhere = pb.PriceRequest(
            price=1e7, timestamp=T0, source="kraken", node_id="oracle-node-1"
        )
        await server.refused(elsewhere, grpc.StatusCode.PERMISSION_DENIED)
        # A signed one is still checked.
        forged = honest("oracle-node-2")
        forged.observation_signature = bytes(64)
        await server.refused(forged, grpc.StatusCode.UNAUTHENTICATED)
        health = await server.stub.HealthCheck(pb.HealthRequest())
        assert "UNSIGNED observations of allowlisted nodes accepted (--allow-unsigned)" in (
            health.message
        )
        book = server.bound.servicer.book
        assert set(book.active_nodes(clock())) == {"oracle-node-1"}


async def test_allow_unsigned_without_an_allowlist_is_the_original_behaviour(
    clock: FakeClock,
) -> None:
    config = AggregatorConfig(host="127.0.0.1", port=0, auth=AuthConfig(allow_unsigned=True))
    bound = build_server(config, clock=clock)
    await bound.server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}") as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        request = pb.PriceRequest(price=100000.0, timestamp=T0, source="binance", node_id="any")
        assert (await stub.SubmitPrice(request)).success
        health = await stub.HealthCheck(pb.HealthRequest())
        assert "UNSIGNED observations accepted (--allow-unsigned, no allowlist)" in health.message
    await bound.server.stop(None)


async def test_without_allowlist_or_allow_unsigned_every_submission_is_refused(
    clock: FakeClock,
) -> None:
    bound = build_server(AggregatorConfig(host="127.0.0.1", port=0), clock=clock)
    await bound.server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}") as channel:
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        for request in (
            pb.PriceRequest(price=100000.0, timestamp=T0, source="binance", node_id="any"),
            honest("oracle-node-1"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.SubmitPrice(request)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    await bound.server.stop(None)


# --- docs/signing.md's worked example, end to end ---------------------------------------------

EXAMPLE_SECRET = hashlib.sha256(b"btcfi-oracle/observation example key").digest()
EXAMPLE_SIGNATURE = bytes.fromhex(
    "6107cc593a61bda8999e011ec144e3ba06a879a4f7091d9664977de159b32e73"
    "b55850290b328c99cb472558ddf699e160a6c6922075f3278a51d9db71d358f2"
)


async def test_the_worked_example_of_docs_signing_md_is_accepted(tmp_path: Path) -> None:
    key = SigningKey(EXAMPLE_SECRET)
    assert key.public_key.hex() == (
        "b3c943856bbad62040b530040c1e9c67a34533ae2c1db33900fd59dd9784c599"
    )
    minute = 1764547200
    clock = FakeClock(minute + 65)
    allowlist = write_allowlist(tmp_path / "allowlist.toml", [("oracle-node-1", key, ("binance",))])
    config = AggregatorConfig(host="127.0.0.1", port=0, auth=AuthConfig(allowlist=allowlist))
    bound = build_server(config, clock=clock)
    await bound.server.start()
    # The request exactly as the document's example describes it, its signature copied from it.
    request = pb.PriceRequest(
        price=97312.45,
        timestamp=minute,
        source="binance",
        node_id="oracle-node-1",
        quote="USDT",
        symbol="BTCUSDT",
        price_e8=9731245000000,
        base="BTC",
        observation_signature=EXAMPLE_SIGNATURE,
        public_key=key.public_key,
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}") as channel:
            stub = oracle_pb2_grpc.OracleServiceStub(channel)
            reply = await stub.SubmitPrice(request)
            assert reply.success
            assert reply.aggregated_price == 97312.45
            # One bit of the signature flipped: refused.
            forged = pb.PriceRequest()
            forged.CopyFrom(request)
            forged.observation_signature = bytes([EXAMPLE_SIGNATURE[0] ^ 1]) + EXAMPLE_SIGNATURE[1:]
            forged.timestamp = minute - 60
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.SubmitPrice(forged)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await bound.server.stop(None)


# --- hostile bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [b"\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x08" * 7, bytes(range(256))]
)
async def test_a_body_that_is_not_a_protobuf_is_invalid_argument(
    running: Running, body: bytes
) -> None:
    before = running.book_state
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.bound.port}")
    call = channel.unary_unary("/oracle.OracleService/SubmitPrice")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(body)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid protobuf message" in (refused.value.details() or "")
    finally:
        await channel.close()
    assert running.book_state == before
