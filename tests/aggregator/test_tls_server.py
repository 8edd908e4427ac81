"""The aggregator's port over TLS and mutual TLS ([tls] cert, key, client_ca), with the node's
own submitter as the client (its [oracle] tls_* settings), trustme certificates, loopback only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
import trustme

from aggregator.config import AggregatorConfig, AuthConfig, TlsConfig
from aggregator.server import BoundServer, build_server
from common.grpc_client import ChannelSecurity
from common.proto import oracle_pb2 as pb
from common.proto import oracle_pb2_grpc
from common.tls import channel_credentials
from oracle_node.candle import Candle
from oracle_node.config import NodeConfig, TlsClientSettings, load_config
from oracle_node.node import load_credentials
from oracle_node.submitter import Observation, Submitter
from tests.signing_helpers import key_for, write_allowlist

from .conftest import T0, FakeClock


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    files = {"ca": directory / "ca.pem", "other_ca": directory / "other.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    other.cert_pem.write_to_path(str(files["other_ca"]))
    for name, issuer, names in (
        ("server", ca, ("localhost", "127.0.0.1")),
        ("client", ca, ("oracle-node-1",)),
        ("stranger", other, ("oracle-node-1",)),
    ):
        leaf = issuer.issue_cert(*names)
        cert, key = directory / f"{name}.pem", directory / f"{name}.key"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
        files[f"{name}_cert"], files[f"{name}_key"] = cert, key
    return files


@asynccontextmanager
async def aggregator(
    tmp_path: Path, pki: dict[str, Path], *, mutual: bool
) -> AsyncIterator[BoundServer]:
    allowlist = write_allowlist(
        tmp_path / "allowlist.toml", [("oracle-node-1", key_for("oracle-node-1"), ("binance",))]
    )
    tls = TlsConfig(
        cert=pki["server_cert"], key=pki["server_key"], client_ca=pki["ca"] if mutual else None
    )
    config = AggregatorConfig(
        host="127.0.0.1", port=0, auth=AuthConfig(allowlist=allowlist), tls=tls
    )
    bound = build_server(config, clock=FakeClock(T0 + 65))
    await bound.server.start()
    try:
        yield bound
    finally:
        await bound.server.stop(None)


def node_config(port: int, pki: dict[str, Path], *, client: str | None) -> NodeConfig:
    config = load_config(None)
    tls = TlsClientSettings(
        pki["ca"],
        pki[f"{client}_cert"] if client else None,
        pki[f"{client}_key"] if client else None,
    )
    # The node's own loader builds the channel security from these settings.
    return NodeConfig(**{**config.__dict__, "tls": tls, "aggregator_url": f"127.0.0.1:{port}"})


async def submit_one(port: int, security: ChannelSecurity) -> int:
    submitter = Submitter(
        f"127.0.0.1:{port}",
        "oracle-node-1",
        call_timeout=2,
        retries=0,
        security=security,
        signing_key=key_for("oracle-node-1"),
    )
    close = Decimal("100000.5")
    candle = Candle("binance", "BTCUSDT", "USDT", T0, close, close, close, close)
    try:
        submitter.enqueue(Observation(candle=candle, collected_at=T0 + 61))
        await submitter.flush()
        return submitter.pending
    finally:
        await submitter.close()


async def test_tls_happy_path_with_the_nodes_settings(tmp_path: Path, pki: dict[str, Path]) -> None:
    async with aggregator(tmp_path, pki, mutual=False) as bound:
        _, security = load_credentials(node_config(bound.port, pki, client=None))
        assert await submit_one(bound.port, security) == 0  # delivered
        assert bound.servicer.book.active_nodes(T0 + 65) == ["oracle-node-1"]


async def test_mutual_tls_happy_path_and_a_client_without_certificate_refused(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    async with aggregator(tmp_path, pki, mutual=True) as bound:
        _, security = load_credentials(node_config(bound.port, pki, client="client"))
        assert await submit_one(bound.port, security) == 0
        before = bound.servicer.book.snapshot()
        for credentials in (
            channel_credentials(pki["ca"]),  # no client certificate
            channel_credentials(  # a certificate from another CA
                pki["ca"], client_cert=pki["stranger_cert"], client_key=pki["stranger_key"]
            ),
        ):
            async with grpc.aio.secure_channel(f"127.0.0.1:{bound.port}", credentials) as channel:
                stub = oracle_pb2_grpc.OracleServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.HealthCheck(pb.HealthRequest(), timeout=3)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert bound.servicer.book.snapshot() == before


async def test_a_plaintext_client_cannot_talk_to_the_tls_port(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    async with (
        aggregator(tmp_path, pki, mutual=False) as bound,
        grpc.aio.insecure_channel(f"127.0.0.1:{bound.port}") as channel,
    ):
        stub = oracle_pb2_grpc.OracleServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.HealthCheck(pb.HealthRequest(), timeout=3)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
