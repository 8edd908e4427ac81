"""Reading a body within a limit: every encoding a node asks for, and what it must refuse."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest

from oracle_node.body import read_limited
from oracle_node.errors import MalformedResponseError, ResponseTooLargeError

BODY = b'{"error":[],"result":{"XXBTZUSD":[],"last":1}}' * 20


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, data: bytes, size: int) -> None:
        self.data = data
        self.size = size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.size):
            yield self.data[start : start + self.size]


async def read(data: bytes, encoding: str | None, limit: int, chunk: int = 7) -> bytes:
    headers = {"Content-Encoding": encoding} if encoding else {}
    response = httpx.Response(200, headers=headers, stream=_Chunks(data, chunk))
    return await read_limited(response, limit)


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        (None, lambda data: data),
        ("identity", lambda data: data),
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),  # zlib-wrapped, as RFC 9110 means it
        ("deflate", lambda data: zlib.compress(data, wbits=-15)),  # raw, as some servers send it
        ("GZIP ", gzip.compress),
    ],
)
async def test_every_encoding_asked_for_is_read_whole(encoding: str | None, encode: object) -> None:
    assert callable(encode)
    assert await read(encode(BODY), encoding, limit=len(BODY)) == BODY


@pytest.mark.parametrize("encoding", [None, "gzip", "deflate"])
async def test_one_byte_over_the_limit_is_refused(encoding: str | None) -> None:
    encode = {None: bytes, "gzip": gzip.compress, "deflate": zlib.compress}[encoding]
    with pytest.raises(ResponseTooLargeError):
        await read(encode(BODY), encoding, limit=len(BODY) - 1)


async def test_a_bomb_stops_at_the_limit_however_it_is_chunked() -> None:
    bomb = gzip.compress(bytes(20_000_000))  # about 20 KB on the wire
    for chunk in (len(bomb), 64 * 1024, 100):
        with pytest.raises(ResponseTooLargeError, match="compression bomb"):
            await read(bomb, "gzip", limit=100_000, chunk=chunk)


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, gzip", "compress"])
async def test_encodings_that_were_not_asked_for_are_refused(encoding: str) -> None:
    with pytest.raises(MalformedResponseError, match="only gzip or deflate"):
        await read(BODY, encoding, limit=10_000)


async def test_a_corrupt_compressed_body_is_malformed() -> None:
    with pytest.raises(MalformedResponseError, match="corrupt"):
        await read(b"this is not gzip at all", "gzip", limit=10_000)


async def test_an_announced_length_over_the_limit_is_refused_before_reading() -> None:
    stream = _Chunks(BODY, 7)
    response = httpx.Response(200, headers={"Content-Length": "99999999"}, stream=stream)
    with pytest.raises(ResponseTooLargeError, match="announces 99,999,999 bytes"):
        await read_limited(response, 1000)
