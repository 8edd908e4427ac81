"""The one gRPC client: what it retries, how long it waits, and how fast a probe says "down"."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from common.grpc_client import (
    PROBE_OPTIONS,
    SERVICE_OPTIONS,
    ChannelSecurity,
    ClientOptions,
    RetryPolicy,
    aio_channel,
    blocking_channel,
    call_with_retry,
    status_of,
)
from common.proto import oracle_pb2, oracle_pb2_grpc
from tests.tcp import tcp_server


class _Failure(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name)


def test_connect_timeout_and_backoff_become_channel_arguments() -> None:
    args = dict(ClientOptions(connect_timeout=1.5, max_reconnect_backoff=3).channel_args())
    assert args["grpc.min_reconnect_backoff_ms"] == 1500  # gRPC core's connect timeout
    assert args["grpc.max_reconnect_backoff_ms"] == 3000
    assert args["grpc.initial_reconnect_backoff_ms"] == 250
    assert PROBE_OPTIONS.connect_timeout < SERVICE_OPTIONS.connect_timeout


async def test_retries_what_can_change_with_growing_waits() -> None:
    waits: list[float] = []
    calls = 0

    async def nap(seconds: float) -> None:
        waits.append(seconds)

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise _Failure(grpc.StatusCode.UNAVAILABLE)
        return "answered"

    policy = RetryPolicy(attempts=3, initial_backoff=0.5, multiplier=2)
    assert await call_with_retry(flaky, policy, sleep=nap) == "answered"
    assert waits == [0.5, 1.0]


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.INTERNAL],
)
async def test_never_retries_an_answer_that_another_try_cannot_change(
    code: grpc.StatusCode,
) -> None:
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise _Failure(code)

    async def nap(_seconds: float) -> None:
        raise AssertionError("no wait for a permanent refusal")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call_with_retry(refused, RetryPolicy(attempts=5), sleep=nap)
    assert calls == 1
    assert status_of(caught.value) is code


async def test_gives_up_after_the_attempts_with_the_last_error() -> None:
    seen: list[tuple[str, float]] = []

    async def down() -> None:
        raise _Failure(grpc.StatusCode.UNAVAILABLE)

    async def nap(_seconds: float) -> None:
        return None

    policy = RetryPolicy(attempts=4, initial_backoff=0.1, max_backoff=0.25)
    with pytest.raises(grpc.aio.AioRpcError):
        await call_with_retry(
            down, policy, sleep=nap, before_retry=lambda e, w: seen.append((type(e).__name__, w))
        )
    assert [wait for _, wait in seen] == [0.1, 0.2, 0.25]


def test_a_policy_needs_one_attempt() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(attempts=0)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a hung or foreign process)."""
    with tcp_server() as port:
        yield port


def _probe(port: int, timeout: float, **channel: Any) -> tuple[grpc.StatusCode | None, float]:
    started = time.monotonic()
    with blocking_channel(f"127.0.0.1:{port}", **channel) as ch:
        try:
            oracle_pb2_grpc.OracleServiceStub(ch).HealthCheck(
                oracle_pb2.HealthRequest(), timeout=timeout
            )
        except grpc.RpcError as error:
            return status_of(error), time.monotonic() - started
    return None, time.monotonic() - started


def test_a_probe_of_a_silent_port_fails_fast_not_at_its_deadline(silent_port: int) -> None:
    code, took = _probe(silent_port, timeout=10.0)
    assert code is grpc.StatusCode.UNAVAILABLE
    assert took < 5.0  # the connect timeout (1.5 s), not the 10 s deadline


def test_a_probe_of_a_closed_port_fails_at_once() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, took = _probe(port, timeout=10.0)
    assert code is grpc.StatusCode.UNAVAILABLE
    assert took < 2.0


async def test_tls_credentials_make_a_secure_channel(silent_port: int) -> None:
    # The TLS seam: with credentials the channel attempts a TLS handshake, which the silent
    # port never completes; plaintext and TLS differ by this one argument only.
    security = ChannelSecurity(credentials=grpc.ssl_channel_credentials(), server_name="agg")
    assert dict(security.channel_args())["grpc.ssl_target_name_override"] == "agg"
    options = ClientOptions(connect_timeout=0.5)
    async with aio_channel(f"127.0.0.1:{silent_port}", security=security, options=options) as ch:
        stub = oracle_pb2_grpc.OracleServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.HealthCheck(oracle_pb2.HealthRequest(), timeout=3)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
