"""The submitter against a tiny in-test gRPC servicer: order, buffering, what is dropped and why."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from structlog.testing import capture_logs

from common.grpc_client import ChannelSecurity
from common.proto import oracle_pb2_grpc
from common.tls import channel_credentials, server_credentials
from oracle_node.candle import Candle
from oracle_node.submitter import Observation, Submitter
from tests.oracle_node.aggregators import FakeAggregator

T0 = 1_800_000_000 - 1_800_000_000 % 60


def observation(minute: int, close: str = "100000.5") -> Observation:
    price = Decimal(close)
    candle = Candle("coinbase", "BTC-USD", "USD", minute, price, price, price, price)
    return Observation(candle=candle, collected_at=minute + 60.2)


@pytest.fixture
async def aggregator() -> AsyncIterator[FakeAggregator]:
    fake = FakeAggregator()
    await fake.start()
    yield fake
    await fake.stop()


async def no_sleep(_seconds: float) -> None:
    return None


@pytest.fixture
async def submitter(aggregator: FakeAggregator) -> AsyncIterator[Submitter]:
    sender = Submitter(
        f"127.0.0.1:{aggregator.port}",
        "oracle-node-2",
        buffer_size=3,
        call_timeout=0.5,
        retries=1,
        sleep=no_sleep,
    )
    yield sender
    await sender.close()


async def test_request_carries_the_candle_on_the_wire(
    aggregator: FakeAggregator, submitter: Submitter
) -> None:
    submitter.enqueue(observation(T0, "101234.56"))
    assert await submitter.flush() == 1
    [request] = aggregator.servicer.received
    assert request.price == 101234.56
    assert request.timestamp == T0
    assert (request.source, request.node_id) == ("coinbase", "oracle-node-2")
    assert (request.quote, request.symbol, request.simulated) == ("USD", "BTC-USD", False)


async def test_simulated_node_marks_its_submissions(aggregator: FakeAggregator) -> None:
    sender = Submitter(f"127.0.0.1:{aggregator.port}", "sim-node", simulated=True)
    try:
        with capture_logs() as logs:
            sender.enqueue(observation(T0))
            await sender.flush()
    finally:
        await sender.close()
    assert aggregator.servicer.received[0].simulated is True
    assert logs[0]["mode"] == "SIMULATED"


async def test_outage_keeps_order_and_drops_oldest_when_full(aggregator: FakeAggregator) -> None:
    submitter = Submitter(
        f"127.0.0.1:{aggregator.port}", "n2", buffer_size=3, call_timeout=0.2, retries=0
    )
    await aggregator.stop()
    with capture_logs() as logs:
        for i in range(4):
            submitter.enqueue(observation(T0 + 60 * i))
            assert await submitter.flush() == 0
    assert submitter.pending == 3
    errors = [entry["event"] for entry in logs if entry["log_level"] == "error"]
    assert errors == ["Cannot connect to gRPC Aggregator"]  # once per outage, not every minute
    assert "buffer_full_dropped_oldest" in [entry["event"] for entry in logs]

    await aggregator.start()  # same port
    try:
        # The channel reconnects within its short backoff (at most 2 s between attempts, where
        # gRPC's own default grows to 120 s); each flush is one minute's attempt. The 10 s bound
        # leaves room for a loaded machine.
        delivered = 0
        deadline = time.monotonic() + 10
        while submitter.pending and time.monotonic() < deadline:
            delivered += await submitter.flush()
    finally:
        await submitter.close()
    assert delivered == 3
    assert [r.timestamp for r in aggregator.servicer.received] == [T0 + 60, T0 + 120, T0 + 180]


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
    ],
)
async def test_permanent_refusals_drop_only_that_observation(
    code: grpc.StatusCode, aggregator: FakeAggregator, submitter: Submitter
) -> None:
    aggregator.servicer.refuse = code
    submitter.enqueue(observation(T0))
    with capture_logs() as logs:
        assert await submitter.flush() == 1
    assert submitter.pending == 0
    assert logs[0]["event"] == "submission_rejected"
    assert logs[0]["code"] == code.name


async def test_unavailable_is_retried_then_buffered(
    aggregator: FakeAggregator, submitter: Submitter
) -> None:
    aggregator.servicer.refuse = grpc.StatusCode.UNAVAILABLE
    submitter.enqueue(observation(T0))
    assert await submitter.flush() == 0
    assert submitter.pending == 1
    aggregator.servicer.refuse = None
    assert await submitter.flush() == 1


async def test_original_style_refusal_is_dropped(
    aggregator: FakeAggregator, submitter: Submitter
) -> None:
    aggregator.servicer.success = False
    submitter.enqueue(observation(T0))
    with capture_logs() as logs:
        await submitter.flush()
    assert submitter.pending == 0
    assert logs[0]["event"] == "submission_refused"


async def test_health_check_reports_reachability(
    aggregator: FakeAggregator, submitter: Submitter
) -> None:
    assert await submitter.check_health()
    await aggregator.stop()
    with capture_logs() as logs:
        assert not await submitter.check_health()
    assert logs[0]["event"] == "Cannot connect to gRPC Aggregator"
    assert "Make sure to run" in logs[0]["hint"]


async def test_close_reports_what_is_lost(aggregator: FakeAggregator) -> None:
    await aggregator.stop()
    sender = Submitter(f"127.0.0.1:{aggregator.port}", "n", call_timeout=0.2, retries=0)
    sender.enqueue(observation(T0))
    await sender.flush()
    with capture_logs() as logs:
        await sender.close()
    assert logs[-1]["event"] == "unsent_observations_lost"
    assert logs[-1]["pending"] == 1


async def test_the_submitter_speaks_tls_when_given_credentials(tmp_path: Path) -> None:
    # The TLS seam of common.grpc_client, end to end: the same Submitter, a ChannelSecurity made
    # from common.tls's credentials, a loopback aggregator that only speaks TLS.
    trustme = pytest.importorskip("trustme")

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    (tmp_path / "server.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    (tmp_path / "server.key").chmod(0o600)

    fake = FakeAggregator()
    fake.server = grpc.aio.server()
    oracle_pb2_grpc.add_OracleServiceServicer_to_server(fake.servicer, fake.server)
    port = fake.server.add_secure_port(
        "127.0.0.1:0", server_credentials(tmp_path / "server.pem", tmp_path / "server.key")
    )
    await fake.server.start()
    security = ChannelSecurity(credentials=channel_credentials(tmp_path / "ca.pem"))
    sender = Submitter(f"127.0.0.1:{port}", "oracle-node-2", security=security, retries=0)
    plain = Submitter(f"127.0.0.1:{port}", "oracle-node-2", call_timeout=0.5, retries=0)
    try:
        sender.enqueue(observation(T0))
        assert await sender.flush() == 1
        plain.enqueue(observation(T0 + 60))
        assert await plain.flush() == 0  # plaintext never reaches a TLS-only aggregator
    finally:
        await sender.close()
        await plain.close()
        await fake.stop()
    assert [request.timestamp for request in fake.servicer.received] == [T0]
