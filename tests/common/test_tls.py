"""TLS and mutual TLS over a real loopback grpc.aio server, with throwaway trustme certificates."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme

from common.errors import ConfigError
from common.tls import channel_credentials, server_credentials

METHOD = "/tls.test.Echo/Echo"


async def _echo(request: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return b"echo:" + request


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    stranger_cert: Path
    stranger_key: Path


def _write_pair(directory: Path, name: str, cert: trustme.LeafCert) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_path))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    other.cert_pem.write_to_path(str(directory / "other-ca.pem"))
    server = _write_pair(directory, "server", ca.issue_cert("localhost", "127.0.0.1"))
    client = _write_pair(directory, "client", ca.issue_cert("oracle-node-1"))
    stranger = _write_pair(directory, "stranger", other.issue_cert("oracle-node-1"))
    return Pki(directory / "ca.pem", *server, *client, directory / "other-ca.pem", *stranger)


async def _serve(credentials: grpc.ServerCredentials) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "tls.test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
            ),
        )
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, port


@pytest.fixture
async def tls_server(pki: Pki) -> AsyncIterator[int]:
    server, port = await _serve(server_credentials(pki.server_cert, pki.server_key))
    yield port
    await server.stop(None)


@pytest.fixture
async def mtls_server(pki: Pki) -> AsyncIterator[int]:
    server, port = await _serve(
        server_credentials(pki.server_cert, pki.server_key, client_ca=pki.ca)
    )
    yield port
    await server.stop(None)


async def _call(port: int, credentials: grpc.ChannelCredentials | None) -> bytes:
    target = f"127.0.0.1:{port}"
    async with (
        grpc.aio.insecure_channel(target)
        if credentials is None
        else grpc.aio.secure_channel(target, credentials)
    ) as channel:
        reply: bytes = await channel.unary_unary(METHOD)(b"ping", timeout=10)
        return reply


async def test_tls_happy_path(pki: Pki, tls_server: int) -> None:
    assert await _call(tls_server, channel_credentials(pki.ca)) == b"echo:ping"


async def test_mtls_happy_path(pki: Pki, mtls_server: int) -> None:
    credentials = channel_credentials(
        pki.ca, client_cert=pki.client_cert, client_key=pki.client_key
    )
    assert await _call(mtls_server, credentials) == b"echo:ping"


async def test_mtls_refuses_a_client_without_a_certificate(pki: Pki, mtls_server: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _call(mtls_server, channel_credentials(pki.ca))
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_mtls_refuses_a_client_certificate_from_another_ca(
    pki: Pki, mtls_server: int
) -> None:
    credentials = channel_credentials(
        pki.ca, client_cert=pki.stranger_cert, client_key=pki.stranger_key
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _call(mtls_server, credentials)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_client_trusting_the_wrong_ca_is_refused(pki: Pki, tls_server: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _call(tls_server, channel_credentials(pki.other_ca))
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_plaintext_client_gets_nothing_from_a_tls_server(tls_server: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _call(tls_server, None)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_private_key_readable_by_others_is_refused(pki: Pki, tmp_path: Path, mode: int) -> None:
    key = tmp_path / "server.key"
    key.write_bytes(pki.server_key.read_bytes())
    key.chmod(mode)
    with pytest.raises(ConfigError, match=f"{key}: private key mode is 0{mode:o}.*chmod 600"):
        server_credentials(pki.server_cert, key)
    with pytest.raises(ConfigError, match="chmod 600"):
        channel_credentials(pki.ca, client_cert=pki.client_cert, client_key=key)


def test_files_are_checked_with_clear_errors(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match=f"{missing}: certificate file not found"):
        server_credentials(missing, pki.server_key)
    with pytest.raises(ConfigError, match="private key file not found"):
        server_credentials(pki.server_cert, missing)
    with pytest.raises(ConfigError, match="client CA file not found"):
        server_credentials(pki.server_cert, pki.server_key, client_ca=missing)
    with pytest.raises(ConfigError, match="CA file not found"):
        channel_credentials(missing)
    with pytest.raises(ConfigError, match="must be a regular file"):
        channel_credentials(tmp_path)

    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a certificate\n")
    with pytest.raises(ConfigError, match=f"{garbage}: not a PEM CA"):
        channel_credentials(garbage)
    # A certificate where a key belongs (and the reverse) is caught before gRPC sees it.
    swapped = tmp_path / "swapped.key"
    swapped.write_bytes(pki.server_cert.read_bytes())
    swapped.chmod(0o600)
    with pytest.raises(ConfigError, match="not a PEM private key"):
        server_credentials(pki.server_cert, swapped)
    with pytest.raises(ConfigError, match="not a PEM certificate"):
        server_credentials(pki.server_key, pki.server_key)
    truncated = tmp_path / "truncated.pem"
    truncated.write_bytes(pki.ca.read_bytes().split(b"-----END")[0])
    with pytest.raises(ConfigError, match="not a PEM CA"):
        channel_credentials(truncated)


def test_mutual_tls_needs_both_client_cert_and_key(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="both"):
        channel_credentials(pki.ca, client_cert=pki.client_cert)
    with pytest.raises(ConfigError, match="both"):
        channel_credentials(pki.ca, client_key=pki.client_key)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_a_clear_error(pki: Pki, tmp_path: Path) -> None:
    locked = tmp_path / "locked.pem"
    locked.write_bytes(pki.ca.read_bytes())
    locked.chmod(0)
    with pytest.raises(ConfigError, match="cannot read the CA file"):
        channel_credentials(locked)


def test_errors_never_show_the_key(pki: Pki, tmp_path: Path) -> None:
    key = tmp_path / "leaky.key"
    secret = pki.server_key.read_bytes()
    key.write_bytes(secret)
    key.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        server_credentials(pki.server_cert, key)
    body = secret.split(b"\n")[1].decode()
    assert body not in str(caught.value)
