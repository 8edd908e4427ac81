"""The simulator as an httpx transport: the same `SimApp` the HTTP server runs, with no socket.

`httpx.AsyncClient(transport=SimTransport(app))` talks to the simulated venues exactly as a node
talks to the real ones over the network: the venues' real paths and formats, the simulated marker
and `Date` headers, every injected fault. This is what makes the simulator the one fake of each
venue: the node's tests use it instead of answers written by hand, so what they check cannot
drift from what the simulate mode serves. Waits (`slow`, `drip`) go through the injected `sleep`,
so a test on a fake clock lets them pass in no real time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx

from .app import SimApp
from .responses import SimResponse

AsyncSleep = Callable[[float], Awaitable[None]]


class SimTransport(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """Answers httpx requests from `app`; `requests` records what was asked, oldest first."""

    def __init__(
        self,
        app: SimApp,
        *,
        sleep: AsyncSleep = asyncio.sleep,
        blocking_sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.app = app
        self.requests: list[httpx.Request] = []
        self._sleep = sleep
        self._blocking_sleep = blocking_sleep

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """One request from an `httpx.AsyncClient`."""
        body = await request.aread()
        pending = self.app.begin(request.method, _target(request), _headers(request), body)
        self.requests.append(request)
        if pending.delay_seconds > 0:
            await self._sleep(pending.delay_seconds)
        answer = pending.finish()
        if answer.drip_seconds > 0:
            return _response(answer, stream=_AsyncDrip(answer, self._sleep))
        return _response(answer)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """One request from a blocking `httpx.Client`."""
        body = request.read()
        pending = self.app.begin(request.method, _target(request), _headers(request), body)
        self.requests.append(request)
        if pending.delay_seconds > 0:
            self._blocking_sleep(pending.delay_seconds)
        answer = pending.finish()
        if answer.drip_seconds > 0:
            return _response(answer, stream=_Drip(answer, self._blocking_sleep))
        return _response(answer)


def _target(request: httpx.Request) -> str:
    return request.url.raw_path.decode("ascii")


def _headers(request: httpx.Request) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def _response(
    answer: SimResponse, stream: httpx.AsyncByteStream | httpx.SyncByteStream | None = None
) -> httpx.Response:
    headers = [
        ("Content-Type", answer.content_type),
        ("Content-Length", str(len(answer.body))),
        *answer.headers,
    ]
    # A stream, not `content=`: httpx reads `content` at once (and undoes its Content-Encoding),
    # which would hide from a client what the wire carried, e.g. a gzip bomb.
    return httpx.Response(
        answer.status, headers=headers, stream=stream or httpx.ByteStream(answer.body)
    )


class _AsyncDrip(httpx.AsyncByteStream):
    """The body one byte at a time, a pause before each (the `drip` fault)."""

    def __init__(self, answer: SimResponse, sleep: AsyncSleep) -> None:
        self._answer = answer
        self._sleep = sleep

    async def __aiter__(self) -> AsyncIterator[bytes]:
        body = self._answer.body
        for index in range(len(body)):
            await self._sleep(self._answer.drip_seconds)
            yield body[index : index + 1]


class _Drip(httpx.SyncByteStream):
    """The blocking twin of `_AsyncDrip`."""

    def __init__(self, answer: SimResponse, sleep: Callable[[float], None]) -> None:
        self._answer = answer
        self._sleep = sleep

    def __iter__(self) -> Iterator[bytes]:
        body = self._answer.body
        for index in range(len(body)):
            self._sleep(self._answer.drip_seconds)
            yield body[index : index + 1]
