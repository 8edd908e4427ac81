"""One way to be a gRPC client of the aggregator: channel options, deadlines, retries, TLS seam.

Every client (the node's submitter, the `test_aggregator.py` probe, later the committer and the
explorer) builds its channel here, so they reconnect, time out and retry alike:

- **Channel options** (`ClientOptions`): reconnect quickly once the aggregator is back (gRPC's
  default backoff grows to 120 s), and bound each connection attempt (`connect_timeout`; gRPC's
  default is 20 s), so a port that accepts TCP but never speaks HTTP/2 (a hung or foreign process)
  fails in that time instead of eating the whole call deadline.
- **Deadlines**: every call passes `timeout=`; `call_with_retry` never retries past its own.
- **Retries** (`RetryPolicy`, tenacity): exponential backoff on the status codes a later try can
  change (by default UNAVAILABLE), at most `attempts` tries; the sleep is injectable for tests.
  gRPC's service-config retries are not used: their waits are invisible to logs and tests.
- **Fail fast for probes** (`PROBE_OPTIONS`): a probe must say "down" at once when nothing
  listens (refused: immediately; hung: after the short connect timeout), never wait for it.
- **Security** (`ChannelSecurity`): plaintext today; TLS and mutual TLS are a `credentials`
  object from `grpc.ssl_channel_credentials(...)` (built by `common.tls`), passed in, nothing else
  changes.

This module imports no other `common` module (only grpc and tenacity), so a script run with
bindings generated from the original contract next to it can still import it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

import grpc
import grpc.aio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class ClientOptions:
    """How a channel connects: attempt timeout, reconnect backoff, message size."""

    connect_timeout: float = 5.0
    initial_reconnect_backoff: float = 0.25
    max_reconnect_backoff: float = 2.0
    max_message_bytes: int = 4 * 1024 * 1024

    def channel_args(self) -> list[tuple[str, int | str]]:
        """The gRPC channel arguments for these options."""
        return [
            ("grpc.initial_reconnect_backoff_ms", _ms(self.initial_reconnect_backoff)),
            # Also the timeout of one connection attempt (gRPC core's "min connect timeout").
            ("grpc.min_reconnect_backoff_ms", _ms(self.connect_timeout)),
            ("grpc.max_reconnect_backoff_ms", _ms(max(self.max_reconnect_backoff, 0.001))),
            ("grpc.max_receive_message_length", self.max_message_bytes),
        ]


# A long-lived client (a node): patient connection attempts, quick reconnects.
SERVICE_OPTIONS: Final = ClientOptions()
# A one-shot probe: "down" within a second or two, whatever the reason.
PROBE_OPTIONS: Final = ClientOptions(connect_timeout=1.5, max_reconnect_backoff=1.5)


@dataclass(frozen=True)
class ChannelSecurity:
    """Plaintext when `credentials` is None; else TLS (or mTLS) with these credentials.

    `server_name` overrides the name the server's certificate is checked against (a certificate
    issued for the aggregator's DNS name while connecting to its IP address).
    """

    credentials: grpc.ChannelCredentials | None = None
    server_name: str | None = None

    def channel_args(self) -> list[tuple[str, int | str]]:
        """Extra channel arguments this security setting needs."""
        if self.server_name and self.credentials is not None:
            return [("grpc.ssl_target_name_override", self.server_name)]
        return []


PLAINTEXT: Final = ChannelSecurity()


@dataclass(frozen=True)
class RetryPolicy:
    """At most `attempts` tries, waiting `initial_backoff` x `multiplier`^n (capped) between."""

    attempts: int = 3
    initial_backoff: float = 0.5
    max_backoff: float = 4.0
    multiplier: float = 2.0
    codes: frozenset[grpc.StatusCode] = field(
        default_factory=lambda: frozenset({grpc.StatusCode.UNAVAILABLE})
    )

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")

    def retries(self, error: BaseException) -> bool:
        """Whether `error` is a gRPC failure another try may change."""
        return status_of(error) in self.codes


def aio_channel(
    target: str,
    *,
    security: ChannelSecurity = PLAINTEXT,
    options: ClientOptions = SERVICE_OPTIONS,
) -> grpc.aio.Channel:
    """An asyncio channel to `target` (`host:port`)."""
    args = options.channel_args() + security.channel_args()
    if security.credentials is None:
        return grpc.aio.insecure_channel(target, options=args)
    return grpc.aio.secure_channel(target, security.credentials, options=args)


def blocking_channel(
    target: str,
    *,
    security: ChannelSecurity = PLAINTEXT,
    options: ClientOptions = PROBE_OPTIONS,
) -> grpc.Channel:
    """A blocking channel to `target`, for scripts and probes (fail-fast options by default)."""
    args = options.channel_args() + security.channel_args()
    if security.credentials is None:
        return grpc.insecure_channel(target, options=args)
    return grpc.secure_channel(target, security.credentials, options=args)


async def call_with_retry(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Sleep | None = None,
    before_retry: Callable[[BaseException, float], None] | None = None,
) -> T:
    """`call()` until it succeeds, fails with a code `policy` does not retry, or tries run out.

    The last error is raised as it came. `before_retry(error, wait)` runs before each wait.
    """

    def log(state: RetryCallState) -> None:
        if before_retry is not None and state.outcome is not None:
            error = state.outcome.exception()
            if error is not None:
                before_retry(error, state.upcoming_sleep)

    retrying = AsyncRetrying(
        retry=retry_if_exception(policy.retries),
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential(
            multiplier=policy.initial_backoff, exp_base=policy.multiplier, max=policy.max_backoff
        ),
        before_sleep=log,
        reraise=True,
        sleep=sleep or asyncio.sleep,
    )
    result: T
    async for attempt in retrying:
        with attempt:
            result = await call()
    return result


def status_of(error: BaseException) -> grpc.StatusCode | None:
    """The status code of a gRPC error (blocking or asyncio), None for anything else."""
    return _code(error) if isinstance(error, grpc.RpcError | grpc.aio.AioRpcError) else None


def _code(error: BaseException) -> grpc.StatusCode | None:
    code = getattr(error, "code", None)
    if not callable(code):
        return None
    found = code()
    return found if isinstance(found, grpc.StatusCode) else None


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
