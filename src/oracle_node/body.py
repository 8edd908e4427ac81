"""Reading a venue's answer body with a hard size limit, after decompression as on the wire.

httpx decodes `Content-Encoding` chunk by chunk with no bound on what one chunk inflates to, so a
1 MB gzip bomb becomes a gigabyte before any limit could look at it. Here the raw bytes are read
and decoded with `zlib`'s `max_length`, which never produces more than asked: the read stops
the moment the answer passes `limit` bytes, on the wire or decompressed, and memory stays within
the limit. Only the encodings a node asks for (`Accept-Encoding: gzip, deflate`) are accepted;
anything else is refused rather than handed to a decoder we do not bound.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Final, Protocol

import httpx

from oracle_node.errors import MalformedResponseError, ResponseTooLargeError

ACCEPT_ENCODING: Final = "gzip, deflate"


class _Decoder(Protocol):
    def feed(self, data: bytes, max_length: int) -> bytes: ...

    def flush(self, max_length: int) -> bytes: ...


class _Identity:
    def feed(self, data: bytes, max_length: int) -> bytes:
        return data[:max_length]

    def flush(self, max_length: int) -> bytes:
        return b""


class _Zlib:
    """gzip, or deflate with or without its zlib header (servers send both)."""

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._started = False
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if gzip else zlib.MAX_WBITS)

    def feed(self, data: bytes, max_length: int) -> bytes:
        if not self._started and not self._gzip:
            self._started = True
            try:
                return self._inflater.decompress(data, max_length)
            except zlib.error:
                # "deflate" sent as raw deflate, without the zlib header: servers do both.
                self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._started = True
        return self._inflate(data, max_length)

    def _inflate(self, data: bytes, max_length: int) -> bytes:
        try:
            # max_length bounds the output; the rest waits in unconsumed_tail, never inflated.
            return self._inflater.decompress(data, max_length)
        except zlib.error as exc:
            raise MalformedResponseError(f"the compressed answer is corrupt ({exc})") from exc

    def flush(self, max_length: int) -> bytes:
        out = self._inflate(self._inflater.unconsumed_tail, max_length)
        if len(out) < max_length and not self._inflater.unconsumed_tail:
            out += self._inflater.flush()[: max_length - len(out)]
        return out


def _decoder(content_encoding: str) -> _Decoder:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return _Identity()
    if encoding in ("gzip", "x-gzip"):
        return _Zlib(gzip=True)
    if encoding == "deflate":
        return _Zlib(gzip=False)
    raise MalformedResponseError(
        f"the answer uses Content-Encoding {encoding[:40]!r}; only gzip or deflate was asked for"
    )


async def _raw_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as it came off the wire (before any Content-Encoding is undone)."""
    if not response.is_stream_consumed:
        async for chunk in response.aiter_raw():
            yield chunk
        return
    # An in-memory test transport (respx, httpx.MockTransport with `content=`) hands over a
    # response httpx has already read; its raw bytes are still in `stream`. A network response
    # is never read before this point.
    stream = response.stream
    if isinstance(stream, httpx.AsyncByteStream):
        async for chunk in stream:
            yield chunk


async def read_limited(response: httpx.Response, limit: int) -> bytes:
    """The decoded body of a streamed `response`; `ResponseTooLargeError` past `limit` bytes."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ResponseTooLargeError(
            f"the answer announces {int(declared):,} bytes; no honest answer is over {limit:,}"
        )
    decoder = _decoder(response.headers.get("Content-Encoding", ""))
    body = bytearray()
    on_wire = 0
    async for chunk in _raw_chunks(response):
        on_wire += len(chunk)
        if on_wire > limit:
            raise ResponseTooLargeError(f"the answer is over {limit:,} bytes on the wire")
        # Ask for one byte more than is left: getting it proves the limit is passed.
        body += decoder.feed(chunk, limit - len(body) + 1)
        if len(body) > limit:
            raise ResponseTooLargeError(
                f"the answer inflates to over {limit:,} bytes (a compression bomb?); read stopped"
            )
    body += decoder.flush(limit - len(body) + 1)
    if len(body) > limit:
        raise ResponseTooLargeError(
            f"the answer inflates to over {limit:,} bytes (a compression bomb?); read stopped"
        )
    return bytes(body)
